"""The storage contract between decoders and memory managers.

A memory manager exposes the heap data of a `.beton` file as a *storage state*, a tuple that decoders
read blobs from with `read_blob` (compiled) or `read_blob_py` (its Python twin) and that batch helpers
index with `locate_blobs`; decoders never see which manager produced it:

    (memory, page_table, page_shift, sorted_ptrs, sorted_sizes)

* ``memory``: a flat uint8 array holding the data;
* ``page_table``: int64 array mapping a file page number to its slot in ``memory`` (empty when
  ``memory`` is the whole file, addressed by file offset);
* ``page_shift``: log2 of the page size;
* ``sorted_ptrs`` / ``sorted_sizes``: the allocation table sorted by pointer (to find a blob's size).
"""
from __future__ import annotations

import numba
import numpy as np


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


def blob_reader():
    """`read_blob`, or its Python twin when compilation is disabled."""
    from .compiler import Compiler
    return read_blob if Compiler.is_enabled else read_blob_py
