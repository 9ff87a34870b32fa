"""Traversal orders: determinism per (seed, epoch), indices, distributed shares, QUASI_RANDOM locality."""
from __future__ import annotations

import os
import types
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

import ffcv.traversal_order.base as order_base
from ffcv.fields import BytesField, IntField
from ffcv.reader import Reader
from ffcv.traversal_order import QuasiRandom, Random, Sequential, TraversalOrder

from helpers import write_and_read

PAGE = 1 << 21
BATCH = 2


@pytest.fixture(scope='module')
def paged_file(tmp_path_factory):
    """130 samples of 150-450 KB on 2 MiB pages (about 7 samples per page, ~20 pages)."""
    rng = np.random.default_rng(7)
    samples = [(rng.integers(0, 256, int(rng.integers(150_000, 450_000)), dtype=np.uint8), i)
               for i in range(130)]
    path = os.fspath(tmp_path_factory.mktemp('orders') / 'paged.beton')
    write_and_read(path, {'blob': BytesField(), 'label': IntField()}, samples, page_size=PAGE)
    return path


def fake_loader(path, indices=None, seed=3, distributed=False, batch_size=BATCH):
    reader = Reader(path)
    if indices is None:
        indices = np.arange(reader.num_samples, dtype=np.int64)
    return types.SimpleNamespace(indices=np.asarray(indices, dtype=np.int64), seed=seed,
                                 distributed=distributed, batch_size=batch_size, reader=reader, drop_last=False)


