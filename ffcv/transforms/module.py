"""`ModuleWrapper`: run any torch.nn.Module (e.g. a torchvision transform) on the batch."""
from __future__ import annotations

import warnings

import torch

from ..pipeline.operation import Operation
from ..pipeline.state import State

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.allocation_query import AllocationQuery  # noqa: F401


class ModuleWrapper(Operation):
    """Apply `module` to the batch tensor. Modules placed directly in a pipeline are wrapped automatically.

    Input: a torch tensor (place after ToTensor()); the module must keep the per-sample shape and dtype.
    """

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def declare_state_and_memory(self, previous_state: State):
        if previous_state.jit_mode:
            raise ValueError(f'{type(self.module).__name__} is a torch module but receives a NumPy array; '
                             'insert ToTensor() before it')
        if torch.device(previous_state.device).type == 'cpu' and any(True for _ in self.module.parameters()):
            warnings.warn(f'{type(self.module).__name__} runs on the CPU inside the loader', ResourceWarning,
                          stacklevel=2)
        return previous_state, None

    def generate_code(self):
        module = self.module

        def apply(batch, destination):
            return module(batch)
        apply.python_code = True
        return apply

    def __repr__(self):
        return f'ModuleWrapper({type(self.module).__name__})'
