"""`ProcessCacheContext`: one epoch of the process cache.

Worker threads call ``start_batch(b)`` / ``end_batch(b)``; a small pool of reader threads copies whole
pages from the file into frames with ``os.preadv`` (which releases the GIL). All bookkeeping happens
under one condition variable:

* ``start_batch(b)`` allows every load (a page read for a run of batches, see `EpochSchedule`) whose first
  batch is up to ``b + prefetch`` to be read, hands as many of them as there are free frames to the
  readers (in reading order, so the pages of the oldest batches always get memory first and the schedule
  cannot deadlock), then waits until the pages of ``b`` are resident, one of them failed (OSError), or the
  context is closed.
* ``start_batch_early(b, indices)`` (pages fetched from elsewhere, see `fetch`): the same without the wait;
  it returns a `RowGate` whose ``wait(rows)`` blocks until the bytes of those rows have arrived, so a
  batch can be decoded while its pages come in (a remote file's first batch needs nearly every page of a
  small file). A fetch announces the bytes of a page as they arrive (`_part_arrived`); the page is in
  ``page_table`` from its first bytes on, and only rows whose every byte has arrived are handed out.
* ``end_batch(b)`` drops one use of each load of ``b``; a load whose every batch has ended gives its
  frame back and the next waiting loads are handed out. A page is loaded again (a reload) only once its
  previous load has given its frame back, so ``page_table`` always names one frame per page.

The reader threads only hold a reference to the shared `_PageCache`, never to the context, so a
context that is dropped without ``close()`` is still closed by its finaliser.
"""
from __future__ import annotations

import errno
import os
import queue
import threading
from collections import Counter
from typing import Callable, List, Optional

import numpy as np

from ..base import ContextClosedError, MemoryContext
from .schedule import EpochSchedule

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..base import MemoryManager  # noqa: F401
from ..common import BATCHES_TYPE  # noqa: F401

# Page states.
WAITING, READING, LOADED, FAILED, RELEASED = range(5)
_JOIN_TIMEOUT_S = 5.0
_WAIT_S = 1.0       # a waiting worker re-checks the readers' health this often
_STALL_WAITS = 5    # quiet waits (nothing read, no batch in progress) before giving up


