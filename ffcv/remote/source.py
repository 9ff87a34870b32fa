"""`RemoteFile`: ranged reads of one object by URL, retried, timed out, counted, and checked unchanged.

Every read names the version of the object it expects (the ETag seen when the file was opened, or, from
a server that sends no ETag, its Last-Modified date): over HTTP with ``If-Match`` (``If-Unmodified-Since``)
and by comparing the tag of each response, over S3 by comparing the ETag of each response; every response
must also report the size the object had. A read of a changed object raises `RemoteFileChangedError`, so a
run never mixes data of two versions. An object with no version tag at all is checked by its size only
(a warning says so, once per URL). Transient failures (timeouts,
connection resets, 5xx answers, responses cut short) are retried with exponential back-off and counted in
`RemoteFile.stats`; permanent ones (403, 404, bad credentials, ...) raise one `RemoteFileError` naming the
URL.
"""
from __future__ import annotations

import asyncio
import errno
import threading
import time
import warnings
from collections import Counter
from typing import Callable, Optional, Tuple

from .options import RemoteOptions

_MAX_BACKOFF_S = 5.0
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_TRANSIENT_ERRNOS = {errno.EIO, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EAGAIN,
                     errno.EPIPE, errno.ECONNREFUSED}
# Version tags fsspec file systems report, strongest first: content tags and generations, then times
# (HTTP, S3, Azure, local/SFTP, in-memory).
_VERSION_KEYS = ('ETag', 'etag', 'md5Hash', 'generation', 'version_id', 'Last-Modified', 'LastModified',
                 'last_modified', 'mtime', 'created')
_unversioned_warned = set()  # URLs already warned about (once per process)
_warn_lock = threading.Lock()


class RemoteFileError(OSError):
    """A remote `.beton` file cannot be read (permanent error, or transient ones beyond the retries)."""

    def __init__(self, url: str, problem: str):
        super().__init__(errno.EIO, f'{url}: {problem}')
        self.url = url
        self.problem = problem

    def __str__(self) -> str:
        return f'{self.url}: {self.problem}'


class RemoteFileChangedError(RemoteFileError):
    """The object changed (size or ETag) after it was opened: its pages would not match its metadata."""


class _Transient(Exception):
    """Internal: a failure worth retrying (short read, 5xx, ...)."""


def _missing_extra(url: str, exc: Exception) -> ImportError:
    return ImportError(f"{url}: reading .beton files by URL needs the 'remote' extra ({exc}): "
                       "pip install 'ffcv-fast[remote]'  (fsspec, aiohttp for http(s)://, s3fs for s3://)")


def _status(exc: BaseException) -> Optional[int]:
    """HTTP status of an aiohttp or botocore error, if any."""
    status = getattr(exc, 'status', None)
    if isinstance(status, int):
        return status
    response = getattr(exc, 'response', None)
    if isinstance(response, dict):
        return response.get('ResponseMetadata', {}).get('HTTPStatusCode')
    return None


