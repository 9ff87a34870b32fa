"""FFCV 1.0.2's crop functions of its crop decoders (``decoder.get_crop_generator``).

They draw from NumPy's global generator (our decoders draw seeded windows instead: `crop_windows`). They
are plain Python functions that `Compiler.compile` turns into numba code. Kept apart from
`ffcv.fields.image_decoders` because they load `ffcv.libffcv`, which a plain `import ffcv` should not.
"""
from __future__ import annotations

from ..transforms.utils import fast_crop

get_random_crop = fast_crop.get_random_crop.py_func


def get_center_crop(height, width, _, ratio):
    """FFCV's center-crop window ``(top, left, side, side)``; the third argument is unused (FFCV's signature)."""
    return fast_crop.get_center_crop(height, width, ratio)
