"""`RandomTranslate`: shift each image by a random offset of up to `padding` pixels, filling the gap."""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ..pipeline.seeding import randint
from ._checks import fill_values, require_numpy_images

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401


@numba.njit(nogil=True, cache=True)
def translate_kernel(images, destination, offsets, padding, fill):
    """destination[i] = the (H, W) window at offsets[i] = (y, x) of images[i] padded by `padding` with `fill`.

    Equivalently destination[i, r, c] = images[i, r + y - padding, c + x - padding], or `fill` outside.
    Explicit loops over full indices (3 channels unrolled): numba's slice assignment and per-row views
    are several times slower on rows this short.
    """
    count, height, width, channels = images.shape
    for i in range(count):
        dy, dx = offsets[i, 0] - padding, offsets[i, 1] - padding
        for r in range(height):
            source = r + dy
            # output columns [left, right) read source columns shifted by dx; the others are fill
            left, right = max(0, -dx), max(0, min(width, width - dx))
            if source < 0 or source >= height:
                left = right = width
            if channels != 3:
                for col in range(width):
                    for c in range(channels):
                        destination[i, r, col, c] = images[i, source, col + dx, c] if left <= col < right else fill[c]
                continue
            for col in range(left):
                destination[i, r, col, 0] = fill[0]
                destination[i, r, col, 1] = fill[1]
                destination[i, r, col, 2] = fill[2]
            for col in range(left, right):
                destination[i, r, col, 0] = images[i, source, col + dx, 0]
                destination[i, r, col, 1] = images[i, source, col + dx, 1]
                destination[i, r, col, 2] = images[i, source, col + dx, 2]
            for col in range(right, width):
                destination[i, r, col, 0] = fill[0]
                destination[i, r, col, 1] = fill[1]
                destination[i, r, col, 2] = fill[2]
    return destination


@numba.njit(nogil=True, cache=True)
def draw_offsets(seeds, padding):
    """Window corner (y, x) of each sample, each uniform in [0, 2 * padding]."""
    offsets = np.empty((seeds.shape[0], 2), np.int64)
    for i in range(seeds.shape[0]):
        offsets[i, 0] = randint(seeds[i], 0, 0, 2 * padding + 1)
        offsets[i, 1] = randint(seeds[i], 1, 0, 2 * padding + 1)
    return offsets


class RandomTranslate(Operation):
    """Translate each image by up to `padding` pixels in each direction (FFCV semantics).

    The image is padded by `padding` on every side with `fill`, and an (H, W) window whose corner is
    uniform in [0, 2 * padding] x [0, 2 * padding] is kept.

    Input:  NumPy batch (B, H, W, C) of any numeric dtype, CPU, JIT stage (place before ToTensor()).
    Output: same shape and dtype, new buffer.

    Parameters
    ----------
    padding : int
        Largest shift, in pixels, in each direction.
    fill : tuple
        One value per channel for the uncovered area ((0, 0, 0) by default; floats are truncated).
    """

    def __init__(self, padding: int, fill=(0, 0, 0)):
        super().__init__()
        if isinstance(padding, bool) or int(padding) != padding or padding < 0:
            raise ValueError(f'RandomTranslate: padding must be a non-negative integer, got {padding!r}')
        self.padding = int(padding)
        self.fill = fill

    def declare_state_and_memory(self, previous_state):
        require_numpy_images(previous_state, self)
        self._fill = fill_values(self.fill, previous_state.shape[2], previous_state.dtype, self)
        return replace(previous_state, jit_mode=True), AllocationQuery(previous_state.shape, previous_state.dtype)

    def generate_code(self):
        padding, fill = self.padding, self._fill

        def translate(images, destination, seeds):
            offsets = run_kernel(draw_offsets, seeds, padding)
            return run_kernel(translate_kernel, images, destination, offsets, padding, fill)
        translate.python_code = True
        translate.with_seeds = True
        return translate

    def __repr__(self):
        return f'RandomTranslate(padding={self.padding}, fill={tuple(np.asarray(self.fill).tolist())})'
