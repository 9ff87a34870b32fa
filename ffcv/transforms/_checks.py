"""Input checks shared by the transforms."""
from __future__ import annotations


def require_numpy_images(state, op) -> None:
    """Raise unless the input is a NumPy (JIT) batch of (H, W, C) images."""
    if not state.jit_mode:
        raise ValueError(f'{type(op).__name__} works on NumPy arrays but receives a torch tensor; '
                         'move it before ToTensor()')
    if state.shape is None or len(state.shape) != 3:
        raise ValueError(f'{type(op).__name__} expects images of shape (H, W, C), got per-sample shape '
                         f'{state.shape}')
