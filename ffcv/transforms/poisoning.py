"""`Poison`: blend a fixed mask into the images of chosen dataset samples (data-poisoning experiments)."""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np

from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ._checks import is_selected, require_uint8_images, selection, writable

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.allocation_query import AllocationQuery  # noqa: F401
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401


@numba.njit(nogil=True, cache=True)
def poison_kernel(images, indices, mask, rest, keep, add, low, high):
    """In place, for rows whose sample index is selected (`mask`, `rest` from `selection`):
    images[i, k] = trunc(clip(images[i, k] * keep[k] + add[k], low, high)), in float32, on (B, N) uint8 rows."""
    for i in range(images.shape[0]):
        if not is_selected(indices[i], mask, rest):
            continue
        row = images[i]
        for k in range(row.shape[0]):
            value = np.float32(row[k]) * keep[k] + add[k]
            row[k] = np.uint8(min(max(value, low), high))
    return images


class Poison(Operation):
    """For the samples listed in `indices`: image = clip(image * (1 - alpha) + mask * alpha, *clamp).

    Input:  uint8 NumPy batch (B, H, W, C), CPU, JIT stage (place before ToTensor()); mask (H, W, C).
    Output: the same batch, modified in place (values truncated to integers, as FFCV does).

    Parameters
    ----------
    mask : array (H, W, C)
        The pattern to blend in.
    alpha : array (H, W) or float
        Opacity of the mask at each pixel.
    indices : sequence of int
        Dataset indices of the samples to poison.
    clamp : (float, float)
        Range of the result (default (0, 255)).
    """

    modifies_input = True  # works in place (a read-only batch is copied first)


    def __init__(self, mask: np.ndarray, alpha, indices, clamp=(0, 255)):
        super().__init__()
        self.mask = np.asarray(mask)
        self.alpha = np.asarray(alpha, np.float64)
        self.indices = np.sort(np.asarray(indices, np.int64).reshape(-1))
        self._selection = selection(self.indices)
        self.clamp = (float(clamp[0]), float(clamp[1]))
        if not 0 <= self.clamp[0] <= self.clamp[1] <= 255:
            raise ValueError(f'Poison: clamp must satisfy 0 <= low <= high <= 255 for uint8 images, got {clamp!r}')

    def declare_state_and_memory(self, previous_state):
        require_uint8_images(previous_state, self)
        height, width, channels = previous_state.shape
        if self.mask.shape != (height, width, channels):
            raise ValueError(f'Poison: mask has shape {self.mask.shape} but the images are '
                             f'{(height, width, channels)}; pass a mask of the images\' shape')
        if self.alpha.ndim not in (0, 2) or (self.alpha.ndim == 2 and self.alpha.shape != (height, width)):
            raise ValueError(f'Poison: alpha must be a float or an (H, W) = {(height, width)} array, got shape '
                             f'{self.alpha.shape}')
        return replace(previous_state, jit_mode=True), None

    def generate_code(self):
        height, width, channels = self.mask.shape
        alpha = np.broadcast_to(self.alpha.reshape(self.alpha.shape + (1,) * (3 - self.alpha.ndim)),
                                (height, width, channels))
        keep = (1 - alpha).astype(np.float32).reshape(-1)
        add = (self.mask.astype(np.float64) * alpha).astype(np.float32).reshape(-1)
        (mask, rest), low, high = self._selection, np.float32(self.clamp[0]), np.float32(self.clamp[1])

        def poison(images, destination, indices):
            images = writable(images)
            run_kernel(poison_kernel, images.reshape(images.shape[0], -1), indices, mask, rest, keep, add, low,
                       high)
            return images
        poison.python_code = True
        poison.with_indices = True
        return poison

    def __repr__(self):
        return f'Poison({len(self.indices)} samples, clamp={self.clamp})'
