"""Module attributes imported on first use (`lazy_attributes`).

Several modules re-export FFCV 1.0.2 names (``memcpy``, ``fast_crop``, ``PageReader``...) that pull in
`ffcv.libffcv` and its ctypes/OpenCV set-up. Few programs use them, so they are served by the module's
``__getattr__`` (PEP 562) when first asked for, and `import ffcv` does not pay for them.
"""
from __future__ import annotations

import importlib
import sys


def lazy_attributes(module_name: str, sources: dict[str, str]):
    """A module-level ``__getattr__`` serving ``name`` from module ``sources[name]`` (an attribute of
    that module, or its submodule of that name), stored in the module after the first use."""
    def __getattr__(name):
        source = sources.get(name)
        if source is None:
            raise AttributeError(f'module {module_name!r} has no attribute {name!r}')
        module = importlib.import_module(source)
        try:
            value = getattr(module, name)
        except AttributeError:
            value = importlib.import_module(f'{source}.{name}')
        setattr(sys.modules[module_name], name, value)
        return value
    return __getattr__
