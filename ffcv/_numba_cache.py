"""numba's on-disk cache of this package's kernels, keyed on the whole package's source (`install`).

numba stamps a cached function with a hash of its own source file only. Most kernels here call kernels of
other files (inlined: `seeding.uniform`, the crop arithmetic, the colour helpers), so after one of those
files changes, the cached machine code of their callers would still load, and a pipeline would silently
run the old arithmetic until the callers' own files changed too: after a `git pull`, or an edit in a fork.
The locators installed here stamp every cached function of this package with its own file's stamp *and* a
hash of all of the package's Python files, so that any change to any of them recompiles the kernels on
their next use (as a fresh install does). Functions outside the package keep numba's usual locators.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@lru_cache(maxsize=None)
def package_stamp() -> str:
    """sha256 of the relative paths and contents of every ``.py`` file of the package (once per process)."""
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(PACKAGE_DIR):
        subfolders[:] = sorted(name for name in subfolders if name != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, PACKAGE_DIR).encode() + b'\0')
                with open(path, 'rb') as source:
                    digest.update(source.read())
                digest.update(b'\0')
    return digest.hexdigest()


def in_package(py_file: str) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(py_file), PACKAGE_DIR]) == PACKAGE_DIR
    except ValueError:  # another drive (Windows)
        return False


def _package_locator(base):
    """A subclass of numba's locator `base` that serves only this package's files, with the package stamp."""

    class PackageLocator(base):
        ffcv_package_locator = True

        @classmethod
        def from_function(cls, py_func, py_file):
            if not in_package(py_file):
                return None  # numba's own locators handle it
            return super().from_function(py_func, py_file)

        def get_source_stamp(self):
            return super().get_source_stamp(), package_stamp()

    PackageLocator.__name__ = PackageLocator.__qualname__ = f'Package{base.__name__}'
    return PackageLocator


def _numba_name(module, name):
    """numba's class `name` (numba >= 0.60 dropped the leading underscore of these names)."""
    return getattr(module, name, None) or getattr(module, '_' + name)


def locator_classes() -> list:
    """numba's list of cache locator classes, tried in order for each cached function."""
    from numba.core import caching
    return _numba_name(caching, 'CacheImpl')._locator_classes


def install() -> bool:
    """Put the package locators first in numba's list (idempotent). False where this numba lacks the
    locator classes this relies on; its per-file stamps then apply, as before."""
    try:
        from numba.core import caching
        classes = locator_classes()
        bases = tuple(_numba_name(caching, name) for name in
                      ('UserProvidedCacheLocator', 'InTreeCacheLocator', 'UserWideCacheLocator'))
    except (ImportError, AttributeError):
        return False
    if not any(getattr(cls, 'ffcv_package_locator', False) for cls in classes):
        classes[:0] = [_package_locator(base) for base in bases]  # NUMBA_CACHE_DIR, __pycache__, user-wide
    return True
