"""Counter-based randomness: every random draw is a pure function of (seed, epoch, sample, op, k).

The loader hands each seeded operation a uint64 `seeds` array with one entry per sample of the batch,
``sample_seed(loader_seed, epoch, sample_index, op_key)``; the op draws its k-th number for that sample
with ``uniform(seed, k)``. No generator state lives in a thread, so the batches are identical whatever the
number of threads, from run to run, and after resuming mid-epoch.
"""
from __future__ import annotations

import zlib

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(nogil=True, cache=True, inline='always')
def mix64(x):
    """SplitMix64 finaliser: a bijective, well-mixed uint64 -> uint64."""
    x = np.uint64(x)
    x = (x ^ (x >> _S30)) * _MUL1
    x = (x ^ (x >> _S27)) * _MUL2
    return x ^ (x >> _S31)


@numba.njit(nogil=True, cache=True, inline='always')
def combine(seed, value):
    """Hash of a (seed, value) pair."""
    return mix64(np.uint64(seed) * _GOLDEN + mix64(np.uint64(value) + _GOLDEN))


@numba.njit(nogil=True, cache=True, inline='always')
def uniform(seed, k):
    """The k-th uniform float64 in [0, 1) of the stream `seed`."""
    return np.float64(combine(seed, k) >> _S11) * _TO_UNIT


@numba.njit(nogil=True, cache=True, inline='always')
def randint(seed, k, low, high):
    """The k-th integer uniform in [low, high) of the stream `seed` (high > low)."""
    return low + np.int64(uniform(seed, k) * (high - low))


@numba.njit(nogil=True, cache=True)
def fill_seeds(loader_seed, epoch, indices, op_key, out):
    """out[i] = the uint64 seed of sample indices[i] of a batch for one operation.

    The kernels of the loader's path allocate nothing: an allocation in numba code makes loading the
    kernel import ``numba.np.arrayobj`` (about 50 ms of a fresh process's first batch).
    """
    base = combine(combine(loader_seed, epoch), op_key)
    for i in range(indices.shape[0]):
        out[i] = combine(base, indices[i])


def batch_seeds(loader_seed, epoch, indices, op_key) -> np.ndarray:
    """uint64 seed of every sample of a batch for one operation."""
    out = np.empty(indices.shape[0], dtype=np.uint64)
    fill_seeds(loader_seed, epoch, indices, op_key, out)
    return out


def op_key(pipeline_name: str, position: int) -> int:
    """Stable key of an operation: its pipeline and its position in it."""
    return zlib.crc32(f'{pipeline_name}/{position}'.encode())
