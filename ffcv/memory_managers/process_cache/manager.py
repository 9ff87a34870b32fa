"""`ProcessCacheManager`: the process reads the pages each batch needs into its own memory."""
from __future__ import annotations

import os
import weakref
from typing import Optional, Sequence

import numpy as np

from ..base import MemoryManager, check_unchanged, open_unchanged
from .context import ProcessCacheContext, _PageCache
from .schedule import EpochSchedule, build_schedule, page_data_ends

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
    much larger than a batch.

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
        Refuse (MemoryError) an epoch whose frames would exceed this many bytes; default: the RAM of
        the machine.
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
        self._open_source()

    # -- where pages come from (a subclass reads them elsewhere: `ffcv.memory_managers.remote`) --

    def _open_source(self) -> None:
        # Opened once: every epoch reads the file the Reader parsed, even after the path is replaced.
        self._fd = open_unchanged(self.reader)
        weakref.finalize(self, os.close, self._fd)

    def _check_source(self) -> None:
        """Raise if the file changed since the Reader parsed it (called at the start of each epoch)."""
        check_unchanged(self.reader, os.fstat(self._fd))  # not modified in place since

    def _page_cache(self, schedule: EpochSchedule, memory: np.ndarray) -> _PageCache:
        return _PageCache(self.reader.file_name, self.page_size, self.page_shift, schedule,
                          self._page_ends, memory, self.prefetch, self.num_readers, lambda: os.dup(self._fd))

    def schedule(self, batches: Sequence[np.ndarray], lookahead: Optional[int] = None) -> EpochSchedule:
        """The page schedule of an epoch visiting `batches` (no memory allocated, no I/O)."""
        return build_schedule(batches, self._offsets, self._pages, self.num_pages, self.prefetch,
                              self.lookahead if lookahead is None else int(lookahead))

    def schedule_epoch(self, batches: Sequence[np.ndarray], first_batch: int = 0,
                       lookahead: Optional[int] = None) -> ProcessCacheContext:
        """Context for an epoch visiting `batches`, from batch `first_batch` on (a resumed epoch: the
        batches before it are never started and need no memory); `lookahead` overrides the in-flight
        window the frames are sized for."""
        if not 0 <= first_batch <= len(batches):
            raise IndexError(f'first_batch {first_batch} out of range: this epoch has {len(batches)} batches')
        self._check_source()
        skipped = [np.zeros(0, np.int64)] * first_batch
        schedule = self.schedule(skipped + list(batches[first_batch:]), lookahead)
        needed = schedule.num_frames * self.page_size
        limit = self.memory_limit if self.memory_limit is not None else physical_memory()
        hint = ('the process cache (os_cache=False) keeps each page from its first to its last use in '
                'the epoch; with RANDOM order that is most of the file. Use order=OrderOption.QUASI_RANDOM '
                '(a bounded window of pages) or os_cache=True')
        if limit and needed > limit:
            raise MemoryError(f'{self.reader.file_name}: this epoch needs {schedule.num_frames} pages of '
                              f'{self.page_size >> 20} MiB in memory ({needed / 2**30:.2f} GiB), more than '
                              f'the limit of {limit / 2**30:.2f} GiB: {hint}')
        try:
            memory = np.empty(needed, np.uint8)
        except MemoryError:
            raise MemoryError(f'{self.reader.file_name}: cannot allocate {needed / 2**30:.2f} GiB for '
                              f'{schedule.num_frames} pages: {hint}') from None
        cache = self._page_cache(schedule, memory)
        cache.ended[:first_batch] = True
        return ProcessCacheContext(cache, self.sorted_ptrs, self.sorted_sizes)
