"""Run one transform on a batch through the engine's own steps (declare, allocate, generate, seed, call)."""
import numpy as np
import torch

from ffcv.pipeline.allocation_query import allocate_query
from ffcv.pipeline.graph import Step
from ffcv.pipeline.seeding import batch_seeds
from ffcv.pipeline.state import State


def state_of(batch) -> State:
    """The State a loader would give a batch like `batch` (NumPy: JIT stage; torch: after ToTensor())."""
    if isinstance(batch, torch.Tensor):
        return State(False, batch.device, tuple(batch.shape[1:]), batch.dtype)
    return State(True, torch.device('cpu'), tuple(batch.shape[1:]), batch.dtype)


def apply_op(op, batch, indices=None, seed=0, epoch=0, key=7):
    """Returns (output, seeds): `op` applied to `batch` (modified in place if the op works in place)."""
    step = Step(op, position=1, key=key)
    step.state, query = op.declare_state_and_memory(state_of(batch))
    count = batch.shape[0]
    destination = None if query is None else allocate_query(query, count, 1, pin=False)[0]
    step.generate()
    indices = np.arange(count, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
    seeds = step.seeds(seed, epoch, indices)
    return step.transform(batch, destination, indices, seeds), seeds


def many_seeds(count: int, seed: int = 0) -> np.ndarray:
    """`count` per-sample seeds, as the loader derives them (for statistical checks of the draws)."""
    return batch_seeds(np.uint64(seed), np.uint64(0), np.arange(count, dtype=np.int64), np.uint64(7))
