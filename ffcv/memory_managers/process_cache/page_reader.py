"""`PageReader`: FFCV 1.0.2's page-reading thread, kept for FFCV code compatibility.

FFCV's process cache runs a few of these threads: each takes ``(page_number, slot)`` requests from a
queue, reads that page of the file into ``memory[slot]`` and announces the page number on another queue.
This package's process cache reads pages its own way (`ffcv.memory_managers.process_cache.context`);
this class serves code built on FFCV's queues.
"""
from __future__ import annotations

import ctypes
import os
from queue import Queue
from threading import Thread

import numpy as np

from ...libffcv import read


class PageReader(Thread):
    """A daemon thread reading requested pages of a file into slots of a memory array (FFCV 1.0.2 API, for
    FFCV code compatibility).

    Parameters
    ----------
    fname : str
        The file to read (opened by the thread).
    queries : Queue
        Requests ``(page_number, slot)``; None stops the thread.
    loaded : Queue
        Receives the page number of each page read into its slot.
    memory : np.ndarray
        (slots, page_size) uint8 array; page ``n`` is read from file offset ``n * page_size``.

    Differences from FFCV's: a page is read completely (a short ``pread`` is continued), the part past the
    end of the file is zeroed (FFCV's leaves the slot's previous bytes), and a failed read puts the
    OSError on `loaded` in place of the page number, so the consumer learns of it instead of reading stale
    bytes (FFCV's announces the page anyway).
    """

    def __init__(self, fname: str, queries: Queue, loaded: Queue, memory: np.ndarray):
        self.fname: str = fname
        self.queries: Queue = queries
        self.memory: np.ndarray = memory
        self.page_size = memory.shape[1]
        self.loaded: Queue = loaded
        super().__init__(daemon=True)

    def run(self):
        """Serve requests until a None arrives."""
        with open(self.fname, 'rb') as handle:
            fileno = handle.fileno()
            while True:
                query = self.queries.get()
                if query is None:
                    break
                page_number, slot = query
                try:
                    self._read_page(fileno, int(page_number), self.memory[slot])
                except OSError as error:
                    self.loaded.put(error)
                    continue
                self.loaded.put(page_number)

    def _read_page(self, fileno: int, page_number: int, destination: np.ndarray) -> None:
        """Fill `destination` from the page's offset; zeros past the end of the file."""
        offset, done = page_number * self.page_size, 0
        while done < destination.size:
            count = read(fileno, destination[done:], offset + done)
            if count < 0:
                code = ctypes.get_errno()
                raise OSError(code, f'reading page {page_number} of {self.fname}: {os.strerror(code)}')
            if count == 0:  # end of file
                destination[done:] = 0
                break
            done += count
