"""`Compiler`: turns operation code into numba functions (or leaves it as Python when disabled)."""
from __future__ import annotations

import os
from typing import Callable, Optional

import numba

from ..utils import available_cpus


def _env_flag(name: str) -> bool:
    return os.environ.get(name, '0').strip().lower() not in ('', '0', 'false', 'no')


class Compiler:
    """Process-wide compilation switch (FFCV-compatible class API).

    ``Compiler.set_enabled(False)`` or ``FFCV_DISABLE_JIT=1`` runs every pipeline as plain Python with
    identical results (slow, but debuggable with pdb and ordinary tracebacks).
    """
    is_enabled: bool = not _env_flag('FFCV_DISABLE_JIT')
    num_threads: int = 1  # numba's thread count as last set by `set_num_threads` (FFCV's attribute)

    @classmethod
    def set_enabled(cls, b: bool) -> None:
        """Compile pipelines (True, the default) or run them as plain Python (False)."""
        cls.is_enabled = bool(b)

    @classmethod
    def set_num_threads(cls, n: int) -> None:
        """numba's thread count, for the user's own ``parallel=True`` / `prange` code (n < 1: every CPU this
        process may use). The loader's threads are `Loader(num_workers=...)`: each runs the compiled steps of
        whole batches, one at a time, so the loader itself never compiles parallel code."""
        wanted = available_cpus() if n < 1 else int(n)
        cls.num_threads = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(cls.num_threads)

    @classmethod
    def compile(cls, code: Callable, signature: Optional[object] = None) -> Callable:
        """numba-compile `code` (nopython, nogil), unless disabled, already compiled or marked Python."""
        if not cls.is_enabled or getattr(code, 'python_code', False) or is_compiled(code):
            return code
        options = dict(nogil=True, fastmath=True, error_model='numpy')
        compiled = numba.njit(signature, **options)(code) if signature else numba.njit(**options)(code)
        for attribute in ('with_indices', 'with_seeds', 'is_parallel'):
            if hasattr(code, attribute):
                setattr(compiled, attribute, getattr(code, attribute))
        return compiled

    @classmethod
    def get_iterator(cls):
        """The loop construct for per-sample loops inside operation code (numba.prange)."""
        return numba.prange


def is_compiled(code: Callable) -> bool:
    return isinstance(code, numba.core.registry.CPUDispatcher)


def run_kernel(kernel, *args):
    """Call a module-level numba kernel, or its Python source when compilation is disabled."""
    if Compiler.is_enabled:
        return kernel(*args)
    return kernel.py_func(*args)
