"""`State`: what a pipeline step knows about the data flowing into the next one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np
import torch


@dataclass(frozen=True)
class State:
    """Per-sample description of the data between two pipeline steps.

    Attributes
    ----------
    jit_mode : bool
        True while data is a NumPy array processed by compiled (numba) code, before `ToTensor()`.
    device : torch.device
        Where the data lives (always CPU in jit mode).
    shape : tuple or None
        Shape of one sample (None: unknown, e.g. straight out of the file).
    dtype : numpy or torch dtype
        NumPy dtype in jit mode, torch dtype afterwards.
    """
    jit_mode: bool
    device: torch.device
    shape: Optional[Tuple[int, ...]]
    dtype: Any

    def __post_init__(self):
        if self.jit_mode and torch.device(self.device).type != 'cpu':
            raise AssertionError('a JIT (NumPy) stage can only run on the CPU')
        if self.jit_mode and isinstance(self.dtype, torch.dtype):
            raise AssertionError(f'a JIT (NumPy) stage cannot hold torch dtype {self.dtype}')


def initial_state() -> State:
    """State every decoder starts from: raw bytes on the CPU in jit mode."""
    return State(jit_mode=True, device=torch.device('cpu'), shape=None, dtype=np.dtype('uint8'))
