"""Runnable per-batch pipelines (the loader resolves them from specs: `ffcv.loader._resolve`).

Each output of a loader is a chain: decoder -> transform -> ... Building it (once per loader, and the
memory declaration once per epoch) checks every step against the state produced by the one before, so
a misplaced operation fails when the `Loader` is created, naming the pipeline, the step and the fix.
The decoders of several outputs of one field may form a `DecodeGroup`: one function decodes the batch
for all of them (e.g. several crops of each image from one JPEG decode), each keeping its own seeds.
A decoder whose code declares ``per_sample = True`` may be run in parts of the batch's rows, which other
threads can take (the loader does so at the end of an epoch: `ffcv.loader.epoch_iterator`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from .allocation_query import AllocationQuery, allocate_query
from .compiler import Compiler
from .operation import Operation
from .pipeline_spec import PipelineError, pipeline_error
from .seeding import batch_seeds
from .state import State, initial_state

INITIAL_STATE = initial_state()  # what every decoder receives (State is frozen: one shared value)


@dataclass
class Step:
    """One operation of a pipeline and what the engine derived from it."""
    operation: Operation
    position: int                   # 0 = decoder
    key: int                        # stable per-op key for seeding
    function: Optional[Callable] = None
    with_indices: bool = False
    with_seeds: bool = False
    per_sample: bool = False        # decoder only: its code declares that row i depends on sample i alone
    reads_heap: bool = True         # decoder only: it may read data pages (False: the metadata alone)
    allocation: object = None       # None, AllocationQuery, or tuple of them (this epoch)
    buffers: object = None          # per-slot buffers matching `allocation`
    state: Optional[State] = None   # output state (this epoch)
    input_state: Optional[State] = None  # state of what it receives (this epoch)
    shared: bool = False            # other pipelines branch off its result (PipelineSpec(source=operation))
    copy_input: bool = False        # it modifies its input, which other consumers also read: give it a copy
    input_copies: object = None     # per-slot buffers for that copy
    group: Optional['DecodeGroup'] = None  # decoders of one field decoded together (views)

    def generate(self) -> None:
        """Take the operation's code (compiled when this step runs in NumPy / JIT mode)."""
        code = self.operation.generate_code()
        self.with_indices = bool(getattr(code, 'with_indices', False))
        self.with_seeds = bool(getattr(code, 'with_seeds', False))
        self.per_sample = self.position == 0 and getattr(code, 'per_sample', False) is True
        self.reads_heap = self.position == 0 and getattr(code, 'reads_heap', True) is not False
        if getattr(code, 'seed_key', None) is not None:  # ops sharing draws across pipelines (mixup)
            self.key = int(code.seed_key)
        self.function = Compiler.compile(code) if self.state.jit_mode else code

    def seeds(self, seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
        """This step's per-sample seeds for a batch of sample `indices`."""
        return batch_seeds(np.uint64(seed), np.uint64(epoch), indices, np.uint64(self.key))

    def transform(self, batch, destination, indices: np.ndarray, seeds: Optional[np.ndarray]):
        """Run a transform (position > 0) on `batch`: ``function(batch, destination[, indices][, seeds])``."""
        args = [batch, destination]
        if self.with_indices:
            args.append(indices)
        if self.with_seeds:
            args.append(seeds)
        return self.function(*args)

    def decode(self, indices: np.ndarray, destination, metadata: np.ndarray, storage_state,
               seeds: Optional[np.ndarray]):
        """Run the decoder (position 0): ``function(indices, destination, metadata, storage_state[, seeds])``."""
        if self.with_seeds:
            return self.function(indices, destination, metadata, storage_state, seeds)
        return self.function(indices, destination, metadata, storage_state)

    def decode_in_parts(self, indices: np.ndarray, destination, metadata: np.ndarray, storage_state,
                        seeds: Optional[np.ndarray], run_parts: Callable):
        """`decode` of the batch as ``run_parts(part, count)`` runs it: ``part(start, stop)`` decodes rows
        start:stop (for a `per_sample` decoder the same bytes as decoding them with the whole batch); the
        result is the decoder's result for part 0 taken back to the whole batch's buffer."""
        def part(start: int, stop: int):
            rows = select_rows(destination, start, stop)
            return rows, self.decode(indices[start:stop], rows, metadata, storage_state,
                                     None if seeds is None else seeds[start:stop])
        rows, result = run_parts(part, indices.shape[0])[0]
        givens, wholes = (rows, destination) if isinstance(rows, tuple) else ((rows,), (destination,))
        for given, whole in zip(givens, wholes):
            if _same_rows(result, given):
                return whole
        raise TypeError(f'{self.operation!r} declares per_sample = True but its function returned '
                        f'{type(result).__name__}, not its destination (or one of its buffers)')


@dataclass(eq=False)  # compared and hashed by identity
class DecodeGroup:
    """Decoder steps of several outputs of one field run by one function, once per batch:
    ``function(indices, destinations, metadata, storage_state, seeds)`` fills ``destinations[k]`` (the
    buffer of ``steps[k]``) using ``seeds[k]`` (that step's per-sample seeds, None if it takes none)."""
    field_name: str
    steps: List[Step]
    function: Callable

    @property
    def per_sample(self) -> bool:
        """Whether the function declares ``per_sample = True`` (it may then run in parts of rows)."""
        return getattr(self.function, 'per_sample', False) is True

    @property
    def reads_heap(self) -> bool:
        """Whether the function may read data pages (it does not declare ``reads_heap = False``)."""
        return getattr(self.function, 'reads_heap', True) is not False

    def decode(self, step: Step, slot: int, indices: np.ndarray, metadata: np.ndarray, storage_state, seed: int,
               epoch: int, shared: Dict[int, object], run_parts: Optional[Callable] = None):
        """`step`'s result for this batch; the first member to run decodes the batch for all of them (in
        parts through `run_parts` when given and the function declares ``per_sample = True``)."""
        results = shared.get(id(self))
        if results is None:
            count = indices.shape[0]
            destinations = [select_buffer(member.buffers, slot, count) for member in self.steps]
            seeds = [member.seeds(seed, epoch, indices) if member.with_seeds else None for member in self.steps]

            def part(start: int, stop: int):
                self.function(indices[start:stop], [select_rows(d, start, stop) for d in destinations], metadata,
                              storage_state, [None if s is None else s[start:stop] for s in seeds])
            if run_parts is not None and self.per_sample:
                run_parts(part, count)
            else:
                self.function(indices, destinations, metadata, storage_state, seeds)
            results = shared[id(self)] = destinations
        return results[next(k for k, member in enumerate(self.steps) if member is step)]


@dataclass
class OutputPipeline:
    """One output of the loader: a field, its decoder and transforms; or a branch that starts from the result
    of another pipeline's step (`source`, whose pipeline runs first) and has transforms only."""
    name: str
    field_name: str
    field_index: int
    steps: List[Step] = field(default_factory=list)
    source: Optional[Step] = None
    # Timing hook (`ffcv bench`): called as ``on_step(pipeline, step, started, result, count)`` after each
    # step, `started` being time.perf_counter() before it. None (the default) costs nothing.
    on_step: Optional[Callable] = None

    def describe(self, step: Step) -> str:
        kind = 'decoder' if step.position == 0 else f'step {step.position}'
        return f"pipeline '{self.name}', {kind} ({step.operation!r})"

    @property
    def decoder(self):
        """What decodes this output: its first step, or the `DecodeGroup` that step belongs to; None for a
        branch."""
        if self.source is not None or not self.steps:
            return None
        return self.steps[0].group or self.steps[0]

    @property
    def reads_heap(self) -> bool:
        """Whether the decoder may read the file's data pages (not a branch's, nor one declaring
        ``reads_heap = False``: it reads the metadata alone)."""
        return self.decoder is not None and self.decoder.reads_heap

    @property
    def decodes_in_parts(self) -> bool:
        """Whether the decoder runs through `run_parts` when given one (it declares ``per_sample = True``)."""
        return self.decoder is not None and self.decoder.per_sample

    @property
    def uses_cuda(self) -> bool:
        return any(s.state is not None and torch.device(s.state.device).type == 'cuda' for s in self.steps)

    def declare(self) -> None:
        """Run declare_state_and_memory along the chain (at build time and at each epoch; a branch after the
        pipeline it starts from)."""
        state = INITIAL_STATE if self.source is None else self.source.state
        for step in self.steps:
            try:
                new_state, allocation = step.operation.declare_state_and_memory(state)
            except PipelineError:
                raise
            except Exception as exc:
                raise pipeline_error(f'{self.describe(step)}: {exc}', exc) from exc
            if step.position > 0 and new_state.jit_mode and not state.jit_mode:
                raise PipelineError(f'{self.describe(step)} works on NumPy arrays but receives a torch tensor; '
                                    'move it before ToTensor()')
            if step.operation.declare_shared_memory(state) is not None:
                raise PipelineError(f'{self.describe(step)} declares shared memory, which this loader does '
                                    'not support')
            step.input_state, step.state, step.allocation = state, new_state, allocation
            state = new_state

    def generate(self) -> None:
        """Ask every operation for its code and compile what runs in NumPy (JIT) mode."""
        for step in self.steps:
            try:
                step.generate()
            except Exception as exc:
                raise pipeline_error(f'{self.describe(step)}: generate_code failed: {exc}', exc) from exc

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
        for step in self.steps:
            step.input_copies = None
            if step.copy_input:
                state = step.input_state
                query = AllocationQuery(state.shape, state.dtype, None if state.jit_mode else state.device)
                cache_key = (id(step), 'input', tuple(query.shape), str(query.dtype), str(query.device))
                if cache_key not in previous:
                    previous[cache_key] = allocate_query(query, batch_size, slots, pin)
                step.input_copies = previous[cache_key]

    def run(self, slot: int, indices: np.ndarray, metadata: np.ndarray, storage_state, seed: int, epoch: int,
            shared: Optional[Dict[int, object]] = None, run_parts: Optional[Callable] = None):
        """Produce this output for one batch of sample `indices` in buffer slot `slot`. `shared` holds this
        batch's results of the steps branches start from (filled by their pipelines, read by the branches).
        `run_parts(part, count)`, if given, runs a per-sample decoder's ``part(start, stop)`` over the rows
        and returns the parts' results in order (possibly on several threads; see `Step.decode_in_parts`)."""
        count = indices.shape[0]
        result = None if self.source is None else shared[id(self.source)]
        for step in self.steps:
            destination = select_buffer(step.buffers, slot, count)
            seeds = step.seeds(seed, epoch, indices) if step.with_seeds and step.group is None else None
            if step.copy_input:
                result = copy_into(select_buffer(step.input_copies, slot, count), result)
            started = time.perf_counter() if self.on_step is not None else 0.0
            if step.group is not None:
                result = step.group.decode(step, slot, indices, metadata, storage_state, seed, epoch, shared,
                                           run_parts)
            elif step.position == 0 and run_parts is not None and step.per_sample:
                result = step.decode_in_parts(indices, destination, metadata, storage_state, seeds, run_parts)
            elif step.position == 0:
                result = step.decode(indices, destination, metadata, storage_state, seeds)
            else:
                result = step.transform(result, destination, indices, seeds)
            if self.on_step is not None:
                self.on_step(self, step, started, result, count)
            if step.shared:
                shared[id(step)] = result
        return result


def copy_into(buffer, batch):
    """`batch` copied into `buffer` (a NumPy array or a torch tensor of the same shape); returns `buffer`."""
    if isinstance(buffer, torch.Tensor):
        buffer.copy_(batch)
    else:
        np.copyto(buffer, batch)
    return buffer


def select_rows(destination, start: int, stop: int):
    """Rows start:stop of a decoder's destination (an array or tensor, or a tuple / list of them)."""
    if isinstance(destination, (tuple, list)):
        return type(destination)(b[start:stop] for b in destination)
    return destination[start:stop]


def _same_rows(result, rows) -> bool:
    """Whether `result` is `rows` or a view of exactly the same memory (numba returns a new array object)."""
    if isinstance(result, np.ndarray) and isinstance(rows, np.ndarray):
        return (result.shape, result.strides, result.dtype, result.__array_interface__['data'][0]) == \
            (rows.shape, rows.strides, rows.dtype, rows.__array_interface__['data'][0])
    if isinstance(result, torch.Tensor) and isinstance(rows, torch.Tensor):
        return (result.shape, result.stride(), result.dtype, result.data_ptr()) == \
            (rows.shape, rows.stride(), rows.dtype, rows.data_ptr())
    return result is rows


def select_buffer(buffer, batch_slot: int, count: int):
    """The first `count` rows of slot `batch_slot` of a step's buffers (a tuple of them for several)."""
    if buffer is None:
        return None
    if isinstance(buffer, tuple):
        return tuple(b[batch_slot][:count] for b in buffer)
    return buffer[batch_slot][:count]