def _describe(exc: BaseException) -> str:
    """'Type: message' of an error, of the error that caused it when that says more."""
    cause = exc.__cause__ or exc.__context__
    if cause is not None and type(exc).__name__ in ('FileNotFoundError', 'OSError', 'FSTimeoutError'):
        if type(cause).__name__ not in ('FileNotFoundError', 'OSError', 'CancelledError'):
            return f'{type(cause).__name__}: {cause}'
    text = str(exc)
    return f'{type(exc).__name__}: {text}' if text else type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """Whether a failed request is worth retrying."""
    if isinstance(exc, (_Transient, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    name = type(exc).__name__
    if name in ('FSTimeoutError', 'ClientPayloadError', 'ServerDisconnectedError', 'ClientConnectionError',
                'ClientOSError', 'ServerTimeoutError', 'ClientConnectorError', 'EndpointConnectionError',
                'ReadTimeoutError', 'ConnectTimeoutError', 'ConnectionClosedError', 'ResponseStreamingError',
                'IncompleteReadError', 'ContentLengthError', 'TransferEncodingError'):
        return True
    status = _status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS
    cause = exc.__cause__
    if cause is not None and cause is not exc and is_transient(cause):
        return True
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return False
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def storage_options(url: str, options: RemoteOptions, own_retries: bool = True) -> dict:
    """fsspec keyword arguments for `url`: the user's `storage_options`, plus our timeouts where the file
    system takes them (aiohttp for http(s), botocore for s3), and, with `own_retries`, botocore's retries
    off (the reads retry, and count, on their own)."""
    result = dict(options.storage_options)
    scheme = url.split('://', 1)[0].lower()
    if scheme in ('http', 'https') and 'client_kwargs' not in result:
        import aiohttp
        result['client_kwargs'] = {'timeout': aiohttp.ClientTimeout(total=options.timeout,
                                                                     sock_connect=options.timeout)}
    if scheme in ('s3', 's3a'):
        config = dict(result.get('config_kwargs', {}))
        config.setdefault('connect_timeout', options.timeout)
        config.setdefault('read_timeout', options.timeout)
        if own_retries:
            config.setdefault('retries', {'max_attempts': 1})
        result['config_kwargs'] = config
    return result


_PROGRESS_STEP = 1 << 20  # a part's arrival is announced every this many bytes (see `_fill`)


async def _fill(read, offset: int, view: memoryview, progress: Optional[Callable[[int], None]] = None) -> None:
    """Copy a response body into `view` as its data arrives (``read(n)``: up to n more bytes, b'' at its end);
    `_Transient` if the body ends short. ``progress(done)``: the first `done` bytes are in, called every
    `_PROGRESS_STEP` bytes and at the end."""
    done, size, announced = 0, view.nbytes, 0
    while done < size:
        chunk = await read(size - done)
        if not chunk:
            raise _Transient(f'short read: {done} of {size} bytes at offset {offset}')
        view[done:done + len(chunk)] = chunk
        done += len(chunk)
        if progress is not None and (done - announced >= _PROGRESS_STEP or done == size):
            announced = done
            progress(done)


class RemoteFile:
    """One object (a `.beton` file) read by byte ranges.

    Parameters
    ----------
    url : str
        Any fsspec URL: ``s3://bucket/key``, ``https://host/path``, ``gs://...``.
    options : RemoteOptions or dict, optional

    Attributes
    ----------
    size : int
        Bytes of the object when opened.
    version : str or None
        Its version tag when opened: the ETag, else another tag the file system reports (an HTTP
        server's Last-Modified date, ...); None if there is none (a change of the same size is then
        not detected: a warning says so).
    version_kind : str or None
        What `version` is: ``'ETag'``, ``'Last-Modified'``, ... (the name the file system gives it).
    etag : str or None
        The ETag, if `version` is one.
    stats : collections.Counter
        ``requests`` (ranged reads and size/ETag checks), ``bytes``, ``retries`` and one
        ``retry:<ErrorType>`` count per kind of retried failure.
    """

    def __init__(self, url: str, options=None):
        self.url = url
        self.options = RemoteOptions.coerce(options)
        self.stats: Counter = Counter()
        self._lock = threading.Lock()
        self._slots: Optional[asyncio.Semaphore] = None  # requests in flight (see `_in_parts`)
        try:
            import fsspec
            self.fs, self.path = fsspec.core.url_to_fs(url, **storage_options(url, self.options))
        except ImportError as exc:
            raise _missing_extra(url, exc) from None
        except ValueError as exc:  # unknown protocol
            raise RemoteFileError(url, f'not a URL fsspec can open: {exc}') from None
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        info = self._retrying('open', self._info)
        self.stats['requests'] += 1
        if info.get('type', 'file') == 'directory':
            raise RemoteFileError(url, 'is a directory (a prefix), not a .beton file')
        self.size = int(info['size']) if info.get('size') is not None else None
        if self.size is None:
            raise RemoteFileError(url, 'the server does not report the size of the object')
        self.version_kind, self.version = self._version_tag(info)
        self.etag = self.version if self.version_kind in ('ETag', 'etag') else None
        if self.version is None:
            self._warn_unversioned()

    @staticmethod
    def _version_tag(info: dict) -> Tuple[Optional[str], Optional[str]]:
        """(kind, value) of the first version tag in a file system's `info` of the object, or (None, None)."""
        for key in _VERSION_KEYS:
            if info.get(key) is not None:
                return key, str(info[key])
        return None, None

    def _warn_unversioned(self) -> None:
        with _warn_lock:
            if self.url in _unversioned_warned:
                return
            _unversioned_warned.add(self.url)
        warnings.warn(f'{self.url}: the server reports neither an ETag nor a Last-Modified date for this object, so '
                      'a change of the object that keeps its size cannot be detected during a run (nor told apart '
                      'in the page cache); a change of size still stops the run with RemoteFileChangedError',
                      RuntimeWarning, stacklevel=3)

    # -- requests --

    def _run(self, coroutine_function, *args):
        """Run an async file system call on fsspec's loop with our timeout."""
        from fsspec.asyn import sync
        return sync(self.fs.loop, coroutine_function, *args, timeout=self.options.timeout)

    def _info(self) -> dict:
        if self.protocol in ('http', 'https'):
            return self._run(self._http_info)
        if getattr(self.fs, 'async_impl', False):
            return self._run(self.fs._info, self.path)
        return self.fs.info(self.path)

    def _retrying(self, what: str, call: Callable, *args):
        delay = self.options.backoff
        for attempt in range(self.options.retries + 1):
            try:
                return call(*args)
            except RemoteFileError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise self._permanent(what, exc) from exc
                with self._lock:
                    self.stats['retries'] += 1
                    self.stats[f'retry:{type(exc).__name__}'] += 1
                if attempt == self.options.retries:
                    raise RemoteFileError(self.url, f'{what} failed {attempt + 1} times (retried with back-off), '
                                          f'last with {_describe(exc)}') from exc
                time.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)

    def _permanent(self, what: str, exc: BaseException) -> RemoteFileError:
        status = _status(exc)
        if isinstance(exc, FileNotFoundError) or status == 404:
            return RemoteFileError(self.url, f'{what}: not found (404)')
        if isinstance(exc, PermissionError) or status in (401, 403):
            return RemoteFileError(self.url, f'{what}: access denied ({exc}); check the credentials '
                                   '(storage_options) and the permissions of the object')
        if status in (412, 416):  # If-Match failed / the range is past the object's (new) end
            return RemoteFileChangedError(self.url, f'{what}: the object changed after it was opened (HTTP '
                                          f'{status}: its {self.version_kind or "version"} is no longer '
                                          f'{self.version}, or its size no longer {self.size}); create a new '
                                          'Loader to read the new version')
        detail = f'HTTP {status}: {exc}' if status is not None else _describe(exc)
        return RemoteFileError(self.url, f'{what} failed ({detail})')

    def read(self, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset + size)`` of the object (retried; `RemoteFileError` on failure)."""
        buffer = bytearray(max(size, 0))
        self.read_into(offset, memoryview(buffer))
        return bytes(buffer)

    def read_into(self, offset: int, destination, on_part: Optional[Callable[[int, int], None]] = None) -> None:
        """Fill `destination` (a writable buffer of n bytes) with bytes ``[offset, offset + n)`` of the object,
        each response written straight into it (retried; `RemoteFileError` on failure). `on_part(start, stop)`,
        if given, is called (on fsspec's event loop thread) as each part ``destination[start:stop]`` is
        complete (and as the first MiBs of a part arrive: ``stop`` grows for the same ``start``), so a reader
        may use those bytes before the rest arrives; after a retry, the parts are fetched and announced again
        (the same bytes: every response is checked to be of the version opened)."""
        view = memoryview(destination).cast('B')
        size = view.nbytes
        if size == 0:
            return
        if offset < 0 or offset + size > self.size:
            raise RemoteFileError(self.url, f'read of bytes [{offset}, {offset + size}) past the end of the '
                                  f'object ({self.size} bytes)')
        what = f'reading bytes [{offset}, {offset + size})'
        self._retrying(what, self._read_once, offset, view, on_part)
        with self._lock:
            self.stats['requests'] += 1
            self.stats['bytes'] += size

    def _read_once(self, offset: int, view: memoryview, on_part=None) -> None:
        if self.protocol in ('http', 'https'):
            self._run(self._in_parts, self._http_range, offset, view, on_part)
            return
        if self.protocol in ('s3', 's3a'):
            self._run(self._in_parts, self._s3_range, offset, view, on_part)
            return
        end = offset + view.nbytes
        if getattr(self.fs, 'async_impl', False):
            data = self._run(self.fs._cat_file, self.path, offset, end)
        else:
            data = self.fs.cat_file(self.path, start=offset, end=end)
        if len(data) != view.nbytes:
            raise _Transient(f'short read: {len(data)} of {view.nbytes} bytes at offset {offset}')
        view[:] = data
        if on_part is not None:
            on_part(0, view.nbytes)

    async def _in_parts(self, fetch, offset: int, view: memoryview, on_part=None) -> None:
        """``fetch(start, part view)`` over `view` (the bytes from `offset` on) as concurrent requests of at
        most `part_size` bytes each, at most `connections` of them in flight for the whole file, first come
        first served (the parts of the pages asked for first go first instead of sharing the bandwidth with
        those of every later page); ``on_part(start, stop)`` as bytes [start, stop) of `view` are in (`start`:
        where a part begins; `stop` grows as it arrives)."""
        if self._slots is None:  # (created on fsspec's event loop, where every request runs)
            self._slots = asyncio.Semaphore(self.options.connections)

        async def one(start: int) -> None:
            progress = None if on_part is None else lambda done: on_part(start, start + done)
            async with self._slots:
                await fetch(offset + start, view[start:start + self.options.part_size], progress)

        tasks = [asyncio.ensure_future(one(start)) for start in range(0, view.nbytes, self.options.part_size)]
        try:
            await asyncio.gather(*tasks)
        finally:  # after a failure or a timeout, no part goes on writing into `view` (a frame reused later)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _http_info(self) -> dict:
        """Size and ETag from a HEAD request (fsspec's own turns every failure into FileNotFoundError)."""
        session = await self.fs.set_session()
        async with session.head(self.fs.encode_url(self.path), allow_redirects=True) as response:
            if response.status == 405:  # HEAD not allowed: let fsspec try a GET
                return await self.fs._info(self.path)
            if response.status >= 400:
                response.raise_for_status()
            size = response.headers.get('Content-Length')
            return {'size': int(size) if size is not None else None, 'ETag': response.headers.get('ETag'),
                    'Last-Modified': response.headers.get('Last-Modified'), 'type': 'file'}

    async def _http_range(self, offset: int, view: memoryview, progress=None) -> None:
        headers = {'Range': f'bytes={offset}-{offset + view.nbytes - 1}'}
        if self.etag is not None and not self.etag.startswith('W/'):  # If-Match compares strong ETags only
            headers['If-Match'] = self.etag
        elif self.version_kind == 'Last-Modified':
            headers['If-Unmodified-Since'] = self.version
        session = await self.fs.set_session()
        async with session.get(self.fs.encode_url(self.path), headers=headers) as response:
            if response.status >= 400:
                response.raise_for_status()
            if response.status != 206:
                raise RemoteFileError(self.url, f'the server ignored the Range request (HTTP {response.status}); '
                                      'it must support range requests')
            tags = {kind: response.headers.get(kind) for kind in ('ETag', 'Last-Modified')}
            self._check_version(tags, response.headers.get('Content-Range'))
            await _fill(response.content.read, offset, view, progress)

    async def _s3_range(self, offset: int, view: memoryview, progress=None) -> None:
        bucket, key, version = self.fs.split_path(self.path)
        kwargs = {'VersionId': version} if version else {}
        response = await self.fs._call_s3('get_object', Bucket=bucket, Key=key,
                                          Range=f'bytes={offset}-{offset + view.nbytes - 1}', **kwargs)
        try:
            self._check_version({'ETag': response.get('ETag')}, response.get('ContentRange'))
            await _fill(response['Body'].read, offset, view, progress)
        finally:
            response['Body'].close()

    def _check_version(self, tags: dict, content_range: Optional[str]) -> None:
        """`RemoteFileChangedError` unless a ranged response is of the version opened: the object's total
        size in `content_range`, and the response's tag of our version's kind (in `tags`, by kind)."""
        total = content_range.rsplit('/', 1)[-1] if content_range else '*'
        if total not in ('*', str(self.size)):
            raise RemoteFileChangedError(self.url, f'the object changed after it was opened: it now has {total} '
                                         f'bytes, it had {self.size}; create a new Loader to read the new version')
        seen = tags.get(self.version_kind)
        if seen is not None and self.version is not None and seen != self.version:
            raise RemoteFileChangedError(self.url, f'the object changed after it was opened: {self.version_kind} '
                                         f'{seen}, it was {self.version}; create a new Loader to read the new '
                                         'version')

    def check_unchanged(self) -> None:
        """`RemoteFileChangedError` if the object's size or version tag differ from when it was opened."""
        info = self._retrying('checking the object', self._info)
        with self._lock:
            self.stats['requests'] += 1
        size, (kind, version) = int(info.get('size', -1)), self._version_tag(info)
        if size != self.size or version != self.version:
            raise RemoteFileChangedError(self.url, f'the object changed after it was opened (size {size}, '
                                         f'{kind or "version"} {version}; it was {self.size}, '
                                         f'{self.version_kind or "version"} {self.version}): create a new Loader '
                                         'to read the new version')

    def __repr__(self) -> str:
        return f'RemoteFile({self.url!r}, {self.size} bytes, {self.version_kind or "version"} {self.version})'
