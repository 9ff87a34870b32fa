"""ffcv: fast data loading for training vision models (FFCV 1.0.2's API and `.beton` format, pip-only)."""
__version__ = '1.1.0.dev0'

from ._numba_cache import install as _install_numba_cache  # noqa: E402

_install_numba_cache()  # before any kernel is defined: cached kernels recompile when any file of ffcv changes

from .loader import Loader, OrderOption  # noqa: E402
from .reader import Reader  # noqa: E402
from .writer import DatasetWriter  # noqa: E402

__all__ = ['Loader', 'OrderOption', 'DatasetWriter', 'Reader', '__version__']
