"""Helpers shared by the decoders: batch-level blob lookup and error annotation."""
from __future__ import annotations

import numba
import numpy as np

from ..pipeline.storage import blob_location, locate_blobs


def annotate(exc: BaseException, message: str) -> BaseException:
    """Attach `message` (which sample, which field) to an exception raised while decoding."""
    if hasattr(exc, 'add_note'):
        exc.add_note(message)
        return exc
    return RuntimeError(f'{message}: {type(exc).__name__}: {exc}')


def batch_blobs(ptrs: np.ndarray, storage_state):
    """(memory, starts, sizes) of the heap data at `ptrs` (one per sample of a batch)."""
    starts, sizes = locate_blobs(ptrs, storage_state)
    return storage_state[0], starts, sizes


@numba.njit(nogil=True, cache=True)
def copy_blobs(indices, ptr_column, size_column, storage_state, destination, zero_tail):
    """destination[i, :n] = heap data of sample indices[i] (destination: (B, L) uint8); zero the tail.

    `size_column` holds each sample's size when the metadata stores it (it must be trusted over the
    allocation table: a zero-size blob shares its offset with the next one); empty: use the table.
    """
    memory = storage_state[0]
    for i in range(indices.shape[0]):
        start, size = blob_location(ptr_column[indices[i]], storage_state)
        if size_column.shape[0]:
            size = np.int64(size_column[indices[i]])
        n = min(size, destination.shape[1])
        destination[i, :n] = memory[start:start + n]
        if zero_tail:
            destination[i, n:] = 0
    return destination


NO_SIZES = np.zeros(0, np.uint64)  # copy_blobs: take sizes from the allocation table
