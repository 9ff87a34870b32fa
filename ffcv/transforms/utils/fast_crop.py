"""FFCV's `ffcv.transforms.utils.fast_crop`: crop-window helpers callable from numba code.

FFCV 1.0.2's crop decoders use these, and FFCV users import them into their own operations, so they keep
FFCV's path, names and behaviour: windows drawn with ``np.random`` (numba's per-thread generator in
compiled code, NumPy's global one through ``.py_func``), not with the per-sample seeds that this
package's own decoders use (`ffcv.imaging.crop`, whose random rule is the same).
All are numba functions; call them from compiled code or from Python.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ...libffcv import ctypes_resize  # noqa: F401  (FFCV's module holds this name too)
from ...libffcv import resize_crop as _resize_crop_python

_resize_crop = numba.njit(nogil=True)(_resize_crop_python)


@numba.njit(nogil=True)
def resize_crop(source, start_row, end_row, start_col, end_col, destination):
    """Resize the window ``source[start_row:end_row, start_col:end_col]`` into `destination` (INTER_AREA).

    Exists for FFCV code compatibility: the compiled form of `ffcv.libffcv.resize_crop` (see it for the
    arguments; ours checks the window and raises ValueError where FFCV's crashes).
    """
    _resize_crop(source, start_row, end_row, start_col, end_col, destination)


@numba.njit(nogil=True)
def get_random_crop(height, width, scale, ratio):
    """torchvision's RandomResizedCrop window of a `height` x `width` image, drawn with ``np.random``.

    Exists for FFCV code compatibility (FFCV 1.0.2's rule): up to 10 tries of an area fraction uniform in
    `scale` and a log-uniform aspect ratio (width / height) in `ratio`; the first window that fits is
    placed uniformly. If none fits, the centred window with the whole image's width or height and the
    aspect ratio clamped to `ratio`.

    Parameters
    ----------
    height, width : int
        Image size.
    scale : pair of float
        Range of the window's area as a fraction of the image's, e.g. (0.08, 1.0).
    ratio : pair of float
        Range of the window's aspect ratio, e.g. (3 / 4, 4 / 3).

    Returns
    -------
    (int, int, int, int)
        (top, left, window height, window width).
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * np.random.uniform(scale[0], scale[1])
        aspect = math.exp(np.random.uniform(log_low, log_high))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(np.random.uniform(0, height - crop_h + 1))
            left = int(np.random.uniform(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    ratio_low, ratio_high = min(ratio[0], ratio[1]), max(ratio[0], ratio[1])
    image_ratio = float(width) / float(height)
    if image_ratio < ratio_low:
        crop_w = width
        crop_h = int(round(crop_w / ratio_low))
    elif image_ratio > ratio_high:
        crop_h = height
        crop_w = int(round(crop_h * ratio_high))
    else:
        crop_w = width
        crop_h = height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


@numba.njit(nogil=True)
def get_center_crop(height, width, ratio):
    """The centred square window of side ``int(ratio * min(height, width))``.

    Exists for FFCV code compatibility (FFCV 1.0.2's CenterCropRGBImageDecoder rule; this package's
    decoders use `ffcv.imaging.crop.center_crop_windows`, the same rule with a side of at least 1).

    Returns
    -------
    (int, int, int, int)
        (top, left, side, side).
    """
    side = int(ratio * min(height, width))
    return (height - side) // 2, (width - side) // 2, side, side
