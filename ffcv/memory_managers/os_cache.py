"""`OSCacheManager`: memory-maps the whole file; the operating system's page cache does the caching."""
from __future__ import annotations

import mmap
from typing import Sequence

import numpy as np

from .base import MemoryContext, MemoryManager


class OSCacheContext(MemoryContext):
    def __init__(self, manager: 'OSCacheManager'):
        self.manager = manager

    @property
    def state(self) -> tuple:
        return self.manager.state


class OSCacheManager(MemoryManager):
    """Zero-copy reads from a read-only memory map of the file, shared by every epoch and process.

    The best choice when the dataset fits in RAM (it is then read from disk once, by whichever
    process touches it first) or is on a fast local disk.
    """

    def __init__(self, reader):
        super().__init__(reader)
        self._mmap = None
        self._state = None

    @property
    def state(self) -> tuple:
        if self._state is None:
            with open(self.reader.file_name, 'rb') as fp:
                self._mmap = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
            memory = np.frombuffer(self._mmap, dtype=np.uint8)
            self._state = (memory, np.zeros(0, np.int64), np.int64(self.page_shift), self.sorted_ptrs,
                           self.sorted_sizes)
        return self._state

    def schedule_epoch(self, batches: Sequence[np.ndarray], first_batch: int = 0) -> MemoryContext:
        return OSCacheContext(self)
