"""`TraversalOrder`: which samples an epoch visits, in which order (for this process's rank)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence, Tuple

import numpy as np

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..reader import Reader  # noqa: F401


def distributed_rank_and_size() -> Tuple[int, int]:
    """(rank, world size) from the initialised torch.distributed process group."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError('distributed=True needs an initialised torch.distributed process group: call '
                           'torch.distributed.init_process_group(...) (torchrun sets the environment) '
                           'before creating the Loader')
    return dist.get_rank(), dist.get_world_size()


def rank_slice(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of a global order, as torch's DistributedSampler cuts it.

    The order is padded by repeating its head up to a multiple of `world_size`; rank r takes positions
    r, r + world_size, ... So every rank gets the same number of samples, and the ranks' shares are
    disjoint positions of one global order (only the < world_size padding samples repeat).
    """
    total = -(-len(order) // world_size) * world_size
    if total > len(order):
        repeats = -(-total // max(len(order), 1))
        order = np.concatenate([order] * repeats)[:total] if len(order) else order
    return order[rank:total:world_size]


class TraversalOrder(ABC):
    """Base of sample orders. Subclass it for a custom order and pass the class as `Loader(order=...)`.

    The loader instantiates it as ``Order(loader, **order_kwargs)``; ``sample_order(epoch)`` must return
    the sample ids (rows of the file) to visit, and must be a pure function of the epoch (and the
    loader's seed) so that runs are reproducible and resumable.
    """

    def __init__(self, loader):
        self.loader = loader
        self.indices = loader.indices
        self.distributed = loader.distributed
        self.sampler = None
        if self.distributed:
            self.rank, self.world_size = distributed_rank_and_size()
        else:
            self.rank, self.world_size = 0, 1

    @property
    def seed(self) -> int:
        """The loader's seed (read at each epoch, so `Loader.load_state_dict` reaches the order too)."""
        return self.loader.seed

    @abstractmethod
    def sample_order(self, epoch: int) -> Sequence[int]:
        """Sample ids visited in `epoch`, in order."""
