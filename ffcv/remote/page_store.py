"""`PageStore`: the pages of remote `.beton` files on local disk, shared by the processes of a node.

Layout: ``<cache_dir>/<key>/<page>.page``, where ``key`` is a hash of the URL, the size and the version tag
(ETag, else Last-Modified date) of the object, so a new version of an object never reads pages of the old
one (for an object without a version tag, only a change of size is told apart). A page is fetched under an
exclusive ``flock`` on ``<page>.lock`` (processes asking for the same page at once wait for the one that
fetches it, then read its file), written to a temporary name and renamed into place: a page file is
always complete, even after a crash; temporary files of dead processes are removed when a store opens.
Beyond ``cache_size`` bytes the least recently used pages (by modification time, refreshed on each hit)
are removed, across every object in the folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
import warnings
from collections import Counter
from typing import Optional

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows: no cross-process dedup, still correct)
    fcntl = None

from .source import RemoteFile, RemoteFileError

_LOCK_POLL_S = 0.005
_STALE_TMP_S = 3600.0   # a temporary page file this old belongs to a dead process
_EVICT_TO = 0.9         # evict down to this fraction of the limit


class PageStore:
    """Pages of one `RemoteFile`, fetched once and kept on disk (or fetched each time without a folder).

    Parameters
    ----------
    remote : RemoteFile
    page_size : int
        Bytes per page of the file (pages start at multiples of it).
    cache_dir : str, optional
        The shared folder; None fetches every page from the remote each time.
    cache_size : int
        Bytes the folder may hold.

    Attributes
    ----------
    stats : Counter
        ``disk_hits``, ``fetches`` (pages fetched from the remote by this process), ``waits`` (pages
        another process was fetching), ``evicted``, ``store_errors`` (pages the disk could not take: the
        run goes on, with a warning).
    """

    def __init__(self, remote: RemoteFile, page_size: int, cache_dir: Optional[str] = None,
                 cache_size: int = 64 << 30):
        self.remote = remote
        self.page_size = page_size
        self.cache_size = int(cache_size)
        self.stats: Counter = Counter()
        self._lock = threading.Lock()
        self.folder = None
        if cache_dir is not None:
            self.root = os.path.abspath(cache_dir)
            key = hashlib.sha256(f'{remote.url}\0{remote.size}\0{remote.version}'.encode()).hexdigest()[:24]
            self.folder = os.path.join(self.root, key)
            try:
                os.makedirs(self.folder, exist_ok=True)
                with open(os.path.join(self.folder, 'source.txt'), 'w') as handle:
                    handle.write(f'{remote.url}\nsize {remote.size}\n{remote.version_kind} {remote.version}\n')
            except OSError as exc:
                raise OSError(exc.errno, f'page cache folder {cache_dir}: cannot create it ({exc.strerror})') from exc
            self._remove_stale_temporaries()
            self._added = self._disk_usage()

    def _path(self, page: int) -> str:
        return os.path.join(self.folder, f'{page:08d}.page')

    def load(self, page: int, size: int, destination: memoryview, on_part=None) -> None:
        """Fill ``destination[:size]`` with the first `size` bytes of page `page` (disk, else remote);
        `on_part(start, stop)`: see `RemoteFile.read_into` (called only for bytes fetched from the remote)."""
        if self.folder is None:
            self._fetch(page, destination[:size], on_part)
            return
        if self._read_cached(page, size, destination):
            return
        with self._page_lock(page):
            if self._read_cached(page, size, destination):  # fetched by another process meanwhile
                with self._lock:
                    self.stats['waits'] += 1
                return
            self._fetch(page, destination[:size], on_part)
            try:
                self._store(page, destination[:size])
            except OSError as exc:  # a full or failing cache disk slows training down; it does not stop it
                self._store_failed(exc)

    def _fetch(self, page: int, destination: memoryview, on_part=None) -> None:
        self.remote.read_into(page * self.page_size, destination, on_part)
        with self._lock:
            self.stats['fetches'] += 1

    def _read_cached(self, page: int, size: int, destination: memoryview) -> bool:
        path = self._path(page)
        try:
            with open(path, 'rb', buffering=0) as handle:
                if os.fstat(handle.fileno()).st_size != size:  # (never: files are renamed in complete)
                    return False
                done = 0
                while done < size:
                    count = handle.readinto(destination[done:size])
                    if not count:
                        return False
                    done += count
            os.utime(path)  # most recently used
        except FileNotFoundError:  # not cached, or evicted just now
            return False
        with self._lock:
            self.stats['disk_hits'] += 1
        return True

    def _store(self, page: int, data: memoryview) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f'{page:08d}.', suffix='.tmp')
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(data)
            os.replace(tmp, self._path(page))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with self._lock:
            self._added += len(data)
            over = self._added > self.cache_size
        if over:
            self.evict()

    def _store_failed(self, exc: OSError) -> None:
        with self._lock:
            self.stats['store_errors'] += 1
            first = self.stats['store_errors'] == 1
        if first:
            warnings.warn(f'page cache {self.folder}: cannot store pages ({exc}); pages that are not cached are '
                          'fetched again when needed', RuntimeWarning, stacklevel=2)

    @contextlib.contextmanager
    def _page_lock(self, page: int):
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(os.path.join(self.folder, f'{page:08d}.lock'), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.remote.options.timeout * (self.remote.options.retries + 2)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RemoteFileError(self.remote.url, f'page {page}: another process has held its cache '
                                              f'lock in {self.folder} for too long') from None
                    time.sleep(_LOCK_POLL_S)
            yield
        finally:
            os.close(fd)  # releases the lock

    # -- size limit --

    def _entries(self):
        """(mtime, size, path) of every page file under the cache root."""
        entries = []
        for folder in os.scandir(self.root):
            if not folder.is_dir():
                continue
            with contextlib.suppress(OSError):
                for entry in os.scandir(folder.path):
                    if entry.name.endswith('.page'):
                        with contextlib.suppress(OSError):
                            stat = entry.stat()
                            entries.append((stat.st_mtime, stat.st_size, entry.path))
        return entries

    def _disk_usage(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def evict(self) -> int:
        """Remove least recently used pages until the folder holds at most 90% of `cache_size`; returns
        the bytes it now holds."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        target = int(self.cache_size * _EVICT_TO)
        for _, size, path in entries:
            if total <= target:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                with self._lock:
                    self.stats['evicted'] += 1
            total -= size
        with self._lock:
            self._added = total
        return total

    def _remove_stale_temporaries(self) -> None:
        now = time.time()
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                if entry.name.endswith('.tmp'):
                    with contextlib.suppress(OSError):
                        if now - entry.stat().st_mtime > _STALE_TMP_S:
                            os.unlink(entry.path)
