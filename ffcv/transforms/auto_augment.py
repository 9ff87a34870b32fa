"""`RandAugment` and `TrivialAugmentWide` on uint8 NumPy batches: torchvision's op list, magnitude tables and
arithmetic, with every choice (op, magnitude bin, sign) drawn from the sample's seed.

Ops, in torchvision's order (their index in `OP_NAMES` is what the draws return): Identity, ShearX, ShearY,
TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness, Posterize, Solarize, AutoContrast,
Equalize. Geometric ops sample the nearest pixel and fill the uncovered area with `fill`.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numba
import numpy as np
import torch

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ..pipeline.seeding import uniform
from ._checks import fill_values, require_uint8_images, writable
from ._image_ops import (affine_nearest, autocontrast_image, brightness_image, contrast_image, equalize_image,
                         inverse_affine_matrix, posterize_image, saturation_image, sharpness_image, solarize_image,
                         translate_image)

OP_NAMES = ('Identity', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate', 'Brightness', 'Color',
            'Contrast', 'Sharpness', 'Posterize', 'Solarize', 'AutoContrast', 'Equalize')
SIGNED = np.array([False, True, True, True, True, True, True, True, True, True, False, False, False, False])
_OPS_PER_DRAW = 3  # uniforms per applied op: which op, which magnitude bin, which sign


def magnitude_table(kind: str, bins: int, height: int, width: int) -> np.ndarray:
    """(len(OP_NAMES), bins) float64 magnitudes, torchvision's tables ('rand': RandAugment's for an image of
    height x width; 'wide': TrivialAugmentWide's), computed in float32 with torch as torchvision does."""
    def line(end):
        return torch.linspace(0.0, end, bins).double().numpy()
    wide = kind == 'wide'
    zero = np.zeros(bins)
    posterize = 8 - (torch.arange(bins) / ((bins - 1) / (6 if wide else 4))).round().int()
    rows = [zero, line(0.99 if wide else 0.3), line(0.99 if wide else 0.3),
            line(32.0 if wide else 150.0 / 331.0 * width), line(32.0 if wide else 150.0 / 331.0 * height),
            line(135.0 if wide else 30.0)] + [line(0.99 if wide else 0.9)] * 4 + [
            posterize.double().numpy(), torch.linspace(255.0, 0.0, bins).double().numpy(),
            zero, zero]
    return np.ascontiguousarray(np.stack(rows))


@numba.njit(nogil=True, cache=True)
def draw_augment(seeds, num_ops, table, signed, fixed_bin):
    """Per sample and applied op j: op index (uniform 3j), magnitude bin (fixed_bin, or uniform 3j+1 when
    fixed_bin < 0) and sign (uniform 3j+2 < 0.5: negative, signed ops only). Returns (ops, magnitudes)."""
    count, kinds, bins = seeds.shape[0], table.shape[0], table.shape[1]
    ops = np.empty((count, num_ops), np.int64)
    magnitudes = np.empty((count, num_ops), np.float64)
    for i in range(count):
        for j in range(num_ops):
            op = min(np.int64(uniform(seeds[i], 3 * j) * kinds), kinds - 1)
            b = fixed_bin if fixed_bin >= 0 else min(np.int64(uniform(seeds[i], 3 * j + 1) * bins), bins - 1)
            magnitude = table[op, b]
            if signed[op] and uniform(seeds[i], 3 * j + 2) < 0.5:
                magnitude = -magnitude
            ops[i, j], magnitudes[i, j] = op, magnitude
    return ops, magnitudes


@numba.njit(nogil=True, cache=True)
def apply_augment(image, out, op, magnitude, fill):
    """Apply op `op` (index in OP_NAMES) with `magnitude` to `image`. Point ops work in place and return
    False; geometric ops and Sharpness write `out` and return True."""
    height, width = image.shape[0], image.shape[1]
    if op == 0:
        return False
    if op <= 5:
        if op == 1:  # shear about the top-left corner, angle atan(magnitude)
            matrix = inverse_affine_matrix(-0.5 * width, -0.5 * height, 0.0, 0.0, 0.0,
                                           math.degrees(math.atan(magnitude)), 0.0)
        elif op == 2:
            matrix = inverse_affine_matrix(-0.5 * width, -0.5 * height, 0.0, 0.0, 0.0, 0.0,
                                           math.degrees(math.atan(magnitude)))
        elif op == 3:  # whole pixels, truncated toward zero
            translate_image(image, out, int(magnitude), 0, fill)
            return True
        elif op == 4:
            translate_image(image, out, 0, int(magnitude), fill)
            return True
        else:  # rotate counter-clockwise by `magnitude` degrees about the centre
            matrix = inverse_affine_matrix(0.0, 0.0, -magnitude, 0.0, 0.0, 0.0, 0.0)
        affine_nearest(image, out, matrix, fill)
        return True
    if op == 6:
        brightness_image(image, 1.0 + magnitude)
    elif op == 7:
        saturation_image(image, 1.0 + magnitude)
    elif op == 8:
        contrast_image(image, 1.0 + magnitude)
    elif op == 9:
        sharpness_image(image, out, 1.0 + magnitude)
        return True
    elif op == 10:
        posterize_image(image, int(magnitude))
    elif op == 11:
        solarize_image(image, magnitude)
    elif op == 12:
        autocontrast_image(image)
    else:
        equalize_image(image)
    return False


