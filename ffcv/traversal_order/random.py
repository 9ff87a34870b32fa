"""`Random`: a fresh uniform permutation each epoch, a function of (seed, epoch) only."""
from __future__ import annotations

import numpy as np
import torch

from .base import TraversalOrder, rank_slice


class Random(TraversalOrder):
    """A uniform shuffle of `indices` per epoch.

    Single process: ``np.random.default_rng(seed + epoch).permutation(indices)``, the same order FFCV
    1.0.2 produces for the same seed. Distributed: one global permutation (torch.randperm seeded with
    seed + epoch, as torch's DistributedSampler does), padded and strided across ranks.
    """

    def sample_order(self, epoch: int) -> np.ndarray:
        indices = np.asarray(self.indices, dtype=np.int64)
        if not self.distributed:
            return np.random.default_rng(self.seed + epoch).permutation(indices)
        generator = torch.Generator()
        generator.manual_seed(self.seed + epoch)
        permutation = torch.randperm(len(indices), generator=generator).numpy()
        return rank_slice(indices[permutation], self.rank, self.world_size)
