"""Memory managers: where the heap data of a `.beton` file is read from during an epoch.

Every manager exposes the same *storage state*, a tuple understood by one compiled reader (`read_blob`)
and by its Python twin (`read_blob_py`), so decoders work with any manager:

    (memory, page_table, page_shift, sorted_ptrs, sorted_sizes)

* ``memory``: a flat uint8 array holding the data;
* ``page_table``: int64 array mapping a file page number to its slot in ``memory`` (empty when
  ``memory`` is the whole file, addressed by file offset);
* ``page_shift``: log2 of the page size;
* ``sorted_ptrs`` / ``sorted_sizes``: the allocation table sorted by pointer (to find a blob's size).
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, List, Sequence

import numba
import numpy as np

if TYPE_CHECKING:
    from ..reader import Reader


@numba.njit(nogil=True, cache=True)
def blob_location(ptr, state):
    """(start in memory, size) of the allocation at file offset `ptr`."""
    memory, page_table, page_shift, sorted_ptrs, sorted_sizes = state
    position = np.searchsorted(sorted_ptrs, np.uint64(ptr), side='right') - 1
    size = np.int64(sorted_sizes[position])
    ptr = np.int64(ptr)
    if page_table.size == 0:
        return ptr, size
    page = ptr >> page_shift
    start = page_table[page] * (np.int64(1) << page_shift) + (ptr - (page << page_shift))
    return start, size


@numba.njit(nogil=True, cache=True)
def read_blob(ptr, state):
    """uint8 view of the allocation at file offset `ptr` (compiled; for decoders)."""
    start, size = blob_location(ptr, state)
    return state[0][start:start + size]


def locate_blobs(ptrs: np.ndarray, state) -> tuple:
    """Vectorised `blob_location` for a batch: (starts, sizes) int64 arrays."""
    memory, page_table, page_shift, sorted_ptrs, sorted_sizes = state
    ptrs = np.asarray(ptrs, dtype=np.uint64)
    sizes = sorted_sizes[np.searchsorted(sorted_ptrs, ptrs, side='right') - 1].astype(np.int64)
    starts = ptrs.astype(np.int64)
    if page_table.size:
        pages = starts >> page_shift
        starts = page_table[pages] * (1 << page_shift) + (starts - (pages << page_shift))
    return starts, sizes


def read_blob_py(ptr, state) -> np.ndarray:
    """Python twin of `read_blob` (used when compilation is disabled)."""
    starts, sizes = locate_blobs(np.array([ptr]), state)
    return state[0][starts[0]:starts[0] + sizes[0]]


def check_unchanged(reader: 'Reader', stat: os.stat_result) -> None:
    """CorruptFileError unless `stat` is of the very file `reader` parsed, unmodified since."""
    from ..reader import CorruptFileError
    old = reader.file_stat
    if (stat.st_dev, stat.st_ino) != (old.st_dev, old.st_ino):
        raise CorruptFileError(reader.file_name, 'was replaced by another file after it was opened; its metadata '
                                                 'would not match the new data: create a new Loader to read it')
    if (stat.st_size, stat.st_mtime_ns) != (old.st_size, old.st_mtime_ns):
        raise CorruptFileError(reader.file_name, 'was modified in place after it was opened (size or modification '
                                                 'time changed): create a new Loader to read it')


def open_unchanged(reader: 'Reader') -> int:
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


class MemoryContext(ABC):
    """The memory of one epoch; entered before the first batch, exited after the last."""

    @property
    @abstractmethod
    def state(self) -> tuple:
        """Storage state (see the module docstring)."""

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

    def __init__(self, reader: 'Reader'):
        self.reader = reader
        self.page_size = reader.page_size
        self.page_shift = reader.page_size.bit_length() - 1
        self.sorted_ptrs = reader.sorted_ptrs
        self.sorted_sizes = reader.sorted_sizes

    @abstractmethod
    def schedule_epoch(self, batches: Sequence[np.ndarray], first_batch: int = 0) -> MemoryContext:
        """Context for an epoch that visits `batches` (arrays of sample ids) in this order, starting
        at batch `first_batch` (> 0 when an epoch is resumed: earlier batches are never started)."""

    def compile_reader(self):
        """The compiled ``read(ptr, storage_state) -> uint8 array`` given to decoders."""
        from ..pipeline.compiler import Compiler
        return read_blob if Compiler.is_enabled else read_blob_py

    def sample_pages(self) -> List[np.ndarray]:
        """For each sample, the sorted file pages holding its heap data (empty for scalar-only)."""
        table = self.reader.alloc_table
        pages = (table['ptr'] >> np.uint64(self.page_shift)).astype(np.int64)
        samples = table['sample_id'].astype(np.int64)
        order = np.lexsort((pages, samples))
        samples, pages = samples[order], pages[order]
        bounds = np.searchsorted(samples, np.arange(self.reader.num_samples + 1))
        return [np.unique(pages[bounds[i]:bounds[i + 1]]) for i in range(self.reader.num_samples)]
