"""From pipeline specs to runnable per-batch pipelines, with errors in the user's terms.

Each output of a loader is a chain: decoder -> transform -> ... Building it (once per loader, and the
memory declaration once per epoch) checks every step against the state produced by the one before, so
a misplaced operation fails when the `Loader` is created, naming the pipeline, the step and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .allocation_query import AllocationQuery, allocate_query
from .compiler import Compiler
from .operation import Operation
from .pipeline_spec import PipelineError, PipelineSpec
from .seeding import batch_seeds, op_key
from .state import State, initial_state


@dataclass
class Step:
    operation: Operation
    position: int                   # 0 = decoder
    key: int                        # stable per-op key for seeding
    function: Optional[Callable] = None
    with_indices: bool = False
    with_seeds: bool = False
    allocation: object = None       # None, AllocationQuery, or tuple of them (this epoch)
    buffers: object = None          # per-slot buffers matching `allocation`
    state: Optional[State] = None   # output state (this epoch)


@dataclass
class OutputPipeline:
    """One output of the loader: a field, its decoder and transforms."""
    name: str
    field_name: str
    field_index: int
    steps: List[Step] = field(default_factory=list)

    def describe(self, step: Step) -> str:
        kind = 'decoder' if step.position == 0 else f'step {step.position}'
        return f"pipeline '{self.name}', {kind} ({step.operation!r})"

    @property
    def uses_cuda(self) -> bool:
        return any(s.state is not None and torch.device(s.state.device).type == 'cuda' for s in self.steps)

    def declare(self) -> None:
        """Run declare_state_and_memory along the chain (at build time and at each epoch)."""
        state = initial_state()
        for step in self.steps:
            try:
                new_state, allocation = step.operation.declare_state_and_memory(state)
            except PipelineError:
                raise
            except Exception as exc:
                raise PipelineError(f'{self.describe(step)}: {exc}') from exc
            if step.position > 0 and new_state.jit_mode and not state.jit_mode:
                raise PipelineError(f'{self.describe(step)} works on NumPy arrays but receives a torch tensor; '
                                    'move it before ToTensor()')
            if step.operation.declare_shared_memory(state) is not None:
                raise PipelineError(f'{self.describe(step)} declares shared memory, which this loader does '
                                    'not support')
            step.state, step.allocation = new_state, allocation
            state = new_state

    def generate(self) -> None:
        """Ask every operation for its code and compile what runs in NumPy (JIT) mode."""
        for step in self.steps:
            try:
                code = step.operation.generate_code()
            except Exception as exc:
                raise PipelineError(f'{self.describe(step)}: generate_code failed: {exc}') from exc
            step.with_indices = bool(getattr(code, 'with_indices', False))
            step.with_seeds = bool(getattr(code, 'with_seeds', False))
            if getattr(code, 'seed_key', None) is not None:  # ops sharing draws across pipelines (mixup)
                step.key = int(code.seed_key)
            step.function = Compiler.compile(code) if step.state.jit_mode else code

    def allocate(self, batch_size: int, slots: int, pin: bool, previous: Dict) -> None:
        """Per-slot buffers for this epoch (reusing the previous epoch's when the request is unchanged)."""
        for step in self.steps:
            queries = step.allocation
            if queries is None:
                step.buffers = None
                continue
            single = isinstance(queries, AllocationQuery)
            queries = (queries,) if single else tuple(queries)
            buffers = []
            for index, query in enumerate(queries):
                cache_key = (id(step), index, tuple(query.shape), str(query.dtype), str(query.device))
                if cache_key not in previous:
                    previous[cache_key] = allocate_query(query, batch_size, slots, pin)
                buffers.append(previous[cache_key])
            step.buffers = buffers[0] if single else tuple(buffers)

    def run(self, slot: int, indices: np.ndarray, metadata: np.ndarray, storage_state, seed: int, epoch: int):
        """Produce this output for one batch of sample `indices` in buffer slot `slot`."""
        count = indices.shape[0]
        result = None
        for step in self.steps:
            destination = _slot_view(step.buffers, slot, count)
            seeds = (batch_seeds(np.uint64(seed), np.uint64(epoch), indices, np.uint64(step.key))
                     if step.with_seeds else None)
            if step.position == 0:
                args = [indices, destination, metadata, storage_state]
            else:
                args = [result, destination]
                if step.with_indices:
                    args.append(indices)
            if seeds is not None:
                args.append(seeds)
            result = step.function(*args)
        return result


def _slot_view(buffers, slot: int, count: int):
    if buffers is None:
        return None
    if isinstance(buffers, tuple):
        return tuple(b[slot][:count] for b in buffers)
    return buffers[slot][:count]


def build_pipelines(pipelines: Dict, handlers: Dict, field_names: Sequence[str], metadata: np.ndarray,
                    memory_read: Callable, fname: str) -> List[OutputPipeline]:
    """Resolve the user's `pipelines` mapping into OutputPipelines, in FFCV's output order."""
    specs: Dict[str, PipelineSpec] = {}
    for name in pipelines:
        value = pipelines[name]
        if value is None:
            if name not in handlers:
                raise PipelineError(_unknown_field(name, field_names, fname))
            continue
        if isinstance(value, PipelineSpec):
            spec = value
        elif isinstance(value, (list, tuple)):
            spec = PipelineSpec(name, transforms=list(value))
        else:
            raise PipelineError(f"pipelines['{name}'] must be a list of operations, a PipelineSpec or None; "
                                f'got {type(value).__name__}')
        if spec.source not in handlers:
            raise PipelineError(_unknown_field(spec.source, field_names, fname))
        specs[name] = spec
    for name in field_names:  # fields not mentioned: default decoder + ToTensor
        if name not in pipelines:
            specs[name] = PipelineSpec(name)

    ordered = [n for n in field_names if n in specs] + [n for n in specs if n not in field_names]
    outputs = []
    for name in ordered:
        spec = specs[name]
        handler = handlers[spec.source]
        spec.accept_decoder(handler.get_decoder_class(), name)
        index = list(field_names).index(spec.source)
        output = OutputPipeline(name, spec.source, index)
        for position, op in enumerate([spec.decoder, *spec.transforms]):
            if not isinstance(op, Operation):
                raise PipelineError(f"pipeline '{name}', step {position}: {op!r} is neither an Operation nor a "
                                    'torch.nn.Module')
            op.accept_field(handler)
            op.accept_globals(metadata[f'f{index}'], memory_read)
            output.steps.append(Step(op, position, op_key(name, position)))
        output.declare()
        outputs.append(output)
    return outputs


def _unknown_field(name: str, field_names: Sequence[str], fname: str) -> str:
    import difflib
    close = difflib.get_close_matches(name, field_names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    return f"pipelines names '{name}', which is not a field of {fname} (fields: {', '.join(field_names)}){hint}"


def output_states(outputs: Sequence[OutputPipeline]) -> List[Tuple[str, State]]:
    return [(o.name, o.steps[-1].state) for o in outputs]
