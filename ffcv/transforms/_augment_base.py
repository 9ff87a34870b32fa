"""Shared shape of the per-sample seeded augmentations: argument checks and the in-place wrapper."""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np

from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ..pipeline.seeding import uniform
from ._checks import require_uint8_images


@numba.njit(nogil=True, cache=True)
def fill_gates(seeds, p, apply):
    """Per sample: whether the augmentation applies (its 0th uniform < p), into `apply`."""
    for i in range(seeds.shape[0]):
        apply[i] = uniform(seeds[i], 0) < p


def draw_gates(seeds: np.ndarray, p: float) -> np.ndarray:
    """Per sample: whether the augmentation applies (bool array)."""
    apply = np.empty(seeds.shape[0], np.bool_)
    run_kernel(fill_gates, seeds, p, apply)
    return apply


def check_probability(op_name: str, p) -> float:
    """`p` as a float, or ValueError naming the op and the value unless 0 <= p <= 1."""
    try:
        value = float(p)
    except (TypeError, ValueError):
        value = float('nan')
    if not 0.0 <= value <= 1.0:
        raise ValueError(f'{op_name}: p must be a probability in [0, 1], got p={p!r}')
    return value


def check_range(op_name: str, name: str, value, low: float, high: float) -> float:
    """`value` as a float, or ValueError naming the op, the argument and the value unless in [low, high]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float('nan')
    if not low <= number <= high:
        raise ValueError(f'{op_name}: {name} must be in [{low}, {high}], got {name}={value!r}')
    return number


class InPlaceAugment(Operation):
    """An augmentation that rewrites its uint8 RGB input batch (B, H, W, 3) in place, before ToTensor()."""

    modifies_input = True  # works in place (a read-only batch is copied first)

    def declare_state_and_memory(self, previous_state):
        require_uint8_images(previous_state, self, channels=3)
        return replace(previous_state, jit_mode=True), None