@numba.njit(nogil=True, cache=True)
def augment_kernel(images, out, ops, magnitudes, fill):
    """out[i] = images[i] after ops[i, 0], ops[i, 1], ... (images[i] is used as scratch)."""
    for i in range(images.shape[0]):
        current, other = images[i], out[i]
        in_out = False
        for j in range(ops.shape[1]):
            if apply_augment(current, other, ops[i, j], magnitudes[i, j], fill):
                current, other = other, current
                in_out = not in_out
        if not in_out:
            out[i] = current
    return out


class _Augment(Operation):
    """Shared wrapper: state check, output buffer, tables, seeded draws, the compiled kernel."""

    modifies_input = True  # uses its input as scratch (a read-only batch is copied first)

    def _setup_fill(self, fill):
        self.fill = fill
        fill_values(fill, 3, np.uint8, self)  # checks it now; the array is built per pipeline below

    def declare_state_and_memory(self, previous_state):
        require_uint8_images(previous_state, self, channels=3)
        self._image_size = tuple(int(s) for s in previous_state.shape[:2])
        shape = tuple(previous_state.shape)
        return replace(previous_state, jit_mode=True), AllocationQuery(shape, np.dtype('uint8'))

    def _draw_arguments(self):
        """(num_ops, table, fixed_bin) for draw_augment."""
        raise NotImplementedError

    def generate_code(self):
        num_ops, table, fixed_bin = self._draw_arguments()
        fill, signed = fill_values(self.fill, 3, np.uint8, self), SIGNED

        def augment(images, destination, seeds):
            images = writable(images)
            ops, magnitudes = run_kernel(draw_augment, seeds, num_ops, table, signed, fixed_bin)
            return run_kernel(augment_kernel, images, destination[:images.shape[0]], ops, magnitudes, fill)
        augment.python_code = True
        augment.with_seeds = True
        return augment


def _check_int(op_name, name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f'{op_name}: {name} must be an int in [{low}, {high}], got {name}={value!r}')
    return int(value)


class RandAugment(_Augment):
    """Apply `num_ops` ops, each chosen uniformly from the 14 of `OP_NAMES`, at the fixed `magnitude` bin
    with a random sign (torchvision's RandAugment on uint8 tensors, nearest interpolation).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: uint8 (B, H, W, 3), new buffer (the input is used as scratch).

    Parameters
    ----------
    num_ops : int
        Ops applied in sequence per image (default 2).
    magnitude : int
        Bin of every op's magnitude table, in [0, num_magnitude_bins) (default 9).
    num_magnitude_bins : int
        Bins of the tables (default 31); TranslateX/Y reach 150/331 of the image side.
    fill : int or (int, int, int)
        Value of the pixels geometric ops uncover (default 0).
    """

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31, fill=0):
        super().__init__()
        self.num_magnitude_bins = _check_int('RandAugment', 'num_magnitude_bins', num_magnitude_bins, 2, 10 ** 6)
        self.num_ops = _check_int('RandAugment', 'num_ops', num_ops, 0, 1000)
        self.magnitude = _check_int('RandAugment', 'magnitude', magnitude, 0, self.num_magnitude_bins - 1)
        self._setup_fill(fill)

    def _draw_arguments(self):
        height, width = self._image_size
        return self.num_ops, magnitude_table('rand', self.num_magnitude_bins, height, width), self.magnitude

    def __repr__(self):
        return (f'RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, '
                f'num_magnitude_bins={self.num_magnitude_bins}, fill={self.fill})')


class TrivialAugmentWide(_Augment):
    """Apply one op chosen uniformly from the 14 of `OP_NAMES`, at a uniformly random magnitude bin with a
    random sign (torchvision's TrivialAugmentWide on uint8 tensors, nearest interpolation).

    Input:  uint8 NumPy batch (B, H, W, 3), CPU, JIT stage (place before ToTensor()).
    Output: uint8 (B, H, W, 3), new buffer (the input is used as scratch).

    Parameters
    ----------
    num_magnitude_bins : int
        Bins of the 'wide' tables (default 31).
    fill : int or (int, int, int)
        Value of the pixels geometric ops uncover (default 0).
    """

    def __init__(self, num_magnitude_bins: int = 31, fill=0):
        super().__init__()
        self.num_magnitude_bins = _check_int('TrivialAugmentWide', 'num_magnitude_bins', num_magnitude_bins, 2,
                                             10 ** 6)
        self._setup_fill(fill)

    def _draw_arguments(self):
        return 1, magnitude_table('wide', self.num_magnitude_bins, *self._image_size), -1

    def __repr__(self):
        return f'TrivialAugmentWide(num_magnitude_bins={self.num_magnitude_bins}, fill={self.fill})'