def page_of(reader: Reader) -> np.ndarray:
    """The page of each sample's heap data."""
    table = reader.alloc_table
    pages = np.full(reader.num_samples, -1, np.int64)
    pages[table['sample_id'].astype(np.int64)] = (table['ptr'] // reader.page_size).astype(np.int64)
    return pages


def max_open_pages(order: np.ndarray, pages: np.ndarray) -> int:
    """Largest number of pages 'open' at once (a page is open from its first to its last sample)."""
    sequence = pages[order]
    first = {p: i for i, p in reversed(list(enumerate(sequence)))}
    last = {p: i for i, p in enumerate(sequence)}
    coverage = np.zeros(len(order) + 1, np.int64)
    for p in first:
        coverage[first[p]] += 1
        coverage[last[p] + 1] -= 1
    return int(np.cumsum(coverage).max())


def test_sequential_is_indices_every_epoch(paged_file):
    indices = np.array([5, 3, 99, 0, 42])
    for loader in (fake_loader(paged_file), fake_loader(paged_file, indices=indices)):
        orders = [Sequential(loader).sample_order(epoch) for epoch in range(3)]
        for order in orders:
            np.testing.assert_array_equal(order, loader.indices)


def test_random_is_numpy_permutation_of_seed_plus_epoch(paged_file):
    loader = fake_loader(paged_file, indices=np.arange(10, 120), seed=11)
    order = Random(loader)
    for epoch in range(3):
        expected = np.random.default_rng(11 + epoch).permutation(loader.indices)
        np.testing.assert_array_equal(order.sample_order(epoch), expected)


@pytest.mark.parametrize('order_class', [Random, QuasiRandom])
def test_shuffles_are_permutations_deterministic_per_seed_and_epoch(paged_file, order_class):
    first = order_class(fake_loader(paged_file, seed=5))
    second = order_class(fake_loader(paged_file, seed=5))
    other_seed = order_class(fake_loader(paged_file, seed=6))
    epochs = [first.sample_order(epoch) for epoch in range(3)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(130))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    # A fresh object resuming at epoch 2 gives what the first one gave (no state across epochs).
    np.testing.assert_array_equal(second.sample_order(2), epochs[2])
    np.testing.assert_array_equal(second.sample_order(0), epochs[0])
    assert not np.array_equal(other_seed.sample_order(0), epochs[0])


@pytest.mark.parametrize('order_class', [Sequential, Random, QuasiRandom])
def test_only_indices_appear(paged_file, order_class):
    indices = np.random.default_rng(0).choice(130, size=37, replace=False)
    order = order_class(fake_loader(paged_file, indices=indices)).sample_order(1)
    assert sorted(order.tolist()) == sorted(indices.tolist())


def test_quasi_random_keeps_a_bounded_window_of_pages(paged_file):
    loader = fake_loader(paged_file)
    pages = page_of(loader.reader)
    window = 2 * BATCH
    assert len(np.unique(pages)) > 4 * window  # the file must be much larger than the window
    quasi = QuasiRandom(loader)
    for epoch in range(4):
        order = quasi.sample_order(epoch)
        assert max_open_pages(order, pages) <= window
        # So any run of consecutive samples touches at most `window` pages plus the pages it finishes.
        for start in range(0, len(order) - 20):
            run = pages[order[start:start + 20]]
            finished = [p for p in set(run) if (pages[order[start + 20:]] != p).all()]
            assert len(set(run)) <= window + len(finished)
    assert max_open_pages(Random(loader).sample_order(0), pages) > 3 * window  # for contrast
    assert QuasiRandom(loader, window=1).sample_order(0).tolist() != quasi.sample_order(0).tolist()
    assert max_open_pages(QuasiRandom(loader, window=1).sample_order(0), pages) == 1


def test_quasi_random_includes_samples_without_heap_data(tmp_beton):
    samples = [(b'' if i % 3 == 0 else bytes([i]) * 300_000, i) for i in range(60)]
    reader = write_and_read(tmp_beton(), {'blob': BytesField(), 'label': IntField()}, samples, page_size=PAGE)
    loader = fake_loader(reader.file_name)
    for epoch in range(2):
        assert sorted(QuasiRandom(loader).sample_order(epoch).tolist()) == list(range(60))


def test_quasi_random_rejects_scalar_only_files(tmp_beton):
    reader = write_and_read(tmp_beton(), {'label': IntField()}, [(i,) for i in range(10)])
    with pytest.raises(ValueError, match='no heap data'):
        QuasiRandom(fake_loader(reader.file_name))


def distributed_orders(path, order_class, world_size, monkeypatch, epoch=1, indices=None):
    shares = []
    for rank in range(world_size):
        monkeypatch.setattr(order_base, 'distributed_rank_and_size', lambda rank=rank: (rank, world_size))
        loader = fake_loader(path, indices=indices, distributed=True)
        shares.append(order_class(loader).sample_order(epoch))
    return shares


@pytest.mark.parametrize('order_class', [Sequential, Random, QuasiRandom])
@pytest.mark.parametrize('world_size', [1, 2, 3, 4])
def test_distributed_shares_are_equal_disjoint_and_complete(paged_file, monkeypatch, order_class, world_size):
    indices = np.arange(3, 130)  # 127 samples: padding needed for 2, 3 and 4 ranks
    shares = distributed_orders(paged_file, order_class, world_size, monkeypatch, indices=indices)
    length = -(-len(indices) // world_size)
    assert all(len(share) == length for share in shares)
    counts = Counter(np.concatenate(shares).tolist())
    assert set(counts) == set(indices.tolist())
    assert sum(c - 1 for c in counts.values()) == length * world_size - len(indices)  # only padding repeats


@pytest.mark.parametrize('order_class, shuffle', [(Sequential, False), (Random, True)])
def test_distributed_matches_torch_distributed_sampler(paged_file, monkeypatch, order_class, shuffle):
    indices = np.arange(5, 130)
    shares = distributed_orders(paged_file, order_class, 3, monkeypatch, epoch=2, indices=indices)
    for rank, share in enumerate(shares):
        sampler = DistributedSampler(range(len(indices)), num_replicas=3, rank=rank, shuffle=shuffle, seed=3)
        sampler.set_epoch(2)
        np.testing.assert_array_equal(share, indices[list(sampler)])


def test_distributed_quasi_random_ranks_read_few_pages(paged_file, monkeypatch):
    shares = distributed_orders(paged_file, QuasiRandom, 2, monkeypatch)
    pages = page_of(Reader(paged_file))
    for share in shares:
        assert max_open_pages(share, pages) <= 2 * BATCH
    rank_pages = [set(pages[share]) for share in shares]
    assert len(rank_pages[0] & rank_pages[1]) <= 2 * BATCH  # only pages open at the split point are shared


def test_distributed_needs_a_process_group(paged_file):
    with pytest.raises(RuntimeError, match='init_process_group'):
        Random(fake_loader(paged_file, distributed=True))


def _distributed_worker(rank, world_size, init_file, path, out_dir):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                                         world_size=world_size)
    try:
        loader = fake_loader(path, distributed=True)
        for order_class in (Sequential, Random, QuasiRandom):
            np.save(os.path.join(out_dir, f'{order_class.__name__}_{rank}.npy'), order_class(loader).sample_order(1))
    finally:
        torch.distributed.destroy_process_group()


def test_real_two_process_gloo_group(paged_file, tmp_path, monkeypatch):
    torch.multiprocessing.spawn(_distributed_worker, args=(2, os.fspath(tmp_path / 'init'), paged_file,
                                                           os.fspath(tmp_path)), nprocs=2, join=True)
    for order_class in (Sequential, Random, QuasiRandom):
        expected = distributed_orders(paged_file, order_class, 2, monkeypatch)
        for rank in range(2):
            got = np.load(tmp_path / f'{order_class.__name__}_{rank}.npy')
            np.testing.assert_array_equal(got, expected[rank])


def test_custom_order_subclass(paged_file):
    class Reversed(TraversalOrder):
        def sample_order(self, epoch):
            return self.indices[::-1]

    np.testing.assert_array_equal(Reversed(fake_loader(paged_file)).sample_order(0), np.arange(130)[::-1])
