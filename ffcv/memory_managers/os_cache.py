"""`OSCacheManager`: memory-maps the whole file; the operating system's page cache does the caching."""
from __future__ import annotations

import mmap
import os
import threading
import time
import weakref
from typing import Optional, Sequence

import numpy as np

from .base import MemoryContext, MemoryManager, check_unchanged, open_unchanged

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401


# A batch that took at least this long per sample has its pages unmapped after it (see `OSCacheManager.unmap`):
# mapping a sample's pages again costs about a microsecond, within 2-3% of the batch's time.
UNMAP_MIN_SECONDS_PER_SAMPLE = 40e-6


class _FileMap(mmap.mmap):
    """The file's memory map, carrying its descriptor (``pread_fd``) for readers that copy instead of mapping."""


class OSCacheContext(MemoryContext):
    def __init__(self, manager: 'OSCacheManager'):  # (FFCV's signature)
        self.manager = manager
        self.batches: Optional[Sequence[np.ndarray]] = None  # the epoch's batches (set by schedule_epoch)
        self._started = {}  # batch -> time.perf_counter() at start_batch

    @property
    def state(self) -> tuple:
        return self.manager.state

    def start_batch(self, batch: int) -> None:
        self._started[batch] = time.perf_counter()

    def end_batch(self, batch: int) -> None:
        started = self._started.pop(batch, None)
        if started is not None and self.batches is not None and (time.perf_counter() - started >=
                                    UNMAP_MIN_SECONDS_PER_SAMPLE * len(self.batches[batch])):
            self.manager.unmap()


class OSCacheManager(MemoryManager):
    """Zero-copy reads from a read-only memory map of the file, shared by every epoch and process.

    The best choice when the dataset fits in RAM (it is then read from disk once, by whichever
    process touches it first) or is on a fast local disk. The map is of the file the Reader parsed:
    replacing the path later (as `DatasetWriter` does) does not affect it; a file replaced before the
    first epoch, or modified in place, raises `CorruptFileError` at the start of an epoch.
    """

    memory_read_only = True

    def __init__(self, reader):
        super().__init__(reader)
        self._mmap = None
        self._state = None
        self._fd = None
        self._lock = threading.Lock()

    @property
    def state(self) -> tuple:
        if self._state is None:
            with self._lock:  # the first batches of the first epoch ask from several threads
                if self._state is None:
                    self._open()
        return self._state

    def _open(self) -> None:
        fd = open_unchanged(self.reader)
        weakref.finalize(self, os.close, fd)
        self._fd = fd
        self._mmap = _FileMap(fd, 0, access=mmap.ACCESS_READ)
        # the image decoders read their bytes from the file (`_decoding.BlobReads`) through a descriptor that
        # lives as long as the map (arrays of it may outlive this manager)
        self._mmap.pread_fd = os.dup(fd)
        weakref.finalize(self._mmap, os.close, self._mmap.pread_fd)
        memory = np.frombuffer(self._mmap, dtype=np.uint8)
        self._state = (memory, np.zeros(0, np.int64), np.int64(self.page_shift), self.sorted_ptrs, self.sorted_sizes)

    def unmap(self) -> None:
        """Drop this process's mappings of the file's pages (``MADV_DONTNEED``: the data stays in the OS page
        cache; reading it again maps it again, with a minor page fault).

        A page of the file stays mapped, and counted in the process's RSS, from its first read until the
        map is closed: after an epoch, the whole file (for the benchmark photo set, 67 of the 82 MB). Called
        after each batch whose samples are slow enough to build that mapping them again costs little (JPEG
        decoding, not raw images copied as they are), it bounds that by what the batches in flight touch (the
        image decoders do not map the pages they read at all: `ffcv.fields._decoding.BlobReads`).
        """
        memory = self._mmap
        if memory is not None and hasattr(mmap, 'MADV_DONTNEED'):
            memory.madvise(mmap.MADV_DONTNEED)

    def schedule_epoch(self, batches: Sequence[np.ndarray], first_batch: int = 0) -> MemoryContext:
        if self._fd is not None:
            check_unchanged(self.reader, os.fstat(self._fd))
        context = OSCacheContext(self)
        context.batches = batches
        return context
