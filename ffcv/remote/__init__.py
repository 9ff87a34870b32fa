"""Reading (and writing) `.beton` files in object storage or behind HTTP, through fsspec.

``Loader('s3://bucket/train.beton', ...)``, ``Reader('https://host/train.beton')`` and the ``ffcv`` command
accept any fsspec URL. The pieces:

* `RemoteFile` (`ffcv.remote.source`): ranged reads of one object with timeouts, retries with back-off
  and counters, and a check that the object did not change since it was opened (size and ETag, else
  Last-Modified date).
* `PageStore` (`ffcv.remote.page_store`): whole pages on local disk, shared by the processes of a node,
  written to a temporary name and renamed (a page is never read half-written), least recently used
  pages removed beyond a size limit.
* `RemoteCacheManager` (`ffcv.memory_managers.remote`): the process cache's per-batch page schedule,
  fetching pages ahead of the batches that need them.

The extra ``pip install 'ffcv-fast[remote]'`` installs fsspec, aiohttp (HTTP) and s3fs (S3).
"""
from .options import RemoteOptions, is_url
from .source import RemoteFile, RemoteFileChangedError, RemoteFileError

__all__ = ['RemoteFile', 'RemoteFileChangedError', 'RemoteFileError', 'RemoteOptions', 'is_url']
