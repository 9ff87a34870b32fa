"""Small helpers shared by test modules."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from ffcv.datasets.embedded import make_arrays
from ffcv.fields import BytesField, IntField, RGBImageField
from ffcv.pipeline import Compiler
from ffcv.reader import Reader
from ffcv.writer import DatasetWriter

ROOT = Path(__file__).resolve().parents[1]


def write_and_read(path, fields, samples, chunksize=100, **writer_kwargs):
    """Write `samples` with `fields`, reopen the file, and return the Reader."""
    writer_kwargs.setdefault('num_workers', 1)
    DatasetWriter(path, fields, **writer_kwargs).from_indexed_dataset(samples, chunksize=chunksize,
                                                                      progress=False)
    return Reader(path)


def write_blob_file(path, count: int, sizes: tuple, seed: int, page_size: int = 1 << 21) -> str:
    """Write `count` samples (random bytes, a size drawn from [sizes[0], sizes[1]); label i) as fields 'blob'
    and 'label' on pages of `page_size`: the remote tests' files. Returns `path` as a string."""
    rng = np.random.default_rng(seed)
    samples = [(rng.integers(0, 256, int(rng.integers(*sizes)), dtype=np.uint8), i) for i in range(count)]
    write_and_read(os.fspath(path), {'blob': BytesField(), 'label': IntField()}, samples, page_size=page_size)
    return os.fspath(path)


def write_embedded_splits(folder: Path, train_count: int, test_count: int, seed: int) -> tuple[str, str]:
    """Write `train_count` / `test_count` images of the embedded CIFAR-like task to folder/train.beton and
    folder/test.beton (fields 'image' and 'label'); returns the two paths."""
    paths = []
    for split, count in (('train', train_count), ('test', test_count)):
        images, labels = make_arrays(split, count, seed=seed)
        path = str(Path(folder) / f'{split}.beton')
        write_and_read(path, {'image': RGBImageField(), 'label': IntField()}, list(zip(images, labels)))
        paths.append(path)
    return paths[0], paths[1]


def load_script(path: str, module_name: str | None = None) -> ModuleType:
    """Import the script at `path` (relative to the repository root) as a fresh module named `module_name`
    (default: the file's stem), without registering it in sys.modules."""
    path = ROOT / path
    spec = importlib.util.spec_from_file_location(module_name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect(loader):
    """One epoch of `loader`, every tensor cloned (the loader reuses its buffers)."""
    return [tuple(t.clone() for t in batch) for batch in loader]


def same_batches(first, second) -> bool:
    """Whether two collected epochs hold the same number of batches, equal tensor for tensor."""
    return len(first) == len(second) and all(
        all(torch.equal(x, y) for x, y in zip(a, b)) for a, b in zip(first, second))


def compiled_and_python(run):
    """(run() with compilation enabled, run() with `Compiler.set_enabled(False)`); the setting found is restored."""
    previous = Compiler.is_enabled
    try:
        Compiler.set_enabled(True)
        compiled = run()
        Compiler.set_enabled(False)
        return compiled, run()
    finally:
        Compiler.set_enabled(previous)


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `ffcv argv...`, run in-process."""
    from ffcv.tools.cli import main
    code = main([str(a) for a in argv])
    return (code, *capsys.readouterr())
