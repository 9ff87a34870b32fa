"""`RemoteOptions`: how a remote `.beton` file is read (connections, timeouts, retries, disk cache)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Mapping, Optional, Union

_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.\-]*://')


def is_url(path) -> bool:
    """True for ``scheme://...`` strings other than ``file://`` (those are read as local paths)."""
    return isinstance(path, str) and bool(_URL.match(path)) and not path.startswith('file://')


@dataclass
class RemoteOptions:
    """Settings for reading a `.beton` file by URL.

    Parameters
    ----------
    cache_dir : str, optional
        Folder of the local page cache, shared by every process of the node that reads the same object
        (8 ranks fetch a page once). None: no disk cache, every epoch fetches its pages again.
    cache_size : int
        Bytes the cache folder may hold; least recently used pages are removed beyond it.
    connections : int
        Range requests in flight at once per loader (parts of pages included), first come first served.
    part_size : int
        A page larger than this is fetched as concurrent range requests of this size (per-connection
        throughput and latency limit one request; several hide it). Default 8 MiB, the default page
        size: one request per page. Each request costs the client CPU (about 3.5 ms per S3 GET through
        s3fs on the benchmark machine, a quarter of that over plain HTTP), and the loader has many pages
        in flight anyway, so smaller parts pay only where few pages are fetched at once.
    prefetch : int
        Pages are fetched this many batches before their first use (more hides more latency, and holds
        more pages in memory).
    timeout : float
        Seconds one request may take before it is retried.
    retries : int
        Attempts after the first for a request that failed transiently (timeout, reset, 5xx, short read),
        with exponential back-off from `backoff` seconds.
    memory_limit : int, optional
        Bytes of pages one loader holds in memory (default: half the machine's RAM). With RANDOM order on a
        file larger than this, pages whose next use is far off are released after a use and loaded again
        (from `cache_dir`, else fetched again) before the next one.
    backoff : float
        First back-off delay, doubled after each failed attempt (capped at 5 s).
    storage_options : mapping
        Keyword arguments of the fsspec file system (``endpoint_url``, ``key``, ``secret``, ...): for S3,
        ``client_kwargs={'endpoint_url': ...}`` or ``endpoint_url`` as s3fs takes them.
    """
    cache_dir: Optional[str] = None
    cache_size: int = 64 << 30
    connections: int = 8
    part_size: int = 8 << 20
    prefetch: int = 8
    timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.2
    memory_limit: Optional[int] = None
    storage_options: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.cache_dir is not None:
            self.cache_dir = os.fspath(self.cache_dir)
        for name in ('cache_size', 'connections', 'part_size', 'prefetch', 'retries'):
            value = getattr(self, name)
            positive = name in ('connections', 'part_size')
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if positive else 0):
                raise ValueError(f'remote option {name} must be a{" positive" if positive else " non-negative"} '
                                 f'integer, got {value!r}')
        limit = self.memory_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f'remote option memory_limit must be a positive number of bytes or None, got {limit!r}')
        for name in ('timeout', 'backoff'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f'remote option {name} must be a positive number of seconds, got {value!r}')
        if not isinstance(self.storage_options, Mapping):
            raise TypeError(f'remote option storage_options must be a mapping, got {self.storage_options!r}')

    @classmethod
    def coerce(cls, value: Union['RemoteOptions', Mapping, None]) -> 'RemoteOptions':
        """A `RemoteOptions` from itself, a dict of its fields, or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"unknown remote option(s) {unknown}; known: {sorted(known)}")
            return cls(**value)
        raise TypeError(f'remote must be a RemoteOptions, a dict or None, got {type(value).__name__}')
