"""Random brightness, contrast and saturation on uint8 images (torchvision's ColorJitter maths, no hue).

Each op applies, with probability `p` per image, a factor f ~ U[max(0, 1 - magnitude), 1 + magnitude]
and computes exactly what ``torchvision.transforms.functional.adjust_*`` computes on a uint8 tensor:
``clamp(f * image + (1 - f) * other, 0, 255)`` in float32, truncated to uint8, where `other` is 0
(brightness), the mean of the grayscale image (contrast) or the grayscale pixel (saturation), and
grayscale = uint8(0.2989 R + 0.587 G + 0.114 B).
"""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np

from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ..pipeline.seeding import uniform
from ._checks import require_uint8_images, writable

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.allocation_query import AllocationQuery  # noqa: F401
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401

_RED, _GREEN, _BLUE = np.float32(0.2989), np.float32(0.587), np.float32(0.114)
_TOP = np.float32(255.0)
_ZERO = np.float32(0.0)


@numba.njit(nogil=True, cache=True)
def draw_jitter(seeds, p, magnitude):
    """Per sample: apply (uniform < p) and factor uniform in [max(0, 1 - magnitude), 1 + magnitude]."""
    low, high = max(0.0, 1.0 - magnitude), 1.0 + magnitude
    apply = np.empty(seeds.shape[0], np.bool_)
    factors = np.empty(seeds.shape[0], np.float64)
    for i in range(seeds.shape[0]):
        apply[i] = uniform(seeds[i], 0) < p
        factors[i] = low + (high - low) * uniform(seeds[i], 1)
    return apply, factors


@numba.njit(nogil=True, cache=True, inline='always')
def _to_uint8(value):
    return np.uint8(min(max(value, _ZERO), _TOP))


@numba.njit(nogil=True, cache=True, inline='always')
def _gray(images, i, k):
    """uint8 grayscale of pixel k of image i (as float32), torchvision's formula and rounding."""
    return np.float32(np.uint8(_RED * np.float32(images[i, k, 0]) + _GREEN * np.float32(images[i, k, 1])
                               + _BLUE * np.float32(images[i, k, 2])))


@numba.njit(nogil=True, cache=True)
def brightness_kernel(images, apply, factors):
    """In place on (B, N) uint8 rows: row = uint8(clamp(f * row, 0, 255)) where apply."""
    for i in range(images.shape[0]):
        if apply[i]:
            row, factor = images[i], np.float32(factors[i])
            for k in range(row.shape[0]):
                row[k] = _to_uint8(factor * np.float32(row[k]))
    return images


@numba.njit(nogil=True, cache=True)
def contrast_kernel(images, apply, factors):
    """In place on (B, P, 3) uint8 pixels: blend with the mean grayscale value where apply."""
    for i in range(images.shape[0]):
        if apply[i]:
            total = 0
            for k in range(images.shape[1]):
                total += np.int64(_gray(images, i, k))
            factor = np.float32(factors[i])
            offset = np.float32(1.0 - factors[i]) * np.float32(total / images.shape[1])
            for k in range(images.shape[1]):
                for c in range(3):
                    images[i, k, c] = _to_uint8(factor * np.float32(images[i, k, c]) + offset)
    return images


@numba.njit(nogil=True, cache=True)
def saturation_kernel(images, apply, factors):
    """In place on (B, P, 3) uint8 pixels: blend each pixel with its grayscale value where apply."""
    for i in range(images.shape[0]):
        if apply[i]:
            factor, rest = np.float32(factors[i]), np.float32(1.0 - factors[i])
            for k in range(images.shape[1]):
                gray = rest * _gray(images, i, k)
                for c in range(3):
                    images[i, k, c] = _to_uint8(factor * np.float32(images[i, k, c]) + gray)
    return images


class _ColorJitter(Operation):
    """Shared wrapper: argument checks, state check, seeded draws, in-place kernel call."""

    modifies_input = True  # works in place (a read-only batch is copied first)

    kernel = None
    channels = None  # required channel count (None: any)

    def __init__(self, magnitude: float, p: float = 0.5):
        super().__init__()
        if not float(magnitude) >= 0 or not 0 <= float(p) <= 1:
            raise ValueError(f'{type(self).__name__}: need magnitude >= 0 and 0 <= p <= 1, got magnitude='
                             f'{magnitude!r}, p={p!r}')
        self.magnitude, self.p = float(magnitude), float(p)

    def declare_state_and_memory(self, previous_state):
        require_uint8_images(previous_state, self, channels=self.channels)
        return replace(previous_state, jit_mode=True), None

    def generate_code(self):
        kernel, p, magnitude = type(self).kernel, self.p, self.magnitude
        per_pixel = self.channels is not None

        def jitter(images, destination, seeds):
            images = writable(images)
            apply, factors = run_kernel(draw_jitter, seeds, p, magnitude)
            rows = images.reshape(images.shape[0], -1, 3) if per_pixel else images.reshape(images.shape[0], -1)
            run_kernel(kernel, rows, apply, factors)
            return images
        jitter.python_code = True
        jitter.with_seeds = True
        return jitter

    def __repr__(self):
        return f'{type(self).__name__}(magnitude={self.magnitude}, p={self.p})'


class RandomBrightness(_ColorJitter):
    """With probability `p`: image = clamp(f * image), f ~ U[max(0, 1 - magnitude), 1 + magnitude].

    Input:  uint8 NumPy batch (B, H, W, C), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, modified in place.
    """
    kernel = staticmethod(brightness_kernel)


class RandomContrast(_ColorJitter):
    """With probability `p`: image = clamp(f * image + (1 - f) * mean(grayscale(image))).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, modified in place.
    """
    kernel = staticmethod(contrast_kernel)
    channels = 3


class RandomSaturation(_ColorJitter):
    """With probability `p`: image = clamp(f * image + (1 - f) * grayscale(image)).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, modified in place.
    """
    kernel = staticmethod(saturation_kernel)
    channels = 3
