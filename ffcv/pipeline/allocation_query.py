"""`AllocationQuery`: an operation's request for an output buffer, allocated once per slot."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch


@dataclass(frozen=True)
class AllocationQuery:
    """Ask for a buffer holding one batch of samples of `shape` (per sample) and `dtype`.

    A NumPy dtype gives a host array (pinned when CUDA is available, so copies to the GPU are
    asynchronous); a torch dtype gives a tensor on `device`.
    """
    shape: Tuple[int, ...]
    dtype: Any
    device: Optional[torch.device] = None


Allocation = Union[None, AllocationQuery, Sequence[AllocationQuery]]


def allocate_query(query: AllocationQuery, batch_size: int, slots: int, pin: bool):
    """One buffer per slot: a list of `slots` arrays/tensors of shape (batch_size, *query.shape)."""
    shape = (batch_size, *[int(s) for s in query.shape])
    if isinstance(query.dtype, torch.dtype):
        device = query.device if query.device is not None else torch.device('cpu')
        return [torch.empty(shape, dtype=query.dtype, device=device) for _ in range(slots)]
    dtype = np.dtype(query.dtype)
    if pin:
        # one pinned block per slot; torch owns the memory, numpy views it
        torch_dtype = torch.from_numpy(np.zeros(0, dtype)).dtype
        return [torch.empty(shape, dtype=torch_dtype).pin_memory().numpy() for _ in range(slots)]
    return [np.empty(shape, dtype=dtype) for _ in range(slots)]