class _PageCache:
    """State shared by the workers and the reader threads of one epoch."""

    def __init__(self, file_name: str, page_size: int, page_shift: int, schedule: EpochSchedule,
                 page_ends: np.ndarray, memory: np.ndarray, prefetch: int, num_readers: int,
                 open_file: Optional[Callable[[], int]] = None,
                 fetch: Optional[Callable[[int, int, memoryview], None]] = None, stats: Optional[Counter] = None):
        self.file_name = file_name
        self.page_size = page_size
        self.page_shift = page_shift
        self.schedule = schedule
        self.page_ends = page_ends
        self.memory = memory
        self.prefetch = prefetch
        self.num_readers = num_readers
        num_pages, num_loads = schedule.uses.size, schedule.load_page.size
        self.page_table = np.full(num_pages, -1, np.int64)   # frame of each resident page (decoders read it)
        self.holder = np.full(num_pages, -1, np.int64)       # load holding each page's frame (-1: none)
        self.frame_of = np.full(num_loads, -1, np.int64)
        self.status = np.full(num_loads, WAITING, np.int8)
        self.remaining = schedule.load_uses.copy()
        self.loaded_before = np.zeros(num_pages, bool)       # read earlier this epoch: a new load is a reload
        self.stats = stats if stats is not None else Counter()
        self.ended = np.zeros(schedule.batch_offsets.size - 1, bool)
        self.started = np.zeros(schedule.batch_offsets.size - 1, bool)
        self.active = 0    # batches started and not yet ended
        self.reading = 0   # pages handed to the readers and not yet done
        self.progress = 0  # bumped by every event that may unblock a waiting worker
        self.errors = {}
        self.free_frames = list(range(schedule.num_frames - 1, -1, -1))
        self.next_to_issue = 0
        self.issue_limit = -1
        self.cond = threading.Condition()
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: List[threading.Thread] = []
        self.fd: Optional[int] = None
        self.closed = False
        self.fetch = fetch  # fetch(page, size, frame view, on_part): pages from elsewhere than a local file
        self.gated: Optional[int] = None  # the batch started by start_batch_early, until it ends
        self.arrived = {}   # load -> {start: stop}: bytes [start, stop) of a page being fetched are in
        self.recycle: Optional[Callable[[np.ndarray], None]] = None  # takes the frames back for a later epoch
        if schedule.load_page.size and fetch is None:
            self.fd = open_file() if open_file is not None else os.open(file_name, os.O_RDONLY)

    # -- worker side (called with self.cond held) --

    def issue(self) -> None:
        """Hand loads that may be read now to the readers, in reading order, while frames are free."""
        load_page, load_first = self.schedule.load_page, self.schedule.load_first
        while self.next_to_issue < load_page.size and self.free_frames:
            load = self.next_to_issue
            if load_first[load] > self.issue_limit:
                break
            if self.status[load] != WAITING:  # every batch it serves already ended
                self.next_to_issue += 1
                continue
            page = int(load_page[load])
            if self.holder[page] != -1:  # the page's previous load still holds it (batches running late)
                break
            self.next_to_issue += 1
            self.frame_of[load] = self.free_frames.pop()
            self.holder[page] = load
            self.status[load] = READING
            self.reading += 1
            held = self.schedule.num_frames - len(self.free_frames)
            self.stats['peak_frames'] = max(self.stats['peak_frames'], held)
            self._start_readers()
            self.requests.put((load, page, int(self.frame_of[load])))

    def _start_readers(self) -> None:
        if self.threads:
            return
        count = max(1, min(self.num_readers, self.schedule.load_page.size))
        for i in range(count):
            thread = threading.Thread(target=self._read_loop, name=f'ffcv-page-reader-{i}', daemon=True)
            thread.start()
            self.threads.append(thread)

    def release(self, load: int) -> None:
        """The last batch served by `load` ended: give its frame back (or never read it)."""
        state = self.status[load]
        if state == WAITING:
            self.status[load] = RELEASED
        elif state in (LOADED, FAILED):
            page = int(self.schedule.load_page[load])
            self.page_table[page] = -1
            self.holder[page] = -1
            self.free_frames.append(int(self.frame_of[load]))
            self.status[load] = RELEASED
        # READING: the reader frees the frame when it is done.

    # -- reader threads --

    def _read_loop(self) -> None:
        while True:
            request = self.requests.get()
            if request is None or self.closed:
                return
            load, page, frame = request
            error = None
            try:
                count = self._read_page(page, frame, load)
            except Exception as exc:  # reported to the worker waiting for this page
                error = exc
            with self.cond:
                if self.closed:
                    return
                self.reading -= 1
                self.progress += 1
                self.arrived.pop(load, None)
                if error is not None:
                    self.errors[load] = error
                    self.status[load] = FAILED
                else:
                    self.page_table[page] = frame
                    self.status[load] = LOADED
                    self.stats['loads'] += 1
                    self.stats['reloads'] += int(self.loaded_before[page])
                    self.stats['bytes_read'] += count
                    self.loaded_before[page] = True
                if self.remaining[load] == 0:
                    self.release(load)
                    self.issue()
                self.cond.notify_all()

    def _read_page(self, page: int, frame: int, load: int) -> int:
        """Read page `page` into frame `frame` (for `load`); returns the bytes read."""
        offset = page << self.page_shift
        wanted = int(self.page_ends[page])
        view = memoryview(self.memory)[frame * self.page_size:(frame + 1) * self.page_size]
        if self.fetch is not None:  # (its progress matters only while a batch started early waits for bytes)
            on_part = None if self.gated is None else \
                (lambda start, stop: self._part_arrived(load, page, frame, start, stop))
            self.fetch(page, wanted, view, on_part)
            return wanted
        done = 0
        try:
            while done < self.page_size:
                if hasattr(os, 'preadv'):
                    count = os.preadv(self.fd, [view[done:]], offset + done)
                else:  # pragma: no cover (platforms without preadv)
                    data = os.pread(self.fd, self.page_size - done, offset + done)
                    view[done:done + len(data)] = data
                    count = len(data)
                if count == 0:
                    break
                done += count
        except OSError as exc:
            raise OSError(exc.errno, f'{self.file_name}: reading page {page} (bytes {offset}..'
                          f'{offset + self.page_size}) failed: {exc.strerror}') from exc
        if done < wanted:
            raise OSError(errno.EIO, f'{self.file_name}: short read of page {page}: got {done} of the '
                          f'{wanted} bytes its samples need at offset {offset} (was the file truncated or '
                          'replaced after it was opened?)')
        return done

    def _part_arrived(self, load: int, page: int, frame: int, start: int, stop: int) -> None:
        """Bytes [start, stop) of a page being fetched by `load` are in its frame (see `RowGate`)."""
        with self.cond:
            if self.closed or self.gated is None or self.status[load] != READING:
                return
            parts = self.arrived.setdefault(load, {})
            parts[start] = max(parts.get(start, start), stop)
            self.page_table[page] = frame  # only rows whose bytes have all arrived are read before LOADED
            self.progress += 1
            self.cond.notify_all()

    def raise_if_failed(self, batch: int, loads: np.ndarray) -> None:
        """Raise the error of a failed load of `batch`, or if the batch cannot be served (with cond held)."""
        status = self.status[loads]
        failed = loads[status == FAILED]
        if failed.size:
            error = self.errors[int(failed[0])]
            if hasattr(error, 'url'):  # a remote file's error: already names the URL and the problem
                raise type(error)(error.url, error.problem) from error
            if isinstance(error, OSError):
                raise OSError(error.errno, error.strerror) from error
            page = int(self.schedule.load_page[failed[0]])
            raise RuntimeError(f'{self.file_name}: reading page {page} failed: {error!r}') from error
        if (status == RELEASED).any():
            raise RuntimeError(f'batch {batch} was started after end_batch({batch}) released its pages')
        if (status == READING).any() and not any(thread.is_alive() for thread in self.threads):
            raise RuntimeError(f'{self.file_name}: the page reader threads stopped unexpectedly')

    def request(self, batch: int) -> None:
        """Batch `batch` starts: the loads up to ``batch + prefetch`` may be read; hand out those that have a
        frame (with cond held)."""
        self.raise_if_closed(batch)
        self.issue_limit = max(self.issue_limit, batch + self.prefetch)
        self.issue()

    def raise_if_closed(self, batch: int) -> None:
        if self.closed:
            raise ContextClosedError(f'{self.file_name}: batch {batch} was requested from a closed memory '
                                     'context (the epoch was abandoned)')

    def mark_started(self, batch: int) -> None:
        if not self.started[batch]:
            self.started[batch] = True
            self.active += 1
            self.progress += 1

    # -- shutdown --

    def close(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        while True:  # drop pending reads, then wake every reader
            try:
                self.requests.get_nowait()
            except queue.Empty:
                break
        for _ in self.threads:
            self.requests.put(None)
        current = threading.current_thread()
        for thread in self.threads:
            if thread is not current:
                thread.join(_JOIN_TIMEOUT_S)
        readers_done = not any(thread.is_alive() for thread in self.threads)
        if self.fd is not None and readers_done:
            os.close(self.fd)  # (a reader stuck in a system call keeps it: never close an fd in use)
            self.fd = None
        memory, self.memory = self.memory, None
        # The frames go to a later epoch only when nothing can touch them any more: no reader is alive and
        # no batch is between start_batch and end_batch (a worker stuck in one keeps them from reuse).
        if self.recycle is not None and readers_done and self.active == 0:
            self.recycle(memory)


def _covered(parts: dict, start: int, stop: int) -> bool:
    """Whether the union of the intervals [a, parts[a]) covers [start, stop)."""
    reached = start
    for a, b in sorted(parts.items()):
        if a > reached:
            break
        reached = max(reached, b)
        if reached >= stop:
            return True
    return reached >= stop


class RowGate:
    """The rows of a batch started by `ProcessCacheContext.start_batch_early`: which have their bytes in memory.

    Parameters
    ----------
    cache : _PageCache
    batch : int
    loads : np.ndarray
        The loads serving the batch.
    spans : tuple
        `sample_spans` of the batch's samples: the byte ranges of each row's data in its pages.
    """

    def __init__(self, cache: _PageCache, batch: int, loads: np.ndarray, spans: tuple):
        self._cache = cache
        self.batch = batch
        self._loads = loads
        self._offsets, pages, self._starts, self._stops = spans
        load_of_page = {int(cache.schedule.load_page[load]): int(load) for load in loads}
        self._span_loads = np.array([load_of_page[int(page)] for page in pages], np.int64)
        self._ready = np.zeros(self._offsets.size - 1, bool)  # rows whose bytes are all in
        self._seen = -1  # cache.progress at the last check

    def _row_ready(self, row: int) -> bool:
        cache = self._cache
        for k in range(self._offsets[row], self._offsets[row + 1]):
            load = self._span_loads[k]
            state = cache.status[load]
            if state == LOADED:
                continue
            if state != READING or not _covered(cache.arrived.get(int(load), {}), self._starts[k], self._stops[k]):
                return False
        return True

    def _refresh(self) -> None:
        """Check again the rows not yet known to be in, if anything arrived since the last check (cond held)."""
        if self._seen == self._cache.progress:
            return
        self._seen = self._cache.progress
        for row in np.flatnonzero(~self._ready):
            self._ready[row] = self._row_ready(row)

    def _until(self, done: Callable[[], bool]) -> None:
        """Wait (cond held) until `done()`, checked whenever bytes arrived; raise as `start_batch` does if a
        page failed or the context closed."""
        cache = self._cache
        while True:
            cache.raise_if_closed(self.batch)
            self._refresh()
            if done():
                return
            cache.raise_if_failed(self.batch, self._loads)
            cache.cond.wait(_WAIT_S)

    def take(self, claimed: np.ndarray, count: int) -> np.ndarray:
        """The first `count` rows not yet `claimed` (fewer when fewer are left) whose bytes are in memory,
        marked claimed, in order, once there are that many; raise as `start_batch` does if a page failed or
        the context closed."""
        with self._cache.cond:
            wanted = min(count, int((~claimed).sum()))
            self._until(lambda: np.count_nonzero(self._ready & ~claimed) >= wanted)
            rows = np.flatnonzero(self._ready & ~claimed)[:wanted]
            claimed[rows] = True
            return rows

    def wait(self, rows) -> None:
        """Return once the bytes of every row in `rows` are in memory; raise as `start_batch` does if a page
        failed or the context closed."""
        rows = np.asarray(rows, np.int64)
        with self._cache.cond:
            self._until(lambda: self._ready[rows].all())


class ProcessCacheContext(MemoryContext):
    """Memory of one epoch read by `ProcessCacheManager` (see the module docstring).

    Attributes
    ----------
    num_frames : int
        Pages held in memory at most (memory = num_frames x page size).
    schedule : EpochSchedule
        Pages per batch and their first and last use.
    """

    def __init__(self, cache: _PageCache, sorted_ptrs: np.ndarray, sorted_sizes: np.ndarray,
                 spans: Optional[Callable[[np.ndarray], tuple]] = None):
        self._cache = cache
        self._spans = spans  # the byte ranges of samples in their pages (for `start_batch_early`)
        self.schedule = cache.schedule
        self.num_frames = cache.schedule.num_frames
        self._state = (cache.memory, cache.page_table, np.int64(cache.page_shift), sorted_ptrs, sorted_sizes)

    @property
    def state(self) -> tuple:
        if self._cache.closed:
            raise ContextClosedError(f'{self._cache.file_name}: the memory context of this epoch is closed')
        return self._state

    def start_batch(self, batch: int) -> None:
        """Read (and prefetch) what batch `batch` needs; return once its pages are in memory.

        Raises OSError (naming the file) if one of its pages could not be read, and
        `ContextClosedError` if the context is (or gets) closed meanwhile.
        """
        cache = self._cache
        loads = self._loads(batch)
        stalled = 0
        with cache.cond:
            while True:
                cache.request(batch)
                if (cache.status[loads] == LOADED).all():
                    cache.mark_started(batch)
                    return
                cache.raise_if_failed(batch, loads)
                seen = cache.progress
                cache.cond.wait(_WAIT_S)
                # Nothing being read and no batch in progress: only a batch that never starts could
                # free a frame. Give up after a few quiet waits rather than hang.
                quiet = cache.progress == seen and cache.reading == 0 and cache.active == 0
                stalled = stalled + 1 if quiet else 0
                if stalled >= _STALL_WAITS:
                    raise RuntimeError(
                        f'{cache.file_name}: batch {batch} cannot get memory: all {self.num_frames} page frames '
                        'are held by pages of batches that have not started, and no batch in progress can '
                        'free one. An epoch resumed at batch k must be scheduled with '
                        'schedule_epoch(batches, first_batch=k)')

    def start_batch_early(self, batch: int, indices: np.ndarray) -> Optional['RowGate']:
        """`start_batch` without waiting for the pages to arrive, where pages are fetched in parts (a remote
        file): returns a `RowGate` telling when the bytes of each row (sample ``indices[row]``) are in
        memory, or None once the batch's pages are all in memory (then as `start_batch`). With pages read
        from a local file, simply `start_batch` (None)."""
        cache = self._cache
        if cache.fetch is None or self._spans is None:
            self.start_batch(batch)
            return None
        loads = self._loads(batch)
        spans = self._spans(indices)
        with cache.cond:
            cache.gated = batch  # set before the reads are handed out: they announce their progress
            cache.request(batch)
            status = cache.status[loads]
            # (a load still waiting for a frame: start_batch waits for it; never so for a first batch)
            if not (status == LOADED).all() and not (status == WAITING).any():
                cache.raise_if_failed(batch, loads)
                cache.mark_started(batch)
                return RowGate(cache, batch, loads, spans)
            cache.gated = None
        self.start_batch(batch)
        return None

    def end_batch(self, batch: int) -> None:
        """Batch `batch` no longer reads its pages; frames whose every batch ended are reused."""
        cache = self._cache
        loads = self._loads(batch)
        with cache.cond:
            if cache.closed or cache.ended[batch]:
                return
            cache.ended[batch] = True
            cache.progress += 1
            if cache.gated == batch:
                cache.gated = None
                cache.arrived.clear()
            if cache.started[batch]:
                cache.active -= 1
            cache.remaining[loads] -= 1
            for load in loads[cache.remaining[loads] == 0]:
                cache.release(int(load))
            cache.issue()

    def _loads(self, batch: int) -> np.ndarray:
        if not 0 <= batch < self.schedule.batch_offsets.size - 1:
            raise IndexError(f'batch {batch} out of range: this epoch has '
                             f'{self.schedule.batch_offsets.size - 1} batches')
        return self.schedule.loads_of(batch)

    def close(self) -> None:
        """Stop the readers, close the file and drop the frames (idempotent; waiting workers wake up)."""
        self._cache.close()
        self._state = None

    def __del__(self):
        cache = getattr(self, '_cache', None)
        if cache is not None:
            try:
                cache.close()
            except Exception:  # interpreter shutdown: modules may already be gone
                pass
