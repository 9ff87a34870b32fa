"""Helpers shared by the decoders: batch-level blob lookup and reads, error annotation."""
from __future__ import annotations

import os

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


class BlobReads:
    """Where an image decoder reads each sample's bytes during one batch: slices of `memory`, or, when `memory`
    is the loader's map of the file (``os_cache=True``, see `ffcv.memory_managers.os_cache`), copies read from
    the file (``preadv``, served by the OS page cache): the whole span of the batch's bytes in one read when
    they lie close together (a SEQUENTIAL order: one call instead of one per image), else each sample's
    bytes into a buffer of the batch's largest size.

    Reading through the map would map the pages into the process, counted in its RSS until unmapped, and a
    fault maps more than the bytes read (the kernel's fault-around: ~77 KB per 14 KB JPEG on the benchmark
    photo set); unmapping them every few images instead cost the train pipeline about 6% of its speed on a
    2-core AMD EPYC VM (a fault per image when read again: ~14 us, plus ~3 us of ``madvise`` per image),
    where a read costs a few microseconds. What `read` returns is valid until its next call.
    """

    __slots__ = ('memory', 'fd', 'buffer', 'span_start')

    def __init__(self, memory: np.ndarray, starts: np.ndarray, sizes: np.ndarray):
        base = getattr(memory.base, 'obj', memory.base)  # np.frombuffer(mmap) keeps a memoryview of it
        self.memory = memory
        self.fd = getattr(base, 'pread_fd', None) if hasattr(os, 'preadv') else None
        self.buffer = self.span_start = None
        if self.fd is None or not len(sizes):
            return
        starts, sizes = np.asarray(starts, np.int64), np.asarray(sizes, np.int64)
        first, end = int(starts.min()), int((starts + sizes).max())
        if end - first <= min(2 * int(sizes.sum()), MAX_SPAN_BYTES):
            span = np.empty(end - first, np.uint8)
            if os.preadv(self.fd, [span], first) == span.size:
                self.buffer, self.span_start = span, first
                return
        self.buffer = np.empty(int(sizes.max()), np.uint8)

    def read(self, start: int, size: int) -> np.ndarray:
        """The `size` bytes at `start` of the file's memory."""
        if self.span_start is not None:
            return self.buffer[start - self.span_start:start - self.span_start + size]
        if self.buffer is not None:
            view = self.buffer[:size]
            if os.preadv(self.fd, [view], start) == size:
                return view
        return self.memory[start:start + size]  # (a file shorter than its tables: what the map holds)


MAX_SPAN_BYTES = 64 << 20  # BlobReads: the largest span of a batch read in one call
