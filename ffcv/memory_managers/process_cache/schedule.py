"""The page schedule of one epoch: which file pages each batch needs, when each may be read, and how
many page-sized frames the epoch needs so that reads never wait for memory.

Time is counted in batches. A page first needed by batch ``f`` and last needed by batch ``l`` may be
read as soon as batch ``f - prefetch`` starts, and its frame is reused once every batch that needs it
has ended. While batch ``t`` is the newest one started, batches down to ``t - lookahead`` may still be
running, so the page occupies its frame over the batch interval ``[f - prefetch, l + lookahead]``; the
frame count is the largest number of such intervals that overlap.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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


@dataclass
class EpochSchedule:
    """Pages needed per batch and per-page timing for one epoch (arrays indexed by file page number)."""
    batch_offsets: np.ndarray  # pages of batch b: batch_pages[batch_offsets[b]:batch_offsets[b + 1]]
    batch_pages: np.ndarray
    first_use: np.ndarray      # first batch needing each page (-1: not needed this epoch)
    last_use: np.ndarray       # last batch needing each page (-1: not needed)
    uses: np.ndarray           # number of batches needing each page
    load_order: np.ndarray     # needed pages by first use, then by position in the file
    num_frames: int            # peak number of resident pages

    def pages_of(self, batch: int) -> np.ndarray:
        return self.batch_pages[self.batch_offsets[batch]:self.batch_offsets[batch + 1]]


def build_schedule(batches: Sequence[np.ndarray], offsets: np.ndarray, pages: np.ndarray, num_pages: int,
                   prefetch: int, lookahead: int) -> EpochSchedule:
    """Schedule an epoch that visits `batches` (arrays of sample ids), in this order."""
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

    num_frames = 0
    if needed.size:
        occupied = np.zeros(num_batches + 1, np.int64)
        np.add.at(occupied, np.maximum(first_use[needed] - prefetch, 0), 1)
        np.add.at(occupied, np.minimum(last_use[needed] + lookahead, num_batches - 1) + 1, -1)
        num_frames = int(np.cumsum(occupied).max())
    return EpochSchedule(batch_offsets, pair_page, first_use, last_use, uses, load_order, num_frames)
