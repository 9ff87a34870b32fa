"""`GaussianBlur`: blur with a Gaussian of random sigma, with probability `p` (torchvision's gaussian_blur on
uint8: float32 kernel exp(-x^2 / (2 sigma^2)) normalised, reflect padding, sums rounded half to even)."""
from __future__ import annotations

import numba
import numpy as np

from ..pipeline.compiler import run_kernel
from ..pipeline.seeding import uniform
from ._augment_base import InPlaceAugment, check_probability
from ._checks import writable
from ._image_ops import blur_image, gaussian_kernel


@numba.njit(nogil=True, cache=True)
def draw_blur(seeds, p, sigma_low, sigma_high):
    """Per sample: apply (0th uniform < p) and sigma ~ U[sigma_low, sigma_high] (1st uniform)."""
    apply = np.empty(seeds.shape[0], np.bool_)
    sigmas = np.empty(seeds.shape[0], np.float64)
    for i in range(seeds.shape[0]):
        apply[i] = uniform(seeds[i], 0) < p
        sigmas[i] = sigma_low + (sigma_high - sigma_low) * uniform(seeds[i], 1)
    return apply, sigmas


@numba.njit(nogil=True, cache=True)
def blur_kernel(images, apply, sigmas, size_x, size_y):
    """In place on (B, H, W, C) uint8: blur images[i] with a size_x x size_y kernel of sigmas[i] where apply[i]."""
    count, height, width, channels = images.shape
    row = np.empty((width + size_x) * channels, np.float32)
    rows = np.empty((height, width * channels), np.float32)
    for i in range(count):
        if apply[i]:
            kernel_x, kernel_y = gaussian_kernel(size_x, sigmas[i]), gaussian_kernel(size_y, sigmas[i])
            blur_image(images[i], kernel_x, kernel_y, row, rows)
    return images


def _kernel_size(value):
    sizes = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(sizes) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 and s % 2 == 1 for s in sizes):
        raise ValueError(f'GaussianBlur: kernel_size must be an odd positive int or a pair of them (width, '
                         f'height), got kernel_size={value!r}')
    return int(sizes[0]), int(sizes[1])


def _sigma(value):
    sigmas = (value, value) if np.ndim(value) == 0 else tuple(value)
    try:
        low, high = (float(s) for s in sigmas)
    except (TypeError, ValueError):
        low, high = float('nan'), float('nan')
    if not 0 < low <= high:
        raise ValueError(f'GaussianBlur: sigma must be a positive number or a pair (min, max) with 0 < min <= max, '
                         f'got sigma={value!r}')
    return low, high


class GaussianBlur(InPlaceAugment):
    """With probability `p`, blur each image with a Gaussian kernel whose sigma is drawn per image
    (torchvision's GaussianBlur, which always applies; FFCV-SSL's name).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, modified in place.

    Parameters
    ----------
    kernel_size : int or (int, int)
        Odd kernel size, or (width, height) sizes; each half-size must be smaller than the image side
        (reflect padding), e.g. 23 for 224-px images as in SimCLR/BYOL.
    sigma : float or (float, float)
        Sigma ~ U[min, max] per image (default (0.1, 2.0)); a single number is a fixed sigma.
    p : float
        Probability per image (default 0.5; 1.0 is torchvision's GaussianBlur).
    """

    def __init__(self, kernel_size, sigma=(0.1, 2.0), p: float = 0.5):
        super().__init__()
        self.kernel_size = _kernel_size(kernel_size)
        self.sigma = _sigma(sigma)
        self.p = check_probability('GaussianBlur', p)

    def declare_state_and_memory(self, previous_state):
        state, allocation = super().declare_state_and_memory(previous_state)
        height, width = state.shape[:2]
        if self.kernel_size[0] // 2 >= width or self.kernel_size[1] // 2 >= height:
            raise ValueError(f'GaussianBlur: kernel_size {self.kernel_size} (width, height) is too large for '
                             f'{height}x{width} images (reflect padding needs half the kernel < the image side)')
        return state, allocation

    def generate_code(self):
        p, (sigma_low, sigma_high), (size_x, size_y) = self.p, self.sigma, self.kernel_size

        def gaussian_blur(images, destination, seeds):
            images = writable(images)
            apply, sigmas = run_kernel(draw_blur, seeds, p, sigma_low, sigma_high)
            return run_kernel(blur_kernel, images, apply, sigmas, size_x, size_y)
        gaussian_blur.python_code = True
        gaussian_blur.with_seeds = True
        return gaussian_blur

    def __repr__(self):
        return f'GaussianBlur(kernel_size={self.kernel_size}, sigma={self.sigma}, p={self.p})'
