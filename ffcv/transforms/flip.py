"""`RandomHorizontalFlip`: mirror each image left-right with probability `flip_prob`."""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.operation import Operation
from ..pipeline.seeding import uniform
from ..pipeline.compiler import run_kernel
from ._checks import require_numpy_images


@numba.njit(nogil=True, cache=True)
def flip_kernel(images, destination, flip):
    """destination[i] = images[i] mirrored along the width where flip[i], else a copy.

    Explicit element loops (with the 3-channel case unrolled): numba's slice assignment is several
    times slower on these small rows.
    """
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    for i in range(images.shape[0]):
        source, out = images[i], destination[i]
        if not flip[i]:
            for h in range(height):
                for w in range(width):
                    for c in range(channels):
                        out[h, w, c] = source[h, w, c]
        elif channels == 3:
            for h in range(height):
                for w in range(width):
                    mirror = width - 1 - w
                    out[h, w, 0] = source[h, mirror, 0]
                    out[h, w, 1] = source[h, mirror, 1]
                    out[h, w, 2] = source[h, mirror, 2]
        else:
            for h in range(height):
                for w in range(width):
                    for c in range(channels):
                        out[h, w, c] = source[h, width - 1 - w, c]
    return destination


@numba.njit(nogil=True, cache=True)
def draw_flips(seeds, flip_prob):
    """One Bernoulli(flip_prob) draw per sample from its seed."""
    flips = np.empty(seeds.shape[0], np.bool_)
    for i in range(seeds.shape[0]):
        flips[i] = uniform(seeds[i], 0) < flip_prob
    return flips


class RandomHorizontalFlip(Operation):
    """Flip each image left-right with probability `flip_prob`.

    Input:  uint8 NumPy batch (B, H, W, C), CPU, JIT stage (place before ToTensor()).
    Output: same shape and dtype, new buffer.
    """

    def __init__(self, flip_prob: float = 0.5):
        super().__init__()
        self.flip_prob = flip_prob

    def declare_state_and_memory(self, previous_state):
        require_numpy_images(previous_state, self)
        return replace(previous_state, jit_mode=True), AllocationQuery(previous_state.shape, previous_state.dtype)

    def generate_code(self):
        flip_prob = float(self.flip_prob)

        def flip(images, destination, seeds):
            return run_kernel(flip_kernel, images, destination, run_kernel(draw_flips, seeds, flip_prob))
        flip.python_code = True
        flip.with_seeds = True
        return flip

    def __repr__(self):
        return f'RandomHorizontalFlip(flip_prob={self.flip_prob})'
