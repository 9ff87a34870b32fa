"""Input checks shared by the transforms (raised from `declare_state_and_memory`, so at `Loader(...)` time),
and small helpers they share."""
from __future__ import annotations

import numba
import numpy as np


def require_numpy_images(state, op) -> None:
    """Raise unless the input is a NumPy (JIT) batch of (H, W, C) images."""
    if not state.jit_mode:
        raise ValueError(f'{type(op).__name__} works on NumPy arrays but receives a torch tensor; '
                         'move it before ToTensor()')
    if state.shape is None or len(state.shape) != 3:
        raise ValueError(f'{type(op).__name__} expects images of shape (H, W, C), got per-sample shape '
                         f'{state.shape}')


def require_uint8_images(state, op, channels=None) -> None:
    """Raise unless the input is a NumPy batch of uint8 (H, W, C) images, with `channels` channels if given."""
    require_numpy_images(state, op)
    if np.dtype(state.dtype) != np.uint8:
        raise ValueError(f'{type(op).__name__} expects uint8 images, got dtype {np.dtype(state.dtype)}; '
                         'place it before any Convert() or NormalizeImage()')
    if channels is not None and state.shape[2] != channels:
        raise ValueError(f'{type(op).__name__} expects {channels}-channel (RGB) images, got per-sample shape '
                         f'{state.shape}')


def require_numpy_labels(state, op) -> None:
    """Raise unless the input is a NumPy (JIT) batch holding one number per sample (shape () or (1,))."""
    if not state.jit_mode:
        raise ValueError(f'{type(op).__name__} works on NumPy arrays but receives a torch tensor; '
                         'move it before ToTensor()')
    if state.shape is not None and int(np.prod(state.shape)) != 1:
        raise ValueError(f'{type(op).__name__} expects one label per sample (e.g. IntDecoder(), shape (1,)), '
                         f'got per-sample shape {state.shape}')


def fill_values(fill, channels: int, dtype, op) -> np.ndarray:
    """`fill` as one value per channel in the images' dtype (a scalar is repeated), range-checked."""
    values = np.asarray(fill, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, channels)
    if values.size != channels:
        raise ValueError(f'{type(op).__name__}: fill has {values.size} values but the images have {channels} '
                         'channels; pass one value per channel')
    dtype = np.dtype(dtype)
    if dtype.kind in 'ui':
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise ValueError(f'{type(op).__name__}: fill {tuple(values)} is outside the range of {dtype} '
                             f'images [{info.min}, {info.max}]')
    return values.astype(dtype)  # float -> int truncates, as FFCV's fill does (125.3 -> 125)


def writable(images: np.ndarray) -> np.ndarray:
    """`images`, or a contiguous copy when it is read-only (in-place ops must never write into a file
    mapping) or not C-contiguous (so that reshaping it to (B, N) rows gives a view)."""
    if images.flags.writeable and images.flags.c_contiguous:
        return images
    return np.array(images, order='C')


_MASK_LIMIT = 1 << 26  # dataset indices below this are looked up in a boolean mask (at most 64 MiB)


def selection(indices):
    """(mask, rest) describing a set of dataset indices for the compiled kernels' `is_selected`:
    mask[i] is True for selected i < len(mask) (O(1) lookup); `rest` holds the sorted selected
    indices too large for the mask (usually none)."""
    indices = np.unique(np.asarray(indices, np.int64).reshape(-1))
    if indices.size and indices[0] < 0:
        raise ValueError(f'dataset indices must be non-negative, got {int(indices[0])}')
    small = indices[indices < _MASK_LIMIT]
    mask = np.zeros(int(small[-1]) + 1 if small.size else 0, np.bool_)
    mask[small] = True
    return mask, indices[indices >= _MASK_LIMIT]


@numba.njit(nogil=True, cache=True, inline='always')
def is_selected(index, mask, rest):
    """Whether dataset `index` is in the set described by `selection`'s (mask, rest)."""
    if index < mask.shape[0]:
        return mask[index]
    position = np.searchsorted(rest, index)
    return position < rest.shape[0] and rest[position] == index
