"""The page schedule of one epoch: which file pages each batch needs, when each is read, and how many
page-sized frames the epoch needs so that reads never wait for memory.

Time is counted in batches. A page is read into a frame by a *load*, which serves a run of the batches
that need the page: a load whose first batch is ``f`` and last batch ``l`` may be read as soon as batch
``f - prefetch`` starts, and its frame is reused once every batch it serves has ended. While batch ``t`` is
the newest one started, batches down to ``t - lookahead`` may still be running, so a load occupies its
frame over the batch interval ``[f - prefetch, l + lookahead]``; the frame count is the largest number of
such intervals that overlap.

By default a page has one load per epoch, from its first to its last use: SEQUENTIAL and QUASI_RANDOM
orders use each page over a short stretch of batches, so few frames are needed. With RANDOM order a page
is used all over the epoch and would stay in memory for nearly all of it. When the frames exceed
``max_frames``, the schedule releases a page after a use if its next use is more than ``reload_gap``
batches later, and loads it again before that use; ``reload_gap`` is the largest gap whose schedule fits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..._lazy import lazy_attributes

# FFCV 1.0.2 also exposes `PageReader` here (loaded on first use: it loads ffcv.libffcv).
__getattr__ = lazy_attributes(__name__, {'PageReader': 'ffcv.memory_managers.process_cache.page_reader'})


def page_data_ends(alloc_table: np.ndarray, page_shift: int, num_pages: int) -> np.ndarray:
    """For each page, the number of bytes from its start that its allocations cover (0 if none)."""
    ptrs = alloc_table['ptr'].astype(np.int64)
    sizes = alloc_table['size'].astype(np.int64)
    keep = sizes > 0
    pages = ptrs[keep] >> page_shift
    ends = np.zeros(num_pages, np.int64)
    np.maximum.at(ends, pages, ptrs[keep] + sizes[keep] - (pages << page_shift))
    return ends


def sample_spans(alloc_table: np.ndarray, page_shift: int, indices: np.ndarray) -> tuple:
    """Where the data of samples `indices` lies: ``(offsets, pages, starts, stops)``, row ``r``'s
    (non-empty) allocations being ``pages[offsets[r]:offsets[r + 1]]`` with bytes ``[starts, stops)`` of
    those pages."""
    indices = np.asarray(indices, dtype=np.int64)
    samples = alloc_table['sample_id'].astype(np.int64)
    keep = (alloc_table['size'] > 0) & np.isin(samples, indices)
    samples = samples[keep]
    ptrs = alloc_table['ptr'][keep].astype(np.int64)
    sizes = alloc_table['size'][keep].astype(np.int64)
    by_sample = np.argsort(samples, kind='stable')
    samples, ptrs, sizes = samples[by_sample], ptrs[by_sample], sizes[by_sample]
    first = np.searchsorted(samples, indices, 'left')
    last = np.searchsorted(samples, indices, 'right')
    counts = last - first
    offsets = np.zeros(indices.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    entries = np.repeat(first - offsets[:-1], counts) + np.arange(offsets[-1])  # rows may repeat a sample
    pages = ptrs[entries] >> page_shift
    starts = ptrs[entries] - (pages << page_shift)
    return offsets, pages, starts, starts + sizes[entries]


@dataclass
class EpochSchedule:
    """Pages needed per batch, per-page timing and the loads of one epoch.

    Page arrays are indexed by file page number, load arrays by load number; loads are numbered in the
    order they are read (by first batch, then by page).
    """
    batch_offsets: np.ndarray  # pages of batch b: batch_pages[batch_offsets[b]:batch_offsets[b + 1]]
    batch_pages: np.ndarray
    first_use: np.ndarray      # first batch needing each page (-1: not needed this epoch)
    last_use: np.ndarray       # last batch needing each page (-1: not needed)
    uses: np.ndarray           # number of batches needing each page
    load_order: np.ndarray     # needed pages by first use, then by position in the file
    num_frames: int            # peak number of resident pages
    batch_loads: np.ndarray    # the load serving each entry of batch_pages
    load_page: np.ndarray      # page read by each load
    load_first: np.ndarray     # first batch served by each load
    load_last: np.ndarray      # last batch served by each load
    load_uses: np.ndarray      # batches served by each load
    reload_gap: Optional[int] = None  # None: one load per page; else a page is reloaded after longer gaps

    def pages_of(self, batch: int) -> np.ndarray:
        return self.batch_pages[self.batch_offsets[batch]:self.batch_offsets[batch + 1]]

    def loads_of(self, batch: int) -> np.ndarray:
        return self.batch_loads[self.batch_offsets[batch]:self.batch_offsets[batch + 1]]

    @property
    def num_reloads(self) -> int:
        """Loads of a page after its first in this epoch (each reads the page again)."""
        return int(self.load_page.size - np.count_nonzero(self.uses))


def _frames(first: np.ndarray, last: np.ndarray, num_batches: int, prefetch: int, lookahead: int) -> int:
    """Peak number of loads whose intervals [first - prefetch, last + lookahead] overlap."""
    if not first.size:
        return 0
    starts = np.bincount(np.maximum(first - prefetch, 0), minlength=num_batches + 1)
    ends = np.bincount(np.minimum(last + lookahead, num_batches - 1) + 1, minlength=num_batches + 1)
    return int(np.cumsum(starts - ends).max())


def build_schedule(batches: Sequence[np.ndarray], offsets: np.ndarray, pages: np.ndarray, num_pages: int,
                   prefetch: int, lookahead: int, max_frames: Optional[int] = None) -> EpochSchedule:
    """Schedule an epoch that visits `batches` (arrays of sample ids), in this order.

    With `max_frames`, pages are reloaded where needed so that the epoch needs at most that many frames;
    `MemoryError` (with the smallest number that can work) if even reloading every page before each use
    needs more.
    """
    num_batches = len(batches)
    lengths = np.array([len(b) for b in batches], dtype=np.int64)
    samples = (np.concatenate([np.asarray(b, dtype=np.int64) for b in batches]) if num_batches
               else np.zeros(0, np.int64))
    if samples.size and (samples.min() < 0 or samples.max() >= offsets.size - 1):
        bad = samples[(samples < 0) | (samples >= offsets.size - 1)][0]
        raise IndexError(f'sample id {bad} is out of range [0, {offsets.size - 1})')
    batch_of = np.repeat(np.arange(num_batches, dtype=np.int64), lengths)
    counts = offsets[samples + 1] - offsets[samples]
    starts = np.repeat(offsets[samples], counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    width = max(num_pages, 1)
    keys = np.unique(np.repeat(batch_of, counts) * width + pages[starts + within])
    pair_batch, pair_page = np.divmod(keys, width)  # sorted by batch, then page

    batch_offsets = np.searchsorted(pair_batch, np.arange(num_batches + 1))
    first_use = np.full(num_pages, -1, np.int64)
    last_use = np.full(num_pages, -1, np.int64)
    needed, first_index = np.unique(pair_page, return_index=True)
    first_use[needed] = pair_batch[first_index]
    _, last_index = np.unique(pair_page[::-1], return_index=True)
    last_use[needed] = pair_batch[::-1][last_index]
    uses = np.bincount(pair_page, minlength=num_pages).astype(np.int64)
    load_order = needed[np.lexsort((needed, first_use[needed]))]

    # Uses of each page in time order; gap[i]: batches since the page's previous use (0 at its first use).
    by_page = np.lexsort((pair_batch, pair_page))
    use_batch, use_page = pair_batch[by_page], pair_page[by_page]
    new_page = np.ones(use_page.size, bool)
    new_page[1:] = use_page[1:] != use_page[:-1]
    gap = np.zeros(use_page.size, np.int64)
    gap[1:] = use_batch[1:] - use_batch[:-1]
    gap[new_page] = 0

    def split(reload_gap: Optional[int]) -> np.ndarray:
        """Where a load starts: a page's first use, and (with a gap) uses more than `reload_gap` after the last."""
        return new_page if reload_gap is None else new_page | (gap > reload_gap)

    def frames(starts_mask: np.ndarray) -> int:
        ends_mask = np.ones(starts_mask.size, bool)
        ends_mask[:-1] = starts_mask[1:]
        return _frames(use_batch[starts_mask], use_batch[ends_mask], num_batches, prefetch, lookahead)

    reload_gap = None
    num_frames = frames(new_page) if needed.size else 0
    if max_frames is not None and num_frames > max_frames:
        # Gaps up to prefetch + lookahead + 1 keep the page anyway (its intervals overlap or touch), so they
        # cost no frame; the frames needed grow with the gap kept, so search the gaps that occur.
        floor = prefetch + lookahead + 1
        candidates = np.concatenate([[floor], np.unique(gap[gap > floor])])
        least = frames(split(floor))
        if least > max_frames:
            most_per_batch = int(np.diff(batch_offsets).max())
            raise MemoryError(f'this epoch needs at least {least} page frames even when every page is read again '
                              f'before each use (one batch needs up to {most_per_batch} pages, and pages are read '
                              f'{prefetch} batches ahead of {lookahead} batches in flight), more than the '
                              f'{max_frames} the memory limit allows')
        low, high = 0, candidates.size - 1  # candidates[low] fits; find the largest that does
        while low < high:
            middle = (low + high + 1) // 2
            if frames(split(int(candidates[middle]))) <= max_frames:
                low = middle
            else:
                high = middle - 1
        reload_gap = int(candidates[low])
        num_frames = frames(split(reload_gap))

    load_starts = split(reload_gap) if use_page.size else new_page
    load_ends = np.ones(load_starts.size, bool)
    load_ends[:-1] = load_starts[1:]
    number = np.cumsum(load_starts) - 1  # per use (page-major order): its load, numbered by page
    first, last, page = use_batch[load_starts], use_batch[load_ends], use_page[load_starts]
    rank = np.empty(first.size, np.int64)
    rank[np.lexsort((page, first))] = np.arange(first.size)  # renumber loads in reading order
    batch_loads = np.empty(use_page.size, np.int64)
    batch_loads[by_page] = rank[number]
    order = np.argsort(rank)
    load_uses = np.bincount(rank[number], minlength=first.size).astype(np.int64)
    return EpochSchedule(batch_offsets, pair_page, first_use, last_use, uses, load_order, num_frames,
                         batch_loads, page[order], first[order], last[order], load_uses, reload_gap)
