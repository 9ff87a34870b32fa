"""numba's on-disk cache of this package's kernels, keyed on the whole package's source (`install`), and a
faster start for numba's CPU target (`defer_scipy`, `fast_package_loads`, `start_nrt`).

numba stamps a cached function with a hash of its own source file only. Most kernels here call kernels of
other files (inlined: `seeding.uniform`, the crop arithmetic, the colour helpers), so after one of those
files changes, the cached machine code of their callers would still load, and a pipeline would silently
run the old arithmetic until the callers' own files changed too: after a `git pull`, or an edit in a fork.
The locators installed here stamp every cached function of this package with its own file's stamp *and* a
hash of all of the package's Python files, so that any change to any of them recompiles the kernels on
their next use (as a fresh install does). Functions outside the package keep numba's usual locators.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pickle
import sys
import uuid
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
    defer_scipy()
    fast_package_loads()
    return True


def fast_package_loads() -> bool:
    """Load this package's cached kernels without first setting up numba's whole CPU target (idempotent;
    False where this numba lacks what it relies on, or with ``FFCV_NUMBA_FAST_LOAD=0``).

    Before loading any cached function, numba "refreshes" its CPU target: it imports and registers every
    implementation it has (sets, dicts, unicode, linalg, random, datetime...), 0.2-0.4 s of each process's
    first batch here, and needed only to *compile*. Loading machine code needs two things of it: the NRT
    (the runtime that allocates arrays: its symbols and helper functions) and the symbols that
    ``numba.cpython.hashing`` registers. For kernels of this package (served by its locators, see
    `install`), this sets up those two and loads; any other function, and any compilation (which refreshes
    the target itself), goes through numba's usual path.
    """
    if os.environ.get('FFCV_NUMBA_FAST_LOAD', '1').strip().lower() in ('0', 'false', 'no'):
        return False
    try:
        from numba.core import caching
        from numba.core.runtime import nrt
        original = caching.Cache.load_overload
        needed = (caching.Cache._load_overload, caching.Cache._guard_against_spurious_io_errors,
                  nrt.rtsys.initialize)
    except (ImportError, AttributeError):
        return False
    if getattr(original, 'ffcv_fast_load', False) or not all(callable(f) for f in needed):
        return bool(getattr(original, 'ffcv_fast_load', False))

    def load_overload(self, sig, target_context):
        locator = getattr(getattr(self, '_impl', None), 'locator', None)
        if not getattr(locator, 'ffcv_package_locator', False):
            return original(self, sig, target_context)
        start_nrt(target_context, getattr(self, '_cache_path', None))
        import numba.cpython.hashing  # noqa: F401  (registers the hash secret symbols with LLVM)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    load_overload.ffcv_fast_load = True
    load_overload.__wrapped__ = original
    caching.Cache.load_overload = load_overload
    return True


def _nrt_cache_file(folder: str, target_context) -> str:
    """Where the NRT's machine code for this numba, llvmlite, Python and CPU is kept in `folder`."""
    import llvmlite
    import numba
    key = repr((numba.__version__, llvmlite.__version__, sys.version, target_context.codegen().magic_tuple()))
    return os.path.join(folder, f'ffcv-nrt-{hashlib.sha256(key.encode()).hexdigest()[:20]}.nbc')


def start_nrt(target_context, folder) -> None:
    """numba's runtime (NRT), set up as ``numba.core.runtime.nrt.rtsys.initialize`` does, with its compiled
    helper functions loaded from `folder` (the cache folder of the kernel being loaded) when they are there.

    `initialize` compiles the NRT's helpers from LLVM IR in every process: 40-65 ms of the first batch here,
    with every other thread waiting on numba's compiler lock. Their machine code (6 KB) is kept next to the
    package's cached kernels, keyed on numba's, llvmlite's and Python's versions and the CPU (as numba's
    own cache index is), and later processes load it in about 6 ms. Any surprise (a numba without these
    internals, an unreadable or stale file, no `folder`) falls back to `initialize`.
    """
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import nrt
    rtsys = nrt.rtsys
    if getattr(rtsys, '_init', False):
        return
    with global_compiler_lock:
        if rtsys._init:
            return
        try:
            library = _nrt_library(target_context, folder)
        except Exception:  # numba's internals differ, or the file: numba's own set-up
            library = None
        if library is None:
            rtsys.initialize(target_context)
            return
        rtsys._library, rtsys._init = library, True


def _nrt_library(target_context, folder):
    """The NRT's helpers loaded from `folder`, or compiled and saved there (None where `folder` is None)."""
    from llvmlite import binding
    from numba.core import config
    from numba.core.runtime import _nrt_python, nrtdynmod
    if folder is None:
        return None
    # what rtsys.initialize does before compiling: the C helpers' symbols, the statistics switch
    if config.NRT_STATS:
        _nrt_python.memsys_enable_stats()
    for name, address in _nrt_python.c_helpers.items():
        binding.add_symbol(name if name.startswith('_') else 'NRT_' + name, address)
    path = _nrt_cache_file(folder, target_context)
    try:
        with open(path, 'rb') as file:
            library = target_context.codegen().unserialize_library(pickle.load(file))
        if library.get_pointer_to_function('NRT_incref'):
            return library
    except Exception:  # missing, unreadable, stale: compile it again
        pass
    module, library = nrtdynmod.create_nrt_module(target_context)
    library.enable_object_caching()
    library.add_ir_module(module)
    library.finalize()
    _save_atomically(path, library.serialize_using_object_code)
    return library


def _save_atomically(path: str, make) -> None:
    """Pickle ``make()`` to `path` through a temporary file, as numba writes its cache; nothing is written
    where anything fails (a read-only folder: the next process compiles again)."""
    temporary = f'{path}.{uuid.uuid4().hex}.tmp'
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, 'xb') as file:
            pickle.dump(make(), file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except Exception:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


class _ArraymathWithoutScipy(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``numba.np.arraymath`` without importing ``scipy.linalg`` (see `defer_scipy`)."""

    NAME = 'numba.np.arraymath'
    BLAS = 'scipy.linalg.cython_blas'

    def find_spec(self, name, path, target=None):
        if name != self.NAME:
            return None
        sys.meta_path.remove(self)  # one use
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        self.loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        if self.BLAS in sys.modules:  # scipy.linalg is loaded already: nothing to save
            self.loader.exec_module(module)
            return
        sys.modules[self.BLAS] = None  # numba's check `import scipy.linalg.cython_blas` fails at once
        try:
            self.loader.exec_module(module)
        finally:
            if sys.modules.get(self.BLAS, 0) is None:
                del sys.modules[self.BLAS]
        # What the check would have found; numba imports scipy.linalg itself when it compiles BLAS calls.
        module._HAVE_BLAS = importlib.util.find_spec('scipy') is not None


def defer_scipy() -> None:
    """Let numba's CPU target start without importing scipy.linalg (idempotent).

    When numba sets up its CPU target (at the first compilation of a process, or the first cache load of a
    function outside this package: see `fast_package_loads`), its
    ``numba.np.arraymath`` imports ``scipy.linalg.cython_blas`` only to record whether BLAS exists: 0.3-0.6 s
    of every process's first batch here, for kernels that never call BLAS. This imports that module with
    the check failing fast, then sets its flag to what the check would have found (scipy installed or
    not): numba's behaviour is unchanged, and code that does call BLAS (``np.dot`` in a kernel) imports
    scipy.linalg when numba compiles it, as numba always does.
    """
    if _ArraymathWithoutScipy.NAME in sys.modules or any(isinstance(f, _ArraymathWithoutScipy) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _ArraymathWithoutScipy())
