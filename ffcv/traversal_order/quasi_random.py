"""`QuasiRandom`: a shuffle that keeps only a bounded window of file pages in use at any time."""
from __future__ import annotations

from typing import Optional

import numba
import numpy as np

from .base import TraversalOrder


@numba.njit(nogil=True, cache=True)
def _interleave(samples, starts, counts, page_order, draws, window):
    """Emit `samples` grouped by page: each position takes the next sample of a uniformly drawn page
    among at most `window` open ones; an exhausted page is replaced by the next one of `page_order`."""
    out = np.empty(samples.size, samples.dtype)
    cursor = np.zeros(counts.size, np.int64)
    num_open = min(window, page_order.size)
    open_pages = page_order[:num_open].copy()
    next_page = num_open
    for i in range(samples.size):
        slot = min(int(draws[i] * num_open), num_open - 1)
        page = open_pages[slot]
        out[i] = samples[starts[page] + cursor[page]]
        cursor[page] += 1
        if cursor[page] == counts[page]:
            if next_page < page_order.size:
                open_pages[slot] = page_order[next_page]
                next_page += 1
            else:
                num_open -= 1
                open_pages[slot] = open_pages[num_open]
    return out


def rank_block(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous share of a global order: pad by repeating the head up to a multiple of
    `world_size`, then rank r takes the r-th of `world_size` equal consecutive blocks."""
    length = -(-len(order) // world_size)
    total = length * world_size
    if total > len(order) and len(order):
        order = np.concatenate([order] * -(-total // len(order)))[:total]
    return order[rank * length:(rank + 1) * length]


class QuasiRandom(TraversalOrder):
    """A near-uniform shuffle that reads each page once per epoch and keeps few pages in use.

    Each epoch (a pure function of the seed and the epoch): the samples of every page are shuffled,
    the pages are put in a random order, and at most `window` pages (default ``2 * batch_size``) are
    open at once; each position of the order takes the next sample of a uniformly chosen open page,
    and a page that runs out is replaced by the next one. With ``os_cache=False`` the process cache
    then holds about `window` pages instead of the whole file (FFCV's QUASI_RANDOM, same idea).

    Samples without heap data are grouped into stand-in pages of the average page's sample count.

    Distributed (FFCV does not support it): every rank computes the same global order and takes a
    contiguous block of it (padded by repeating the head, as DistributedSampler pads), so the shares
    are disjoint, of equal length, and each rank reads only about ``1 / world_size`` of the pages.

    Parameters
    ----------
    loader
        Provides `indices`, `seed`, `distributed`, `batch_size` and `reader`.
    window : int, optional
        Pages open at once (default ``2 * loader.batch_size``).
    """

    def __init__(self, loader, window: Optional[int] = None):
        super().__init__(loader)
        reader = loader.reader
        if reader.alloc_table.size == 0:
            raise ValueError(f'{reader.file_name} has no heap data (only scalar fields): QUASI_RANDOM '
                             'groups samples by the pages holding their data, so it cannot help here; '
                             'use OrderOption.RANDOM')
        self.window = 2 * int(loader.batch_size) if window is None else int(window)
        if self.window < 1:
            raise ValueError(f'window must be >= 1, got {self.window}')
        offsets, pages_of, _ = reader.sample_pages()
        first = offsets[:-1]
        has_data = offsets[1:] > first
        sample_page = np.full(reader.num_samples, np.iinfo(np.int64).max, np.int64)
        sample_page[has_data] = pages_of[first[has_data]]  # a sample's first page (normally its only one)
        indices = np.asarray(self.indices, dtype=np.int64)
        pages = sample_page[indices]
        has_page = pages != np.iinfo(np.int64).max
        _, group = np.unique(pages[has_page], return_inverse=True)
        groups = np.empty(indices.size, np.int64)
        groups[has_page] = group
        num_groups = int(group.max()) + 1 if group.size else 0
        if not has_page.all():  # samples with no heap data: stand-in pages of an average size
            chunk = max(1, round(has_page.sum() / num_groups)) if num_groups else 1
            groups[~has_page] = num_groups + np.arange((~has_page).sum()) // chunk
        order = np.argsort(groups, kind='stable')
        self._samples = indices[order]
        self._groups = groups[order]
        self._counts = np.bincount(self._groups).astype(np.int64)
        self._starts = (np.cumsum(self._counts) - self._counts).astype(np.int64)

    def sample_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([int(self.seed), int(epoch)])
        within = np.lexsort((rng.random(self._samples.size), self._groups))
        page_order = rng.permutation(self._counts.size).astype(np.int64)
        draws = rng.random(self._samples.size)
        order = _interleave(self._samples[within], self._starts, self._counts, page_order, draws, self.window)
        if self.distributed:
            order = rank_block(order, self.rank, self.world_size)
        return order
