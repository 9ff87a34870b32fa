"""`Sequential`: the samples in file order (or in the order of `indices`)."""
from __future__ import annotations

import numpy as np

from .base import TraversalOrder, rank_slice


class Sequential(TraversalOrder):
    """Visit `indices` as given, every epoch; with `distributed`, each rank takes its strided share."""

    def sample_order(self, epoch: int) -> np.ndarray:
        order = np.asarray(self.indices, dtype=np.int64)
        if self.distributed:
            order = rank_slice(order, self.rank, self.world_size)
        return order
