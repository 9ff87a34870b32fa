"""`Squeeze`: drop size-1 dimensions of a batch (e.g. labels (B, 1) -> (B,))."""
from __future__ import annotations

from dataclasses import replace

from ..pipeline.operation import Operation
from ..pipeline.state import State

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.allocation_query import AllocationQuery  # noqa: F401


class Squeeze(Operation):
    """Remove size-1 per-sample dimensions (all of them, or the given batch dims) of a torch batch."""

    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def declare_state_and_memory(self, previous_state: State):
        if previous_state.jit_mode:
            raise ValueError('receives a NumPy array; insert ToTensor() before Squeeze()')
        shape = previous_state.shape
        if shape is not None:
            if self.dims:  # dims index the batch tensor (dim 0 = batch)
                drop = {d - 1 if d > 0 else len(shape) + d for d in self.dims}
                shape = tuple(s for i, s in enumerate(shape) if not (i in drop and s == 1))
            else:
                shape = tuple(s for s in shape if s != 1)
        return replace(previous_state, shape=shape), None

    def generate_code(self):
        dims = self.dims

        def squeeze(batch, destination):
            if dims:
                return batch.squeeze(dims)
            keep = [batch.shape[0]] + [s for s in batch.shape[1:] if s != 1]
            return batch.reshape(keep)  # never squeezes the batch dimension, even for a batch of 1
        squeeze.python_code = True
        return squeeze
