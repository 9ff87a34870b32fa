"""`RandomGrayscale`: turn an image gray (3 equal channels) with probability `p` (torchvision's
rgb_to_grayscale on uint8: g = uint8(0.2989 R + 0.587 G + 0.114 B) in float32)."""
from __future__ import annotations

import numba

from ..pipeline.compiler import run_kernel
from ._augment_base import InPlaceAugment, check_probability, draw_gates
from ._checks import writable
from ._image_ops import grayscale_image


@numba.njit(nogil=True, cache=True)
def grayscale_kernel(images, apply):
    """In place on (B, H, W, 3) uint8: images[i] becomes gray where apply[i]."""
    for i in range(images.shape[0]):
        if apply[i]:
            grayscale_image(images[i])
    return images


class RandomGrayscale(InPlaceAugment):
    """With probability `p`, replace each pixel by its gray value (g, g, g) (torchvision's RandomGrayscale).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: the same batch, modified in place.

    Parameters
    ----------
    p : float
        Probability, per image, of turning it gray (default 0.1 as torchvision's).
    """

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = check_probability('RandomGrayscale', p)

    def generate_code(self):
        p = self.p

        def random_grayscale(images, destination, seeds):
            images = writable(images)
            return run_kernel(grayscale_kernel, images, draw_gates(seeds, p))
        random_grayscale.python_code = True
        random_grayscale.with_seeds = True
        return random_grayscale

    def __repr__(self):
        return f'RandomGrayscale(p={self.p})'
