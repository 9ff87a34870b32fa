"""`MemoryAllocator`: FFCV 1.0.2's page allocator for writing sample data, kept for FFCV code compatibility.

FFCV's writer gives each worker process a copy of one allocator: a worker asks for space with `malloc`,
fills the returned buffer, and whole pages go to the end of the file in page order, whichever process
filled them. This package's `DatasetWriter` places pages itself (`ffcv.writer`), so nothing here is used by
it; the class is for code that writes `.beton` data the FFCV way, and behaves as FFCV's:

* pages are numbered by two counters in shared memory (``multiprocessing.Value``), inherited by forked
  workers: the next page to hand out and the next page to write;
* a process writes its page only when every earlier page is written (it waits), so appending keeps the
  order; page 0 is preceded by zeros up to ``offset`` (the header and metadata lie before it);
* all allocations of one sample must share a page: when a sample overflows its page, its allocations are
  withdrawn and `malloc` raises MemoryError; the caller writes the sample again, on the fresh page.
"""
from __future__ import annotations

import ctypes
import os
import time
from multiprocessing import Value

import numpy as np

from .utils import align_to_page


class MemoryAllocator:
    """Hand out space in fixed-size pages of a file and append the pages in order (FFCV 1.0.2 API, for FFCV
    code compatibility).

    Use it as a context manager: entering opens `fname` for appending, leaving writes the last page.

    Parameters
    ----------
    fname : str
        The file; its length must not exceed the first page's offset when page 0 is written.
    offset_start : int
        Where the data may start (rounded up to a multiple of `page_size`: the first page's offset).
    page_size : int
        Bytes per page; no single allocation may be larger.

    Attributes
    ----------
    allocations : list of (sample_id, ptr, size)
        Every allocation made by this process (the `.beton` allocation table's rows).
    my_page : int
        The page this process fills (-1 before the first `malloc` and after `flush_page`).
    page_offset : int
        Bytes of `my_page` already handed out.

    Differences from FFCV's: entering returns the allocator (FFCV's returns None); a page with nothing
    allocated on it (after ``malloc(0)``) is still written, so later pages do not wait for it forever;
    a file longer than a page's offset raises IOError instead of misplacing the page; after `flush_page`
    the page is done (FFCV's would wait forever on a second flush) and `malloc` starts a new one; the bytes
    of a withdrawn sample are zeroed before its page is written (FFCV's leaves them, unreferenced).
    """

    def __init__(self, fname, offset_start, page_size):
        self.fname = fname
        self.offset = align_to_page(offset_start, page_size)
        self.next_page_allocated = Value(ctypes.c_uint64, 0)
        self.next_page_written = Value(ctypes.c_uint64, 0)
        self.page_size = page_size
        self.page_offset = 0
        self.my_page = -1
        self.page_data = np.zeros(page_size, '<u1')
        self.allocations = []
        self.current_sample_id = None
        self.fp = None

    def __enter__(self):
        self.fp = open(self.fname, 'ab', buffering=0)
        return self

    def set_current_sample(self, current_sample_id):
        """Record the sample that the next allocations belong to."""
        self.current_sample_id = current_sample_id

    @property
    def space_left_in_page(self):
        """Bytes still free in this process's page (0 before the first page)."""
        if self.my_page < 0:
            return 0
        return self.page_size - self.page_offset

    def malloc(self, size):
        """Reserve `size` bytes for the current sample.

        Returns
        -------
        (int, np.ndarray)
            The data's offset in the file, and the uint8 buffer (a view of the page) to write it into.

        Raises
        ------
        ValueError
            If `size` exceeds the page size.
        MemoryError
            If the current sample already has data on the page that just filled up: its allocations are
            withdrawn and a new page started; allocate the whole sample again.
        """
        if size > self.page_size:
            raise ValueError(f'cannot allocate {size} bytes in pages of {self.page_size} bytes')
        if self.my_page < 0 or size > self.space_left_in_page:
            self._start_new_page()
        start = self.page_offset
        self.page_offset += size
        ptr = self.offset + self.my_page * self.page_size + start
        self.allocations.append((self.current_sample_id, ptr, size))
        return ptr, self.page_data[start:self.page_offset]

    def _start_new_page(self) -> None:
        """Withdraw a sample split across pages, write the full page and book the next free one."""
        split = False
        while self.allocations and self.allocations[-1][0] == self.current_sample_id:
            _, ptr, size = self.allocations.pop()
            if self.my_page >= 0:  # still unwritten: leave no orphan bytes in the file
                start = ptr - self.offset - self.my_page * self.page_size
                self.page_data[start:start + size] = 0
            split = True
        self.flush_page()
        with self.next_page_allocated.get_lock():
            self.my_page = self.next_page_allocated.value
            self.next_page_allocated.value += 1
        self.page_offset = 0
        self.page_data.fill(0)
        if split:
            raise MemoryError(f'sample {self.current_sample_id} does not fit in the rest of its page; '
                              'allocate it again (it now starts on a new page)')

    def flush_page(self):
        """Append this process's page to the file once all earlier pages are written (no-op without a page)."""
        if self.my_page < 0:
            return
        while self.next_page_written.value != self.my_page:  # an earlier page is still being filled
            time.sleep(0.001)
        expected = self.offset + self.my_page * self.page_size
        end = self.fp.seek(0, os.SEEK_END)
        if self.my_page == 0 and end < expected:
            self._write(bytes(expected - end))
            end = expected
        if end != expected:
            raise IOError(f'{self.fname} is {end} bytes long where page {self.my_page} should start '
                          f'({expected})')
        self._write(memoryview(self.page_data))
        with self.next_page_written.get_lock():
            self.next_page_written.value += 1
        self.my_page = -1  # written: the next malloc books a new page (a second flush is a no-op)

    def _write(self, data) -> None:
        """Append all of `data` (an unbuffered file may take part of it per call)."""
        view = memoryview(data).cast('B')
        while view.nbytes:
            view = view[self.fp.write(view):]

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.flush_page()
        self.fp.close()
