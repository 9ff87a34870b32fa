"""`RemoteCacheManager`: the process cache's per-batch page schedule, with pages fetched by URL.

The loader knows each epoch's batches before the epoch starts, so the schedule of
`ffcv.memory_managers.process_cache` tells which pages each batch needs: pages are fetched ``prefetch``
batches before their first use by ``connections`` concurrent range requests, into frames that are reused
once the last batch needing them ends; ``start_batch`` blocks until its pages are there (the loader's first
batch does not wait: its rows are decoded as their bytes arrive, see `RowGate`). Pages go through
a `PageStore`: with a cache folder, a page is fetched from the remote once per node and read from local
disk afterwards.

Cost by order: SEQUENTIAL and QUASI_RANDOM fetch each page once per epoch and hold a bounded window of
pages in memory. RANDOM fetches each page once per epoch while the pages fit in `memory_limit` (a page is
kept from its first to its last use, most of the file for a file much larger than a batch); beyond it,
a page not used again soon is released after its use and loaded again before its next use (from the
disk cache when there is one, else by a new range request), counted in ``stats['reloads']``.
"""
from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from ..remote.page_store import PageStore
from ..remote.options import RemoteOptions
from .process_cache.context import _PageCache
from .process_cache.manager import ProcessCacheManager
from .process_cache.schedule import EpochSchedule


class _VersionCheck:
    """`RemoteFile.check_unchanged` in a daemon thread; `result()` waits for it and raises its error."""

    def __init__(self, remote):
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(remote,), name='ffcv-remote-check', daemon=True)
        self._thread.start()

    def _run(self, remote) -> None:
        try:
            remote.check_unchanged()
        except BaseException as exc:  # reported by result() and by the next page fetch
            self.error = exc

    def result(self) -> None:
        self._thread.join()  # bounded: each request has a timeout, and the retries are counted
        if self.error is not None:
            raise self.error


class RemoteCacheManager(ProcessCacheManager):
    """Pages of a remote `.beton` file (``reader.remote``), fetched ahead of the batches that need them.

    Parameters
    ----------
    reader : Reader
        A Reader opened by URL.
    options : RemoteOptions or dict, optional
        Connections, prefetch depth, disk cache folder and size (defaults: those of ``reader.remote``).
    lookahead : int
        Batches that may still run behind the newest started one (sizes the frames).
    memory_limit : int, optional
        Bytes the page frames of an epoch may take (default: ``options.memory_limit``, else half the
        machine's RAM); pages are loaded again where that keeps an epoch within it (see `ProcessCacheManager`).

    Attributes
    ----------
    store : PageStore
        ``store.stats`` counts disk hits and fetches; ``reader.remote.stats`` counts requests and retries.
    """

    def __init__(self, reader, options=None, lookahead: int = 3, memory_limit=None):
        if reader.remote is None:
            raise ValueError(f'{reader.file_name}: RemoteCacheManager reads files opened by URL')
        self.options = RemoteOptions.coerce(options if options is not None else reader.remote.options)
        if memory_limit is None:
            memory_limit = self.options.memory_limit
        super().__init__(reader, prefetch=self.options.prefetch, lookahead=lookahead,
                         num_readers=self.options.connections, memory_limit=memory_limit)

    def _open_source(self) -> None:
        self.remote = self.reader.remote
        self.store = PageStore(self.remote, self.page_size, self.options.cache_dir, self.options.cache_size)
        self._epochs = 0
        self._check: Optional[_VersionCheck] = None

    def _check_source(self) -> None:
        """Raise if the check started with the previous epoch found the object changed; start this epoch's.

        The check (one round trip) runs beside the epoch instead of delaying its first batch. Pages fetched
        from the remote are checked by every request anyway; the check catches a change while every page
        comes from the disk cache (whose pages are of the version opened, so no batch mixes versions).
        """
        previous, self._check = self._check, None
        if previous is not None:
            previous.result()
        if self._epochs:  # the first epoch was checked by the Reader's requests just now
            self._check = _VersionCheck(self.remote)
        self._epochs += 1

    def _fetch(self, page: int, size: int, destination: memoryview, on_part=None) -> None:
        check = self._check
        if check is not None and check.error is not None:
            raise check.error
        self.store.load(page, size, destination, on_part)

    def _page_cache(self, schedule: EpochSchedule, memory: np.ndarray) -> _PageCache:
        return _PageCache(self.reader.file_name, self.page_size, self.page_shift, schedule, self._page_ends,
                          memory, self.prefetch, self.num_readers, fetch=self._fetch, stats=self.page_stats)

    @property
    def stats(self) -> dict:
        """Requests, bytes, retries (by kind), disk hits, fetches, page loads and reloads so far, in one dict."""
        return {**self.remote.stats, **self.store.stats, **self.page_stats}
