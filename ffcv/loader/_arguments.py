"""Checks of the `Loader`'s arguments: every mistake fails at ``Loader(...)``, in the user's terms."""
from __future__ import annotations

from typing import Optional

import numpy as np

MAX_THREADS = 1024  # num_workers / batches_ahead: each needs a batch buffer slot; more is surely a mistake
MAX_SEED = 2**63


def integer(name: str, value, minimum: Optional[int] = 1, maximum: Optional[int] = None, hint: str = '') -> int:
    """An int (not a bool) in [minimum, maximum]; None: unbounded on that side."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (minimum is not None
                                                                               and value < minimum):
        raise ValueError(f"{name} must be a{' positive' if minimum == 1 else 'n'} integer{hint}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f'{name}={value} is more than {maximum}: every worker thread and every batch ahead '
                         'holds a buffer of one batch per output, so this many cannot help')
    return int(value)


def flag(name: str, value) -> bool:
    """True/False (NumPy bools and the ints 0 and 1 of config files too); a string is refused, not truthy."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f'{name} must be True or False, got {value!r}')


def sample_indices(indices, num_samples: int, fname: str) -> np.ndarray:
    """The `indices` argument as an int64 array, each in [0, num_samples)."""
    array = np.asarray(indices)
    if array.dtype == bool:
        raise TypeError(f'indices is a boolean mask; pass the positions it selects: np.flatnonzero(mask) '
                        f'({fname})')
    if array.ndim != 1:
        raise ValueError(f'indices must be a 1-D sequence of sample numbers, got shape {array.shape}')
    if array.size and array.dtype.kind not in 'iu':
        if array.dtype.kind != 'O' or not all(isinstance(i, (int, np.integer)) for i in array.tolist()):
            raise TypeError(f'indices must be integers (sample numbers), got {array.dtype} values such as '
                            f'{array.tolist()[0]!r}')
    bad = [i for i in array.tolist() if not 0 <= i < num_samples] if array.dtype.kind == 'O' else \
        array[(array < 0) | (array >= num_samples)].tolist()
    if bad:
        raise IndexError(f'indices must lie in [0, {num_samples}) for {fname}; got {bad[0]}')
    return array.astype(np.int64)


def seed_value(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < MAX_SEED:
        raise ValueError(f'seed must be an integer in [0, 2**63), got {seed!r}')
    return int(seed)


def check_buffer_memory(pipelines, batch_size: int, slots: int, fname: str, limit: int) -> None:
    """MemoryError, before allocating, when the epoch's batch buffers cannot fit in `limit` bytes."""
    from ..pipeline.allocation_query import AllocationQuery
    per_slot = 0
    for pipeline in pipelines:
        for step in pipeline.steps:
            queries = step.allocation
            queries = () if queries is None else (queries,) if isinstance(queries, AllocationQuery) else queries
            for query in queries:
                itemsize = query.dtype.itemsize if hasattr(query.dtype, 'itemsize') else np.dtype(query.dtype).itemsize
                per_slot += batch_size * int(np.prod(query.shape, dtype=np.float64)) * itemsize
    if limit and per_slot * slots > limit:
        raise MemoryError(f'{fname}: the batch buffers need {per_slot * slots / 2**30:.1f} GiB ({slots} slots of '
                          f'{per_slot / 2**20:.1f} MiB: batch_size={batch_size}, slots = max(batches_ahead, '
                          f'num_workers) + 1), more than this machine has ({limit / 2**30:.1f} GiB); lower '
                          'batch_size, num_workers or batches_ahead')


def remote_options(fname: str, remote):
    """The `remote` argument as RemoteOptions for a URL (None for a local path, where it must be None)."""
    from ..remote.options import RemoteOptions, is_url
    if not is_url(fname):
        if remote is not None:
            raise ValueError(f'remote options were given but {fname} is a local path, not a URL')
        return None
    return RemoteOptions.coerce(remote)
