"""`OSCacheManager`: memory-maps the whole file; the operating system's page cache does the caching."""
from __future__ import annotations

import mmap
import os
import threading
import weakref
from typing import Sequence

import numpy as np

from .base import MemoryContext, MemoryManager, check_unchanged, open_unchanged

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401


class OSCacheContext(MemoryContext):
    def __init__(self, manager: 'OSCacheManager'):
        self.manager = manager

    @property
    def state(self) -> tuple:
        return self.manager.state


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
        self._mmap = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        memory = np.frombuffer(self._mmap, dtype=np.uint8)
        self._state = (memory, np.zeros(0, np.int64), np.int64(self.page_shift), self.sorted_ptrs, self.sorted_sizes)

    def schedule_epoch(self, batches: Sequence[np.ndarray], first_batch: int = 0) -> MemoryContext:
        if self._fd is not None:
            check_unchanged(self.reader, os.fstat(self._fd))
        return OSCacheContext(self)
