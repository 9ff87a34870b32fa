"""Small shared helpers."""
from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which SLURM and containers restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def chunks(sequence, size: int):
    """Consecutive slices of `sequence` of length `size` (the last may be shorter)."""
    for start in range(0, len(sequence), size):
        yield sequence[start:start + size]
