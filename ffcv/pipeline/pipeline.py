"""`Pipeline`: FFCV 1.0.2's object for one chain of operations, kept for FFCV code compatibility.

FFCV's loader builds a `Pipeline` per output and code written against FFCV (custom loaders, tests of
custom operations) uses its members: the chain's states and buffers (`parse_pipeline`,
`allocate_memory`), the operations' code (`compile_ops`) and their grouping into compiled and Python
blocks (`operation_blocks`). This package's loader runs `ffcv.pipeline.graph.OutputPipeline`; a `Pipeline`
is a thin front on one, so the states are checked and the code compiled exactly as the loader does.
"""
from __future__ import annotations

from itertools import groupby
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .allocation_query import Allocation, AllocationQuery, allocate_query
from .graph import OutputPipeline, Step
from .operation import Operation
from .state import State, initial_state

BAD_COLLATION_MESSAGE: str = "Each pipeline needs one and one only Collate operation"


class Pipeline:
    """A chain of operations (decoder first, then transforms) with FFCV 1.0.2's members, for FFCV code
    compatibility.

    Building it runs ``declare_state_and_memory`` along the chain (raising `PipelineError` naming the
    step at fault) and takes every operation's code.

    Parameters
    ----------
    operations : sequence of Operation
        A decoder and its transforms, in order (a decoder must have had ``accept_field`` /
        ``accept_globals`` called, as the loader does).

    Attributes
    ----------
    original_state : State
        The state the first operation receives (raw bytes, CPU, JIT mode).
    operation_blocks : list of (bool, list of int)
        Consecutive operations grouped by the JIT mode of their output: (jit_mode, operation indices).
    compiled_ops : dict of int to callable
        Each operation's function, numba-compiled when it runs in JIT mode and compilation is enabled
        (FFCV's holds the uncompiled ``generate_code()`` results and compiles them later). They are called
        as the loader calls them (see `ffcv.pipeline.operation`: ``with_indices``, ``with_seeds``).
    compiled_code : None
        Unused, as in FFCV's.
    """

    def __init__(self, operations: Sequence[Operation]):
        self.original_state: State = initial_state()
        self.operations = operations
        steps = [Step(operation, position=index, key=index) for index, operation in enumerate(operations)]
        self._chain = OutputPipeline(name='Pipeline', field_name='', field_index=-1, steps=steps)
        self.operation_blocks, _ = self.parse_pipeline()
        self.compiled_ops = self.compile_ops()
        self.compiled_code = None

    def parse_pipeline(self, batch_size=16) -> Tuple[List[Tuple[bool, List[int]]], Dict[int, Allocation]]:
        """Declare the states along the chain; return (operation blocks, {operation index: allocation}).

        `batch_size` is unused (as in FFCV's): allocations are per sample.
        """
        self._chain.declare()
        blocks = [(jit_mode, [step.position for step in steps])
                  for jit_mode, steps in groupby(self._chain.steps, key=lambda step: step.state.jit_mode)]
        return blocks, {step.position: step.allocation for step in self._chain.steps}

    def compile_ops(self) -> Dict[int, Any]:
        """{operation index: its function}, compiled for the JIT-mode operations (see the class docstring)."""
        self._chain.generate()
        return {step.position: step.function for step in self._chain.steps}

    def allocate_query(self, memory_allocation: AllocationQuery, batch_size: int, batches_ahead: int):
        """Buffers for one allocation query: `batches_ahead` batches of `batch_size` samples.

        Returns
        -------
        np.ndarray or list of torch.Tensor
            NumPy dtype: one (batches_ahead, batch_size, *shape) array (pinned when CUDA is available);
            torch dtype: a list of `batches_ahead` (batch_size, *shape) tensors on the query's device.
        """
        if isinstance(memory_allocation.dtype, torch.dtype):
            return allocate_query(memory_allocation, batch_size, batches_ahead, pin=False)
        block = allocate_query(memory_allocation, batches_ahead * batch_size, 1, pin=torch.cuda.is_available())[0]
        return block.reshape(batches_ahead, batch_size, *memory_allocation.shape)

    def allocate_memory(self, batch_size: int, batches_ahead: int) -> Dict[int, Optional[Any]]:
        """{operation index: its buffers} (None without allocation, a tuple for a sequence of queries)."""
        _, allocations = self.parse_pipeline()
        buffers: Dict[int, Optional[Any]] = {}
        for index, allocation in allocations.items():
            if isinstance(allocation, AllocationQuery):
                buffers[index] = self.allocate_query(allocation, batch_size, batches_ahead)
            elif allocation is not None:
                buffers[index] = tuple(self.allocate_query(query, batch_size, batches_ahead) for query in allocation)
            else:
                buffers[index] = None
        return buffers

