"""`RandomSolarization`: invert the values at or above `threshold` with probability `p` (torchvision's
solarize on uint8: value >= threshold becomes 255 - value)."""
from __future__ import annotations

import numba

from ..pipeline.compiler import run_kernel
from ._augment_base import InPlaceAugment, check_probability, check_range, draw_gates
from ._checks import writable
from ._image_ops import solarize_image


@numba.njit(nogil=True, cache=True)
def solarize_kernel(images, apply, threshold):
    """In place on (B, H, W, C) uint8: solarize images[i] at `threshold` where apply[i]."""
    for i in range(images.shape[0]):
        if apply[i]:
            solarize_image(images[i], threshold)
    return images


class RandomSolarization(InPlaceAugment):
    """With probability `p`, replace every value v >= `threshold` by 255 - v (torchvision's RandomSolarize;
    FFCV-SSL's name).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, modified in place.

    Parameters
    ----------
    threshold : float
        Values at or above it are inverted, in [0, 255] (default 128).
    p : float
        Probability per image (default 0.5).
    """

    def __init__(self, threshold: float = 128, p: float = 0.5):
        super().__init__()
        self.threshold = check_range('RandomSolarization', 'threshold', threshold, 0, 255)
        self.p = check_probability('RandomSolarization', p)

    def generate_code(self):
        p, threshold = self.p, self.threshold

        def random_solarization(images, destination, seeds):
            images = writable(images)
            return run_kernel(solarize_kernel, images, draw_gates(seeds, p), threshold)
        random_solarization.python_code = True
        random_solarization.with_seeds = True
        return random_solarization

    def __repr__(self):
        return f'RandomSolarization(threshold={self.threshold}, p={self.p})'
