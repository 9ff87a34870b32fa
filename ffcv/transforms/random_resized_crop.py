"""`RandomResizedCrop` on already-decoded images (torchvision's window rule + OpenCV INTER_AREA resize).

Prefer `RandomResizedCropRGBImageDecoder`, which crops while decoding; this op is for images that come
out of another decoder (e.g. an NDArrayField) or after other uint8 augmentations.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..imaging.area_resize import resize_area_into
from ..imaging.crop import random_resized_crop_windows
from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ._checks import require_uint8_images

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401
from .._lazy import lazy_attributes

# FFCV 1.0.2 also exposes `fast_crop` here (loaded on first use: it loads ffcv.libffcv).
__getattr__ = lazy_attributes(__name__, {'fast_crop': 'ffcv.transforms.utils'})


def resized_crop_kernel(images: np.ndarray, windows: np.ndarray, destination: np.ndarray) -> np.ndarray:
    """destination[i] = images[i][top:top + h, left:left + w] resized with INTER_AREA, (top, left, h, w) = windows[i].

    OpenCV's pixels exactly (`resize_area_into`: OpenCV itself when enlarging, the package's area kernel,
    about 2-3x faster than OpenCV's generic loop, when shrinking by a non-integer factor); both release the
    GIL, so batches on different loader threads resize concurrently.
    """
    for image, out, (top, left, height, width) in zip(images, destination, windows.tolist()):
        resize_area_into(image[top:top + height, left:left + width], out)
    return destination


def _pair(value, name):
    low, high = (float(v) for v in value)
    if not 0 < low <= high:
        raise ValueError(f'RandomResizedCrop: {name} must be (low, high) with 0 < low <= high, got {value!r}')
    return low, high


class RandomResizedCrop(Operation):
    """Crop a random window (area fraction in `scale`, aspect ratio in `ratio`, torchvision's rule with
    10 attempts and a centred fallback) and resize it to `size` x `size` with OpenCV INTER_AREA.

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: uint8 (B, size, size, 3), new buffer.

    Parameters
    ----------
    scale : (float, float)
        Range of the crop's area as a fraction of the image's (torchvision: (0.08, 1.0)).
    ratio : (float, float)
        Range of the crop's width / height, sampled log-uniformly (torchvision: (3/4, 4/3)).
    size : int or (int, int)
        Output side (or (height, width)).
    """

    def __init__(self, scale, ratio, size):
        super().__init__()
        self.scale = _pair(scale, 'scale')
        self.ratio = _pair(ratio, 'ratio')
        self.size = size
        height, width = (size, size) if np.ndim(size) == 0 else size
        if int(height) < 1 or int(width) < 1:
            raise ValueError(f'RandomResizedCrop: size must be positive, got {size!r}')
        self.output_shape = (int(height), int(width))

    def declare_state_and_memory(self, previous_state):
        require_uint8_images(previous_state, self, channels=3)
        shape = (*self.output_shape, 3)
        return replace(previous_state, jit_mode=True, shape=shape), AllocationQuery(shape, np.dtype('uint8'))

    def generate_code(self):
        scale_low, scale_high = self.scale
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])

        def random_resized_crop(images, destination, seeds):
            count, height, width = images.shape[:3]
            heights = np.full(count, height, np.int64)
            widths = np.full(count, width, np.int64)
            windows = run_kernel(random_resized_crop_windows, heights, widths, seeds, scale_low, scale_high,
                                 log_low, log_high, np.empty((count, 4), np.int64))
            return resized_crop_kernel(images, windows, destination)
        random_resized_crop.python_code = True
        random_resized_crop.with_seeds = True
        return random_resized_crop

    def __repr__(self):
        return f'RandomResizedCrop(scale={self.scale}, ratio={self.ratio}, size={self.size})'
