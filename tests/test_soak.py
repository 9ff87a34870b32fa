"""Soak: many short epochs and many abandoned loaders, with RSS, open file descriptors and threads sampled.

Bounds: threads and file descriptors return exactly to their baseline; RSS grows by less than
`RSS_BOUND` after a warm-up (allocator caches, numba and torch lazy state). CI runs a short version;
`pytest -m slow` runs 1,000 epochs and 200 create/abandon cycles per memory manager.
"""
import gc
import threading
import time

import numpy as np
import psutil
import pytest

from ffcv.fields import BytesField, IntField, RGBImageField
from ffcv.fields.decoders import CenterCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.transforms import ToTensor

from helpers import write_and_read

CACHES = [pytest.param(True, id='os_cache'), pytest.param(False, id='process_cache')]
RSS_BOUND = 24 << 20


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """64 samples: a JPEG or raw image of varied size, a label, a blob."""
    path = str(tmp_path_factory.mktemp('soak') / 'data.beton')
    rng = np.random.default_rng(0)
    samples = [(rng.integers(0, 256, (int(rng.integers(24, 80)), int(rng.integers(24, 80)), 3), dtype=np.uint8), i,
                rng.bytes(int(rng.integers(0, 100)))) for i in range(64)]
    write_and_read(path, {'image': RGBImageField(write_mode='proportion'), 'label': IntField(), 'blob': BytesField()},
                   samples)
    return path


def sample() -> dict:
    gc.collect()
    process = psutil.Process()
    return {'rss': process.memory_info().rss, 'fds': process.num_fds(), 'threads': threading.active_count()}


def settled(baseline: dict, timeout: float = 5.0) -> dict:
    deadline = time.time() + timeout
    now = sample()
    while now['threads'] > baseline['threads'] and time.time() < deadline:
        time.sleep(0.02)
        now = sample()
    return now


def drift(samples) -> dict:
    first = samples[0]
    return {key: max(s[key] for s in samples) - first[key] for key in first}


def report(what: str, samples) -> dict:
    change = drift(samples)
    print(f"{what}: {len(samples)} samples, RSS {samples[0]['rss'] / 2**20:.1f} MiB -> max "
          f"+{change['rss'] / 2**20:.2f} MiB (last {(samples[-1]['rss'] - samples[0]['rss']) / 2**20:+.2f}), "
          f"fds +{change['fds']}, threads +{change['threads']}")
    assert change['threads'] == 0 and change['fds'] == 0
    assert change['rss'] < RSS_BOUND
    return change


def make_loader(path, os_cache, **kwargs):
    return Loader(path, batch_size=16, num_workers=2, os_cache=os_cache, order=OrderOption.RANDOM, seed=3,
                  drop_last=False, pipelines={'image': [CenterCropRGBImageDecoder((32, 32), 0.9), ToTensor()]},
                  **kwargs)


def run_epochs(path, os_cache, epochs, every):
    loader = make_loader(path, os_cache)
    for _ in range(30):  # warm-up
        for _ in loader:
            pass
    samples = [settled(sample())]
    for epoch in range(epochs):
        count = 0
        for images, labels, blobs in loader:
            count += labels.shape[0]
        assert count == 64
        if epoch % every == every - 1:
            samples.append(settled(samples[0]))
    return samples


def abandon_loaders(path, os_cache, cycles, every):
    rng = np.random.default_rng(7)

    def cycle():
        loader = make_loader(path, os_cache)
        iterator = iter(loader)
        for _ in range(int(rng.integers(0, 4))):  # abandoned at a random point of its epoch
            next(iterator)
        if rng.random() < 0.5:
            del loader  # the loader goes first, the running epoch after it
    for _ in range(10):
        cycle()
    samples = [settled(sample())]
    for k in range(cycles):
        cycle()
        if k % every == every - 1:
            samples.append(settled(samples[0]))
    return samples


@pytest.mark.parametrize('os_cache', CACHES)
def test_short_epochs_stay_flat(dataset, os_cache):
    report(f'150 epochs, os_cache={os_cache}', run_epochs(dataset, os_cache, 150, every=25))


@pytest.mark.parametrize('os_cache', CACHES)
def test_abandoned_loaders_stay_flat(dataset, os_cache):
    report(f'40 abandoned loaders, os_cache={os_cache}', abandon_loaders(dataset, os_cache, 40, every=10))


@pytest.mark.slow
@pytest.mark.parametrize('os_cache', CACHES)
def test_1000_epochs_stay_flat(dataset, os_cache):
    samples = run_epochs(dataset, os_cache, 1000, every=50)
    report(f'1000 epochs, os_cache={os_cache}', samples)
    tail = [s['rss'] for s in samples[len(samples) // 2:]]
    assert max(tail) - min(tail) < RSS_BOUND // 2  # no steady climb in the second half


@pytest.mark.slow
@pytest.mark.parametrize('os_cache', CACHES)
def test_200_abandoned_loaders_stay_flat(dataset, os_cache):
    report(f'200 abandoned loaders, os_cache={os_cache}', abandon_loaders(dataset, os_cache, 200, every=20))
