"""Mixup (https://arxiv.org/abs/1710.09412): `ImageMixup`, `LabelMixup`, `MixupToOneHot`.

Sample i of a batch is mixed with sample i - 1 (sample 0 with the last one), as in FFCV, with weight
lambda_i ~ Beta(alpha, alpha). Unlike FFCV, which reseeds NumPy with the last sample index of the
batch, lambda_i comes from the counter-based stream of sample i (a pure function of the loader seed,
the epoch and the sample index); with ``same_lambda=True`` the whole batch uses the lambda of the
stream of its first sample. ImageMixup and LabelMixup declare the same `seed_key`, so the loader
hands them identical seeds and they always agree on lambdas and partners.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import replace

import numba
import numpy as np
import torch

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ..pipeline.seeding import uniform
from ._checks import require_numpy_labels, require_uint8_images

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401

MIXUP_SEED_KEY = zlib.crc32(b'ffcv.transforms.mixup')  # shared by ImageMixup and LabelMixup


@numba.njit(nogil=True, cache=True, inline='always')
def normal_draw(seed, k):
    """(standard normal, next k) from uniforms k, k + 1, ... of stream `seed` (Marsaglia's polar method)."""
    while True:  # accepts with probability pi / 4
        u = 2.0 * uniform(seed, k) - 1.0
        v = 2.0 * uniform(seed, k + 1) - 1.0
        k += 2
        s = u * u + v * v
        if 0.0 < s < 1.0:
            return u * math.sqrt(-2.0 * math.log(s) / s), k


@numba.njit(nogil=True, cache=True, inline='always')
def gamma_draw(seed, k, shape):
    """(x, log_scale, next k) with x * exp(log_scale) ~ Gamma(shape, 1), from stream `seed`.

    Marsaglia-Tsang (with its squeeze test); for shape < 1, Gamma(shape + 1) * U^(1 / shape), whose
    factor is returned as a log so that tiny alphas cannot underflow.
    """
    log_scale = 0.0
    if shape < 1.0:
        log_scale = math.log(1.0 - uniform(seed, k)) / shape
        k += 1
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:  # accepts with probability > 0.95
        x, k = normal_draw(seed, k)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = 1.0 - uniform(seed, k)  # in (0, 1]
        k += 1
        x2 = x * x
        if u < 1.0 - 0.0331 * x2 * x2 or math.log(u) < 0.5 * x2 + d * (1.0 - v + math.log(v)):
            return d * v, log_scale, k


@numba.njit(nogil=True, cache=True)
def beta_draw(seed, alpha):
    """A Beta(alpha, alpha) draw from stream `seed`: G1 / (G1 + G2) for two Gamma(alpha) draws."""
    first, log_first, k = gamma_draw(seed, 0, alpha)
    second, log_second, k = gamma_draw(seed, k, alpha)
    ratio = second / first
    if log_first != log_second:
        ratio *= math.exp(log_second - log_first)
    return 1.0 / (1.0 + ratio)


@numba.njit(nogil=True, cache=True)
def draw_lambdas(seeds, alpha, same_lambda):
    """float32 lambda of each sample (all equal to the first sample's with `same_lambda`)."""
    lambdas = np.empty(seeds.shape[0], np.float32)
    for i in range(seeds.shape[0]):
        if same_lambda and i > 0:
            lambdas[i] = lambdas[0]
        else:
            lambdas[i] = beta_draw(seeds[i], alpha)
    return lambdas


@numba.njit(nogil=True, cache=True)
def mixup_images_kernel(images, destination, lambdas):
    """destination[i] = round(lam_i * images[i] + (1 - lam_i) * images[i - 1]) on (B, N) uint8 rows,
    computed in float32 as b + lam * (a - b) (so equal pixels stay unchanged); row 0 pairs with row B-1."""
    count = images.shape[0]
    half = np.float32(0.5)
    for i in range(count):
        partner = i - 1 if i > 0 else count - 1
        lam = lambdas[i]
        first, second, out = images[i], images[partner], destination[i]
        for k in range(first.shape[0]):
            b = np.float32(second[k])
            out[k] = np.uint8(b + lam * (np.float32(first[k]) - b) + half)
    return destination


@numba.njit(nogil=True, cache=True)
def mixup_labels_kernel(labels, destination, lambdas):
    """destination[i] = (label_i, label_{i-1}, lam_i) as float32, for (B, 1) labels."""
    count = labels.shape[0]
    for i in range(count):
        partner = i - 1 if i > 0 else count - 1
        destination[i, 0] = labels[i, 0]
        destination[i, 1] = labels[partner, 0]
        destination[i, 2] = lambdas[i]
    return destination


def mixup_to_one_hot(mixed: torch.Tensor, destination: torch.Tensor) -> torch.Tensor:
    """destination[i] = lam_i * onehot(label_i) + (1 - lam_i) * onehot(label_{i-1}); rows sum to 1, also
    when both labels are equal. `mixed` (B, 3) rows are (label_i, label_{i-1}, lam_i); not modified."""
    lam = mixed[:, 2:3].to(destination.dtype)
    destination.zero_()
    destination.scatter_(1, mixed[:, 0:1].long(), lam)
    destination.scatter_add_(1, mixed[:, 1:2].long(), 1 - lam)
    return destination


class _Mixup(Operation):
    """The arguments ImageMixup and LabelMixup share (and must share, for their lambdas to agree)."""

    def __init__(self, alpha: float, same_lambda: bool):
        super().__init__()
        if not float(alpha) > 0:
            raise ValueError(f'{type(self).__name__}: alpha must be > 0 (lambda ~ Beta(alpha, alpha)), '
                             f'got {alpha!r}')
        self.alpha = float(alpha)
        self.same_lambda = bool(same_lambda)

    def __repr__(self):
        return f'{type(self).__name__}(alpha={self.alpha}, same_lambda={self.same_lambda})'


class ImageMixup(_Mixup):
    """Mix each image with the previous one of the batch: lam * image_i + (1 - lam) * image_{i-1}, rounded.

    Input:  uint8 NumPy batch (B, H, W, C), CPU, JIT stage (place before ToTensor()).
    Output: same shape and dtype, new buffer.

    Parameters
    ----------
    alpha : float
        lambda ~ Beta(alpha, alpha).
    same_lambda : bool
        One lambda for the whole batch instead of one per image. Use the same arguments in LabelMixup.
    """

    def declare_state_and_memory(self, previous_state):
        require_uint8_images(previous_state, self)
        return previous_state, AllocationQuery(previous_state.shape, previous_state.dtype)

    def generate_code(self):
        alpha, same_lambda = self.alpha, self.same_lambda

        def image_mixup(images, destination, seeds):
            lambdas = run_kernel(draw_lambdas, seeds, alpha, same_lambda)
            flat = images.reshape(images.shape[0], -1)
            run_kernel(mixup_images_kernel, flat, destination.reshape(flat.shape), lambdas)
            return destination
        image_mixup.python_code = True
        image_mixup.with_seeds = True
        image_mixup.seed_key = MIXUP_SEED_KEY
        return image_mixup


class LabelMixup(_Mixup):
    """Labels of the pairs ImageMixup forms, with their weight (create it with ImageMixup's arguments).

    Input:  NumPy batch of one label per sample (B, 1) (e.g. IntDecoder()), JIT stage.
    Output: float32 (B, 3) rows (label_i, label_{i-1}, lam_i), new buffer; MixupToOneHot turns them into targets.
    """

    def declare_state_and_memory(self, previous_state):
        require_numpy_labels(previous_state, self)
        return (replace(previous_state, shape=(3,), dtype=np.dtype('float32')),
                AllocationQuery((3,), np.dtype('float32')))

    def generate_code(self):
        alpha, same_lambda = self.alpha, self.same_lambda

        def label_mixup(labels, destination, seeds):
            lambdas = run_kernel(draw_lambdas, seeds, alpha, same_lambda)
            return run_kernel(mixup_labels_kernel, labels.reshape(labels.shape[0], 1), destination, lambdas)
        label_mixup.python_code = True
        label_mixup.with_seeds = True
        label_mixup.seed_key = MIXUP_SEED_KEY
        return label_mixup


class MixupToOneHot(Operation):
    """(label_i, label_{i-1}, lam) rows -> soft targets of `num_classes` (lam and 1 - lam; 1 if equal).

    Input:  torch batch (B, 3) from LabelMixup() then ToTensor() (any device).
    Output: (B, num_classes) tensor of the input's dtype, new buffer; the input is left unchanged.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f'MixupToOneHot: num_classes must be a positive integer, got {num_classes!r}')
        self.num_classes = int(num_classes)

    def declare_state_and_memory(self, previous_state):
        if previous_state.jit_mode:
            raise ValueError('MixupToOneHot works on torch tensors but receives a NumPy array; insert ToTensor() '
                             'before it')
        if previous_state.shape != (3,):
            raise ValueError(f'MixupToOneHot expects the (3,) rows of LabelMixup(), got per-sample shape '
                             f'{previous_state.shape}; place LabelMixup() and ToTensor() before it')
        if not previous_state.dtype.is_floating_point:
            raise ValueError(f'MixupToOneHot expects float rows from LabelMixup(), got dtype {previous_state.dtype}')
        return (replace(previous_state, shape=(self.num_classes,)),
                AllocationQuery((self.num_classes,), previous_state.dtype, previous_state.device))

    def generate_code(self):
        def to_one_hot(mixed, destination):
            return mixup_to_one_hot(mixed, destination)
        to_one_hot.python_code = True
        return to_one_hot

    def __repr__(self):
        return f'MixupToOneHot(num_classes={self.num_classes})'
