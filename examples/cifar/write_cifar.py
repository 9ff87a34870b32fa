"""Write CIFAR-10 to train/test .beton files (raw 32x32 RGBImageField + IntField, as FFCV's recipe does).

    python examples/cifar/write_cifar.py --root /data/cifar --out /data/cifar_beton
    python examples/cifar/write_cifar.py --root /data/cifar --out /data/cifar_beton --download

`--root` is a torchvision CIFAR10 root (it holds `cifar-10-batches-py/`) or that batch folder itself
(data_batch_1..5 and test_batch, the standard python pickles). Nothing is downloaded unless --download is
given, so it works offline when the files are there.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

from ffcv.fields import IntField, RGBImageField
from ffcv.writer import DatasetWriter

SPLITS = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}


def find_batches(root: Path) -> Path:
    """The folder holding the pickled batches, given a torchvision root or the folder itself."""
    for folder in (root, root / 'cifar-10-batches-py'):
        if all((folder / name).exists() for names in SPLITS.values() for name in names):
            return folder
    raise FileNotFoundError(f'no CIFAR-10 python batches (data_batch_1..5, test_batch) in {root} or '
                            f'{root / "cifar-10-batches-py"}; pass --download to fetch them with torchvision')


def load_split(folder: Path, split: str):
    """(images (N, 32, 32, 3) uint8, labels (N,) int64) of a split."""
    images, labels = [], []
    for name in SPLITS[split]:
        with open(folder / name, 'rb') as handle:
            batch = pickle.load(handle, encoding='latin1')
        images.append(np.asarray(batch['data'], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(batch['labels'], np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', required=True, type=Path, help='torchvision CIFAR10 root or batch folder')
    parser.add_argument('--out', required=True, type=Path, help='output folder for train.beton and test.beton')
    parser.add_argument('--download', action='store_true', help='download with torchvision if missing')
    parser.add_argument('--num-workers', type=int, default=-1)
    args = parser.parse_args(argv)
    if args.download:
        import torchvision
        for train in (True, False):
            torchvision.datasets.CIFAR10(str(args.root), train=train, download=True)
    try:
        folder = find_batches(args.root)
    except FileNotFoundError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        images, labels = load_split(folder, split)
        writer = DatasetWriter(str(args.out / f'{split}.beton'), {'image': RGBImageField(), 'label': IntField()},
                               num_workers=args.num_workers)
        writer.from_indexed_dataset(list(zip(images, labels)))
        print(f'{split}: {len(labels)} images -> {args.out / f"{split}.beton"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
