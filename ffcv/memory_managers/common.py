"""FFCV's `ffcv.memory_managers.common`: the type of an epoch's batches, kept for FFCV code compatibility
(FFCV's memory managers annotate `schedule_epoch` with it)."""
from typing import Sequence

#: An epoch as the memory managers receive it: one sequence of sample indices per batch.
BATCHES_TYPE = Sequence[Sequence[int]]
