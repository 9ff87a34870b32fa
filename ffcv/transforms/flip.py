"""`RandomHorizontalFlip`: mirror each image left-right with probability `flip_prob`."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numba
import numpy as np

from ..pipeline.operation import Operation
from ._augment_base import draw_gates
from ..pipeline.compiler import run_kernel
from ._checks import require_numpy_images, writable

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.allocation_query import AllocationQuery  # noqa: F401
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401


# OpenCV's flip (SIMD, about 3x faster than the compiled loop on 160x160 RGB) pays ~1 us per call, so
# it takes images of at least this many pixels; smaller ones are mirrored by the compiled kernel.
_OPENCV_MIN_PIXELS = 64 * 64
_OPENCV_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32,
                                                  np.float64))


@numba.njit(nogil=True, cache=True)
def flip_rows(rows, flip, channels):
    """Mirror images[i] left-right, in place, where flip[i]; `rows` is the batch (B, H, W, C) seen as
    (B, H, W * C) (reshaped by the caller: a reshape in the kernel would load ``numba.np.arrayobj``).

    Pixels are swapped pairwise along each row (the 3-channel case unrolled): only flipped images are
    touched, and numba's reversed-slice assignment is several times slower on these small rows.
    """
    count, height = rows.shape[0], rows.shape[1]
    width = rows.shape[2] // channels
    for i in range(count):
        if not flip[i]:
            continue
        for h in range(height):
            row = rows[i, h]
            for w in range(width // 2):
                left, right = w * channels, (width - 1 - w) * channels
                if channels == 3:
                    a, b, c = row[left], row[left + 1], row[left + 2]
                    row[left], row[left + 1], row[left + 2] = row[right], row[right + 1], row[right + 2]
                    row[right], row[right + 1], row[right + 2] = a, b, c
                else:
                    for k in range(channels):
                        row[left + k], row[right + k] = row[right + k], row[left + k]


def flip_kernel(images: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Mirror images[i] left-right, in place, where flip[i], with the compiled loop; returns `images`
    ((B, H, W, C))."""
    if not images.flags.c_contiguous:  # the reshape below would copy: flip a contiguous copy, write it back
        images[...] = flip_kernel(np.ascontiguousarray(images), flip)
        return images
    count, height, width, channels = images.shape
    run_kernel(flip_rows, images.reshape(count, height, width * channels), flip, channels)
    return images


def flip_in_place(images: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """`flip_kernel`'s result; large images go to OpenCV's flip (same pixels, faster)."""
    height, width, channels = images.shape[1:]
    if height * width >= _OPENCV_MIN_PIXELS and channels <= 4 and images.dtype in _OPENCV_DTYPES:
        for i in np.flatnonzero(flip).tolist():
            image = images[i]
            cv2.flip(image, 1, image)
        return images
    return flip_kernel(images, flip)


class RandomHorizontalFlip(Operation):
    """Flip each image left-right with probability `flip_prob`.

    Input:  NumPy batch (B, H, W, C), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, flipped in place (FFCV copies every image into a new buffer).
    """

    modifies_input = True  # works in place (a read-only batch is copied first)


    def __init__(self, flip_prob: float = 0.5):
        super().__init__()
        self.flip_prob = flip_prob

    def declare_state_and_memory(self, previous_state):
        require_numpy_images(previous_state, self)
        return replace(previous_state, jit_mode=True), None

    def generate_code(self):
        flip_prob = float(self.flip_prob)

        def flip(images, destination, seeds):
            return flip_in_place(writable(images), draw_gates(seeds, flip_prob))
        flip.python_code = True
        flip.with_seeds = True
        return flip

    def __repr__(self):
        return f'RandomHorizontalFlip(flip_prob={self.flip_prob})'
