"""`ProcessCacheManager`: the process reads the pages each batch needs into its own memory."""
from __future__ import annotations

import functools
import os
import threading
import weakref
from collections import Counter
from typing import Optional, Sequence

import numpy as np

from ..base import MemoryManager, check_unchanged, open_unchanged
from .context import ProcessCacheContext, _PageCache
from .schedule import EpochSchedule, build_schedule, page_data_ends, sample_spans

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ...pipeline.compiler import Compiler  # noqa: F401
from ..base import MemoryContext  # noqa: F401
from ..common import BATCHES_TYPE  # noqa: F401


def physical_memory() -> int:
    """Bytes of RAM of this machine (0 if unknown)."""
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (AttributeError, ValueError, OSError):  # pragma: no cover (non-POSIX)
        return 0


class ProcessCacheManager(MemoryManager):
    """Reads whole pages with ``pread`` into per-epoch frames, just before the batches that need them.

    Used by ``Loader(os_cache=False)``: for datasets larger than RAM, on network file systems, or
    wherever the OS page cache should not hold the data. Each epoch, the pages every batch needs are
    computed from the allocation table (each sample's data lies in one page); a page is read once,
    ``prefetch`` batches before its first use, and its frame is reused after the last batch needing it
    ends. Memory is ``num_frames x page_size``, where ``num_frames`` is the peak number of pages in use:
    small with SEQUENTIAL or QUASI_RANDOM order, close to the whole dataset with RANDOM order on a file
    much larger than a batch. When that exceeds `memory_limit`, pages whose next use is far off are
    released after a use and read again before the next one (``stats['reloads']``), so memory stays
    within the limit at the cost of reading those pages again. The frames of an ended epoch are kept for
    the next one (allocated afresh only when it needs more of them).

    Parameters
    ----------
    reader : Reader
    prefetch : int
        Pages are read this many batches before their first use.
    lookahead : int
        Batches that may still run behind the newest started one (the loader's in-flight window);
        only used to size the frames so that prefetching never waits for memory.
    num_readers : int
        Reader threads per epoch.
    memory_limit : int, optional
        Bytes the frames of an epoch may take; default: half the RAM of the machine (the rest is left to
        the process and the system). An epoch that cannot fit even when every page is read again before
        each use (the limit is below the pages of the batches in flight) raises MemoryError.

    Attributes
    ----------
    page_stats : Counter
        Over every epoch: ``loads`` (pages read into frames), ``reloads`` (of those, pages read again in an
        epoch that had read and released them), ``bytes_read``, and ``peak_frames`` (most frames held at
        once in one epoch). Also in `stats`.
    """

    def __init__(self, reader, prefetch: int = 3, lookahead: int = 3, num_readers: int = 8,
                 memory_limit: Optional[int] = None):
        super().__init__(reader)
        if prefetch < 0 or lookahead < 0 or num_readers < 1:
            raise ValueError(f'prefetch ({prefetch}) and lookahead ({lookahead}) must be >= 0 and '
                             f'num_readers ({num_readers}) >= 1')
        self.prefetch = int(prefetch)
        self.lookahead = int(lookahead)
        self.num_readers = int(num_readers)
        self.memory_limit = memory_limit
        self._offsets, self._pages, self.num_pages = reader.sample_pages()
        self._page_ends = page_data_ends(reader.alloc_table, self.page_shift, self.num_pages)
        self.page_stats: Counter = Counter()
        self._spare_frames: Optional[np.ndarray] = None  # the frames of the last closed epoch, for the next
        self._frames_lock = threading.Lock()
        self._open_source()

    def _keep_frames(self, frames: np.ndarray) -> None:
        """Keep an ended epoch's frames for the next one: allocating them afresh each epoch costs the page
        faults and zeroing of the whole area (~7% of a short epoch of small images)."""
        with self._frames_lock:
            self._spare_frames = frames.base if isinstance(frames.base, np.ndarray) else frames

    # -- where pages come from (a subclass reads them elsewhere: `ffcv.memory_managers.remote`) --

    def _open_source(self) -> None:
        # Opened once: every epoch reads the file the Reader parsed, even after the path is replaced.
        self._fd = open_unchanged(self.reader)
        weakref.finalize(self, os.close, self._fd)

    def _check_source(self) -> None:
        """Raise if the file changed since the Reader parsed it (called at the start of each epoch)."""
        check_unchanged(self.reader, os.fstat(self._fd))  # not modified in place since

    def _page_cache(self, schedule: EpochSchedule, memory: np.ndarray) -> _PageCache:
        return _PageCache(self.reader.file_name, self.page_size, self.page_shift, schedule, self._page_ends,
                          memory, self.prefetch, self.num_readers, lambda: os.dup(self._fd), stats=self.page_stats)

    @property
    def stats(self) -> dict:
        """The counters of `page_stats`, in one dict."""
        return dict(self.page_stats)

    @property
    def limit(self) -> int:
        """Bytes the frames of an epoch may take: `memory_limit`, else half the RAM (0 when unknown)."""
        return int(self.memory_limit) if self.memory_limit is not None else physical_memory() // 2

    @property
    def max_frames(self) -> Optional[int]:
        """Frames the memory limit allows (None when no limit was given and the RAM size is unknown)."""
        return self.limit // self.page_size if self.limit else None

    def schedule(self, batches: Sequence[np.ndarray], lookahead: Optional[int] = None,
                 max_frames: Optional[int] = None) -> EpochSchedule:
        """The page schedule of an epoch visiting `batches` (no memory allocated, no I/O); with `max_frames`,
        pages are read again where that keeps the frames within it (see `build_schedule`)."""
        return build_schedule(batches, self._offsets, self._pages, self.num_pages, self.prefetch,
                              self.lookahead if lookahead is None else int(lookahead), max_frames)

    def schedule_epoch(self, batches: Sequence[np.ndarray], first_batch: int = 0,
                       lookahead: Optional[int] = None) -> ProcessCacheContext:
        """Context for an epoch visiting `batches`, from batch `first_batch` on (a resumed epoch: the
        batches before it are never started and need no memory); `lookahead` overrides the in-flight
        window the frames are sized for."""
        if not 0 <= first_batch <= len(batches):
            raise IndexError(f'first_batch {first_batch} out of range: this epoch has {len(batches)} batches')
        self._check_source()
        skipped = [np.zeros(0, np.int64)] * first_batch
        max_frames = self.max_frames
        try:
            schedule = self.schedule(skipped + list(batches[first_batch:]), lookahead, max_frames)
        except MemoryError as exc:
            raise MemoryError(f'{self.reader.file_name}: {exc} (pages of {self.page_size} bytes, memory_limit='
                              f'{self.limit} bytes): raise the limit, use smaller '
                              'batches or a smaller prefetch, or order=OrderOption.QUASI_RANDOM (fewer pages '
                              'per batch)') from None
        needed = schedule.num_frames * self.page_size
        with self._frames_lock:
            spare, self._spare_frames = self._spare_frames, None
        try:
            memory = spare[:needed] if spare is not None and spare.size >= needed else np.empty(needed, np.uint8)
        except MemoryError:
            raise MemoryError(f'{self.reader.file_name}: cannot allocate {needed / 2**30:.2f} GiB for '
                              f'{schedule.num_frames} pages; set a memory_limit below the free memory (pages '
                              'are then read again where needed), or use order=OrderOption.QUASI_RANDOM '
                              '(a bounded window of pages) or os_cache=True') from None
        cache = self._page_cache(schedule, memory)
        cache.recycle = self._keep_frames
        cache.ended[:first_batch] = True
        spans = functools.partial(sample_spans, self.reader.alloc_table, self.page_shift)
        return ProcessCacheContext(cache, self.sorted_ptrs, self.sorted_sizes, spans)
