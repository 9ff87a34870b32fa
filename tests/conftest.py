"""Shared fixtures: the FFCV-written fixture folder, generated datasets, markers."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import load_script

# Files written by FFCV 1.0.2, committed with the tests (regenerate: tests/data/ffcv_fixtures/README.md).
FIXTURES = Path(__file__).resolve().parent / 'data' / 'ffcv_fixtures'


def pytest_configure(config):
    # A shell starts background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt
    # handler; the Ctrl-C tests need the interpreter's usual one whatever way pytest was launched.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason='needs a CUDA GPU (none on this machine)')
        for item in items:
            if 'cuda' in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope='session')
def fixtures_dir() -> Path:
    if not (FIXTURES / 'manifest.json').exists():
        pytest.fail(f'FFCV-written fixtures missing from {FIXTURES} (they are committed with the repository)')
    return FIXTURES


@pytest.fixture(scope='session')
def manifest(fixtures_dir) -> dict:
    return json.loads((fixtures_dir / 'manifest.json').read_text())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth, JPEG-friendly RGB image: low-frequency gradients plus mild noise."""
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(1, 1, 3)).astype(np.float32)
    freq = rng.uniform(1, 4, size=(2,)).astype(np.float32)
    base = 127 + 90 * np.sin(freq[0] * 3 * ys + phase) * np.cos(freq[1] * 3 * xs + phase[..., ::-1])
    noise = rng.normal(0, 2, size=(height, width, 3)).astype(np.float32)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def tmp_beton(tmp_path):
    """Factory for output paths inside the test's temp dir."""
    counter = iter(range(10**6))
    return lambda name='data': os.fspath(tmp_path / f'{name}_{next(counter)}.beton')


@pytest.fixture(scope='session')
def imagenet_tiny(tmp_path_factory):
    """4 classes of 10 train / 5 val JPEG photos (48-96 px) in ImageFolder layout, written by write_imagenet.py."""
    root = tmp_path_factory.mktemp('imagefolder')
    rng = np.random.default_rng(7)
    for split, count in (('train', 10), ('val', 5)):
        for label in range(4):
            folder = root / split / f'n{label:08d}'
            folder.mkdir(parents=True)
            for i in range(count):
                image = photo_like(rng, int(rng.integers(48, 97)), int(rng.integers(48, 97)))
                Image.fromarray(image).save(folder / f'{i}.JPEG', quality=90)
    writer = load_script('examples/imagenet/write_imagenet.py')
    out = tmp_path_factory.mktemp('beton')
    assert writer.main(['--root', str(root), '--out', str(out), '--preset', 'rn18', '--max-resolution', '64',
                        '--num-workers', '1']) == 0
    return str(out / 'train_64_0.10_90.beton'), str(out / 'val_64_0.10_90.beton')
