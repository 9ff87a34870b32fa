"""Memory managers: where the heap data of a `.beton` file is read from during an epoch.

Each epoch's `MemoryContext` exposes the data as the storage state of `ffcv.pipeline.storage`, so
decoders work with any manager.
"""
from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from typing import Sequence

import numba
import numpy as np

from ..pipeline.storage import blob_reader
from ..reader import CorruptFileError, Reader

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401


def check_unchanged(reader: Reader, stat: os.stat_result) -> None:
    """CorruptFileError unless `stat` is of the very file `reader` parsed, unmodified since."""
    old = reader.file_stat
    if (stat.st_dev, stat.st_ino) != (old.st_dev, old.st_ino):
        raise CorruptFileError(reader.file_name, 'was replaced by another file after it was opened; its metadata '
                                                 'would not match the new data: create a new Loader to read it')
    if (stat.st_size, stat.st_mtime_ns) != (old.st_size, old.st_mtime_ns):
        raise CorruptFileError(reader.file_name, 'was modified in place after it was opened (size or modification '
                                                 'time changed): create a new Loader to read it')


def open_unchanged(reader: Reader) -> int:
    """A read-only descriptor of the file `reader` parsed (see `check_unchanged`)."""
    fd = os.open(reader.file_name, os.O_RDONLY)
    try:
        check_unchanged(reader, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


class ContextClosedError(RuntimeError):
    """A worker asked a closed memory context for data (the epoch was abandoned or has ended)."""


class MemoryContext(contextlib.AbstractContextManager, ABC):
    """The memory of one epoch; entered before the first batch, exited after the last."""

    @property
    @abstractmethod
    def state(self) -> tuple:
        """Storage state (`ffcv.pipeline.storage`)."""

    def start_batch(self, batch: int) -> None:
        """Called by a worker before it reads batch `batch`; blocks until its data is available."""

    def end_batch(self, batch: int) -> None:
        """Called by a worker once batch `batch` no longer needs the file's data."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self) -> None:
        """Release this epoch's memory (idempotent)."""


class MemoryManager(ABC):
    """Reads heap data of one file; builds a `MemoryContext` per epoch."""

    def __init__(self, reader: Reader):
        self.reader = reader
        self.page_size = reader.page_size
        self.page_shift = reader.page_shift
        self.sorted_ptrs = reader.sorted_ptrs
        self.sorted_sizes = reader.sorted_sizes

    @abstractmethod
    def schedule_epoch(self, batches: Sequence[np.ndarray], first_batch: int = 0) -> MemoryContext:
        """Context for an epoch that visits `batches` (arrays of sample ids) in this order, starting
        at batch `first_batch` (> 0 when an epoch is resumed: earlier batches are never started)."""

    memory_read_only = False  # whether the state's memory is a read-only array (a file map)

    @property
    def state_type(self):
        """numba type of the storage state every context of this manager hands to decoders."""
        memory = np.zeros(0, np.uint8)
        memory.setflags(write=not self.memory_read_only)
        return numba.typeof((memory, np.zeros(0, np.int64), np.int64(self.page_shift), self.sorted_ptrs,
                             self.sorted_sizes))

    def compile_reader(self):
        """The ``read(ptr, storage_state) -> uint8 array`` given to decoders (see `ffcv.pipeline.storage`)."""
        return blob_reader()
