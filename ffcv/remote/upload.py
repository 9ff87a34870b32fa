"""Uploading a finished `.beton` file to a URL so that the target appears only when complete.

Object stores (S3, GCS, Azure) make an object visible only once its (multipart) upload completes, so the
file is put at the target key directly. Other file systems get it under a temporary name beside the
target first, then renamed.
"""
from __future__ import annotations

import os
import secrets

from .options import RemoteOptions
from .source import RemoteFileError, _missing_extra, storage_options

_ATOMIC_PUT = {'s3', 's3a', 'gs', 'gcs', 'az', 'abfs', 'abfss'}


def upload_file(local_path: str, url: str, options=None) -> None:
    """Copy `local_path` to `url` (fsspec); the object at `url` appears only when the copy is complete.

    Raises `RemoteFileError` naming the URL when the upload fails (nothing is left at the target).
    """
    options = RemoteOptions.coerce(options)
    try:
        import fsspec
        fs, path = fsspec.core.url_to_fs(url, **storage_options(url, options, own_retries=False))
    except ImportError as exc:
        raise _missing_extra(url, exc) from None
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    size = os.path.getsize(local_path)
    try:
        if protocol in _ATOMIC_PUT:
            fs.put_file(local_path, path)
        else:
            partial = f'{path}.{secrets.token_hex(4)}.partial'
            try:
                fs.put_file(local_path, partial)
                fs.mv(partial, path)
            except BaseException:
                if fs.exists(partial):
                    fs.rm(partial)
                raise
        uploaded = fs.info(path).get('size')
    except RemoteFileError:
        raise
    except Exception as exc:
        raise RemoteFileError(url, f'upload of {local_path} ({size} bytes) failed: {type(exc).__name__}: '
                              f'{exc}') from exc
    if uploaded is not None and int(uploaded) != size:
        raise RemoteFileError(url, f'after the upload the object has {uploaded} bytes, the file {size}')
