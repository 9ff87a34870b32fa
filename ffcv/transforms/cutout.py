"""`Cutout`: paint one random square of each image with a fill colour (https://arxiv.org/abs/1708.04552)."""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np

from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ..pipeline.seeding import randint
from ._checks import fill_values, require_numpy_images, writable

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.allocation_query import AllocationQuery  # noqa: F401
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401


@numba.njit(nogil=True, cache=True)
def cutout_kernel(images, corners, crop_size, fill):
    """In place: images[i, y:y + crop_size, x:x + crop_size] = fill, with (y, x) = corners[i]."""
    channels = images.shape[3]
    for i in range(images.shape[0]):
        top, left = corners[i, 0], corners[i, 1]
        for r in range(top, top + crop_size):
            row = images[i, r]
            if channels == 3:  # unrolled: several times faster than the generic loop
                for col in range(left, left + crop_size):
                    row[col, 0] = fill[0]
                    row[col, 1] = fill[1]
                    row[col, 2] = fill[2]
            else:
                for col in range(left, left + crop_size):
                    for c in range(channels):
                        row[col, c] = fill[c]
    return images


@numba.njit(nogil=True, cache=True)
def draw_corners(seeds, height, width, crop_size):
    """Top-left corner of each square, uniform over the positions that keep it inside the image."""
    corners = np.empty((seeds.shape[0], 2), np.int64)
    for i in range(seeds.shape[0]):
        corners[i, 0] = randint(seeds[i], 0, 0, height - crop_size + 1)
        corners[i, 1] = randint(seeds[i], 1, 0, width - crop_size + 1)
    return corners


class Cutout(Operation):
    """Fill one `crop_size` x `crop_size` square per image, placed uniformly at random fully inside it.

    Input:  NumPy batch (B, H, W, C) of any numeric dtype, CPU, JIT stage (place before ToTensor()),
            with crop_size <= min(H, W).
    Output: the same batch, modified in place.

    Parameters
    ----------
    crop_size : int
        Side of the square.
    fill : tuple
        One value per channel ((0, 0, 0) by default; floats are truncated). Useful to make the square
        zero after normalisation (pass the mean).
    """

    modifies_input = True  # works in place (a read-only batch is copied first)


    def __init__(self, crop_size: int, fill=(0, 0, 0)):
        super().__init__()
        if isinstance(crop_size, bool) or int(crop_size) != crop_size or crop_size < 1:
            raise ValueError(f'Cutout: crop_size must be a positive integer, got {crop_size!r}')
        self.crop_size = int(crop_size)
        self.fill = fill

    def declare_state_and_memory(self, previous_state):
        require_numpy_images(previous_state, self)
        height, width, channels = previous_state.shape
        if self.crop_size > min(height, width):
            raise ValueError(f'Cutout: crop_size {self.crop_size} does not fit in {height}x{width} images; '
                             f'use crop_size <= {min(height, width)}')
        self._fill = fill_values(self.fill, channels, previous_state.dtype, self)
        return replace(previous_state, jit_mode=True), None

    def generate_code(self):
        crop_size, fill = self.crop_size, self._fill

        def cutout(images, destination, seeds):
            images = writable(images)
            corners = run_kernel(draw_corners, seeds, images.shape[1], images.shape[2], crop_size)
            return run_kernel(cutout_kernel, images, corners, crop_size, fill)
        cutout.python_code = True
        cutout.with_seeds = True
        return cutout

    def __repr__(self):
        return f'Cutout(crop_size={self.crop_size}, fill={tuple(np.asarray(self.fill).tolist())})'
