"""`Operation`: the protocol every decoder and transform implements (FFCV-compatible).

An operation is set up once per epoch and then run once per batch:

1. ``declare_state_and_memory(previous_state) -> (next_state, allocation)``: given the `State` of its
   input, return the state of its output and the buffer(s) it needs (`AllocationQuery`, a sequence
   of them, or None for an in-place op). Raise here if the input is not what the op can handle.
2. ``generate_code() -> function``: the function applied to each batch.

   * a decoder's function is ``f(batch_indices, destination, metadata, storage_state)``;
   * a transform's function is ``f(batch, destination)`` and returns its output batch.

   Attributes set on the returned function change how it is called:

   * ``with_indices = True``: receives the batch's sample indices as an extra argument;
   * ``is_parallel = True``: accepted for FFCV compatibility (prange is allowed in the body);
   * ``with_seeds = True`` (ours): receives a uint64 array of per-sample random seeds, a pure
     function of (loader seed, epoch, sample index, op position), after the indices;
   * ``seed_key = <int>`` (ours): replaces the op position in that function, so that operations
     in different pipelines (ImageMixup and LabelMixup) receive the same seeds for the same samples;
   * ``python_code = True`` (ours): the function is plain Python (it may release the GIL inside C
     code) and is never given to numba.
   * ``per_sample = True`` (ours, decoders): row i of the destination buffer(s) depends only on sample
     ``indices[i]`` (and ``seeds[i]``), and the function returns its destination (or, for several
     buffers, one of them). The loader may then decode a batch in parts of rows, on several threads
     (the end of an epoch, when threads would otherwise wait): the bytes are the same. Not set, a
     decoder always receives whole batches.
   * ``reads_heap = False`` (ours, decoders): the function reads the metadata alone, never
     `storage_state` (a field stored in the metadata row); a batch being fetched need not wait for it.

   Functions of operations whose output state has ``jit_mode=True`` are compiled with numba
   (nopython, nogil) unless compilation is disabled (`Compiler.set_enabled(False)` or the
   environment variable ``FFCV_DISABLE_JIT=1``).

Decoders additionally see ``self.field`` (the `Field` of their column), ``self.metadata`` (the column of
the metadata table) and ``self.memory_read`` (a compiled ``read(ptr, storage_state) -> uint8 array``).

An operation whose function writes into its input batch sets the class attribute ``modifies_input = True``
(ours): where that input is also read by another pipeline branching off the same step, the loader hands
the operation a copy.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Optional, Tuple

from .allocation_query import Allocation
from .state import State

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from .allocation_query import AllocationQuery  # noqa: F401


class Operation(ABC):
    """Base class of decoders and transforms (see the module docstring for the protocol)."""

    modifies_input = False  # True: its function writes into its input batch (see the module docstring)

    def __init__(self):
        self.metadata = None
        self.memory_read = None

    def accept_field(self, field) -> None:
        self.field = field

    def accept_globals(self, metadata, memory_read) -> None:
        self.metadata = metadata
        self.memory_read = memory_read

    @abstractmethod
    def generate_code(self) -> Callable:
        """Return the function run on every batch."""

    @abstractmethod
    def declare_state_and_memory(self, previous_state: State) -> Tuple[State, Allocation]:
        """Return the output state and the buffers to allocate."""

    def declare_shared_memory(self, previous_state: State) -> Optional[object]:
        return None

    def generate_code_for_shared_state(self) -> Optional[Callable]:
        return None

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'
