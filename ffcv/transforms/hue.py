"""`RandomHue`: shift the hue by a random fraction of a turn with probability `p` (torchvision's adjust_hue
on uint8: value / 255 to float32 HSV, h = (h + factor) mod 1, back to RGB, times 255.999 truncated)."""
from __future__ import annotations

import numba
import numpy as np

from ..pipeline.compiler import run_kernel
from ..pipeline.seeding import uniform
from ._augment_base import InPlaceAugment, check_probability, check_range
from ._checks import writable
from ._image_ops import hue_image


@numba.njit(nogil=True, cache=True)
def draw_hue(seeds, p, magnitude):
    """Per sample: apply (0th uniform < p) and hue factor ~ U[-magnitude, magnitude] (1st uniform)."""
    apply = np.empty(seeds.shape[0], np.bool_)
    factors = np.empty(seeds.shape[0], np.float64)
    for i in range(seeds.shape[0]):
        apply[i] = uniform(seeds[i], 0) < p
        factors[i] = -magnitude + 2.0 * magnitude * uniform(seeds[i], 1)
    return apply, factors


@numba.njit(nogil=True, cache=True)
def hue_kernel(images, apply, factors):
    """In place on (B, H, W, 3) uint8: rotate the hue of images[i] by factors[i] turns where apply[i]."""
    for i in range(images.shape[0]):
        if apply[i]:
            hue_image(images[i], factors[i])
    return images


class RandomHue(InPlaceAugment):
    """With probability `p`, rotate each image's hue by f ~ U[-magnitude, magnitude] turns (torchvision's
    ColorJitter(hue=magnitude) alone).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, modified in place.

    Parameters
    ----------
    magnitude : float
        Largest shift, in [0, 0.5] turns of the colour wheel (0.5: any hue).
    p : float
        Probability per image (default 0.5).
    """

    def __init__(self, magnitude: float, p: float = 0.5):
        super().__init__()
        self.magnitude = check_range('RandomHue', 'magnitude', magnitude, 0.0, 0.5)
        self.p = check_probability('RandomHue', p)

    def generate_code(self):
        p, magnitude = self.p, self.magnitude

        def random_hue(images, destination, seeds):
            images = writable(images)
            apply, factors = run_kernel(draw_hue, seeds, p, magnitude)
            return run_kernel(hue_kernel, images, apply, factors)
        random_hue.python_code = True
        random_hue.with_seeds = True
        return random_hue

    def __repr__(self):
        return f'RandomHue(magnitude={self.magnitude}, p={self.p})'
