"""Run one transform on a batch exactly as the loader does (declare, allocate, generate, seed, call)."""
import numpy as np
import torch

from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.seeding import batch_seeds
from ffcv.pipeline.state import State


def state_of(batch) -> State:
    """The State a loader would give a batch like `batch` (NumPy: JIT stage; torch: after ToTensor())."""
    if isinstance(batch, torch.Tensor):
        return State(False, batch.device, tuple(batch.shape[1:]), batch.dtype)
    return State(True, torch.device('cpu'), tuple(batch.shape[1:]), batch.dtype)


def apply_op(op, batch, indices=None, seed=0, epoch=0, key=7):
    """Returns (output, seeds): `op` applied to `batch` (modified in place if the op works in place)."""
    new_state, query = op.declare_state_and_memory(state_of(batch))
    count = batch.shape[0]
    destination = None
    if query is not None:
        shape = (count, *query.shape)
        destination = (torch.empty(shape, dtype=query.dtype, device=query.device or 'cpu')
                       if isinstance(query.dtype, torch.dtype) else np.empty(shape, query.dtype))
    code = op.generate_code()
    function = Compiler.compile(code) if new_state.jit_mode else code
    indices = np.arange(count, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
    seeds = batch_seeds(np.uint64(seed), np.uint64(epoch), indices, np.uint64(getattr(code, 'seed_key', key)))
    args = [batch, destination]
    if getattr(code, 'with_indices', False):
        args.append(indices)
    if getattr(code, 'with_seeds', False):
        args.append(seeds)
    return function(*args), seeds


def many_seeds(count: int, seed: int = 0) -> np.ndarray:
    """`count` per-sample seeds, as the loader derives them (for statistical checks of the draws)."""
    return batch_seeds(np.uint64(seed), np.uint64(0), np.arange(count, dtype=np.int64), np.uint64(7))
