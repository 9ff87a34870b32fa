"""`RandomColorJitter`: torchvision's ColorJitter (brightness, contrast, saturation and hue in a random order
per image) on uint8 NumPy batches, applied with probability `p` (RandomApply([ColorJitter(...)], p))."""
from __future__ import annotations

import numba
import numpy as np

from ..pipeline.compiler import run_kernel
from ..pipeline.seeding import uniform
from ._augment_base import InPlaceAugment, check_probability
from ._checks import writable
from ._image_ops import brightness_image, contrast_image, hue_image, saturation_image

# Uniform draws per sample: 0 gate, 1-4 factors (brightness, contrast, saturation, hue), 5-7 the order.
_ORDER_DRAW = 5


@numba.njit(nogil=True, cache=True)
def draw_color_jitter(seeds, p, ranges):
    """Per sample: apply (0th uniform < p), factors[i, j] ~ U[ranges[j, 0], ranges[j, 1]] for the four
    adjustments, and a uniformly random order (a permutation of 0..3, Fisher-Yates on uniforms 5-7)."""
    count = seeds.shape[0]
    apply = np.empty(count, np.bool_)
    factors = np.empty((count, 4), np.float64)
    order = np.empty((count, 4), np.int64)
    for i in range(count):
        apply[i] = uniform(seeds[i], 0) < p
        for j in range(4):
            factors[i, j] = ranges[j, 0] + (ranges[j, 1] - ranges[j, 0]) * uniform(seeds[i], 1 + j)
        for j in range(4):
            order[i, j] = j
        for j in range(3, 0, -1):  # swap position j with a uniform position in [0, j]
            other = np.int64(uniform(seeds[i], _ORDER_DRAW + 3 - j) * (j + 1))
            order[i, j], order[i, other] = order[i, other], order[i, j]
    return apply, factors, order


@numba.njit(nogil=True, cache=True)
def color_jitter_kernel(images, apply, factors, order, enabled):
    """In place on (B, H, W, 3) uint8: where apply[i], the enabled adjustments in order[i] with factors[i]
    (0 brightness, 1 contrast, 2 saturation, 3 hue)."""
    for i in range(images.shape[0]):
        if not apply[i]:
            continue
        image = images[i]
        for j in range(4):
            which = order[i, j]
            if not enabled[which]:
                continue
            if which == 0:
                brightness_image(image, factors[i, 0])
            elif which == 1:
                contrast_image(image, factors[i, 1])
            elif which == 2:
                saturation_image(image, factors[i, 2])
            else:
                hue_image(image, factors[i, 3])
    return images


def _factor_range(name, value, center, bound):
    """torchvision's rule: a number v means [center - v, center + v] (clipped at 0 for the factors), a pair
    is (min, max); the adjustment is off when the range is the single identity value."""
    if np.ndim(value) == 0:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float('nan')
        if not number >= 0 or (bound is not None and number > bound):
            limit = f'in [0, {bound}]' if bound is not None else '>= 0'
            raise ValueError(f'RandomColorJitter: {name} must be a number {limit} or a pair (min, max), '
                             f'got {name}={value!r}')
        low, high = center - number, center + number
        if bound is None:
            low = max(low, 0.0)
    else:
        pair = tuple(float(v) for v in value)
        lowest = -bound if bound is not None else 0.0
        highest = bound if bound is not None else float('inf')
        if len(pair) != 2 or not lowest <= pair[0] <= pair[1] <= highest:
            raise ValueError(f'RandomColorJitter: {name} as a pair must be (min, max) with {lowest} <= min <= max'
                             f' <= {highest}, got {name}={value!r}')
        low, high = pair
    return (low, high), not low == high == center


class RandomColorJitter(InPlaceAugment):
    """With probability `p`, jitter brightness, contrast, saturation and hue in a random order per image
    (torchvision's ColorJitter inside RandomApply; FFCV-SSL's name).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, modified in place.

    Parameters
    ----------
    brightness, contrast, saturation : float or (float, float)
        A number v draws the factor from [max(0, 1 - v), 1 + v]; a pair is (min, max), min >= 0. 0 turns
        the adjustment off.
    hue : float or (float, float)
        A number v in [0, 0.5] draws the hue shift from [-v, v] turns; a pair is (min, max) within
        [-0.5, 0.5]. 0 turns it off.
    p : float
        Probability per image that the whole jitter applies (default 0.8, as in SimCLR/BYOL).
    """

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p: float = 0.8):
        super().__init__()
        settings = [_factor_range('brightness', brightness, 1.0, None),
                    _factor_range('contrast', contrast, 1.0, None),
                    _factor_range('saturation', saturation, 1.0, None),
                    _factor_range('hue', hue, 0.0, 0.5)]
        self.ranges = np.array([r for r, _ in settings], np.float64)
        self.enabled = np.array([on for _, on in settings], np.bool_)
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.p = check_probability('RandomColorJitter', p)

    def generate_code(self):
        p, ranges, enabled = self.p, self.ranges, self.enabled

        def random_color_jitter(images, destination, seeds):
            images = writable(images)
            apply, factors, order = run_kernel(draw_color_jitter, seeds, p, ranges)
            return run_kernel(color_jitter_kernel, images, apply, factors, order, enabled)
        random_color_jitter.python_code = True
        random_color_jitter.with_seeds = True
        return random_color_jitter

    def __repr__(self):
        return (f'RandomColorJitter(brightness={self.brightness}, contrast={self.contrast}, '
                f'saturation={self.saturation}, hue={self.hue}, p={self.p})')
