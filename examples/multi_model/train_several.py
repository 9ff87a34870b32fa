"""train_several.py: train several models from one loader, against training them one after another.

FFCV's "training multiple models per GPU" on a CPU: every batch is loaded and augmented once and used by
each of `--models` small CNNs (same architecture, a different learning rate each, as in a sweep). The
baseline trains the same models one after another, each with its own pass over the data. Same data, same
seeds, same number of steps: only the loading is shared or not.

Measured on a 2-core CPU (docs/multiple-models.md has the table):
    python examples/multi_model/train_several.py                     # 4 models, 4,000 images, 2 epochs
    python examples/multi_model/train_several.py --models 8 --threads 2 --json result.json

The data: the embedded 10-class task (crops of scikit-image's photographs, `ffcv.datasets.embedded`) at
96 px, stored as JPEG; the pipeline is RandomResizedCrop to 64 px + flip, as an ImageNet-style loader.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch
from torch import nn

from ffcv.datasets.embedded import make_arrays
from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToTensor, ToTorchImage
from ffcv.writer import DatasetWriter

MEAN = torch.tensor([125.0, 123.0, 114.0]).view(1, 3, 1, 1)  # per channel, 0-255 scale
STD = torch.tensor([63.0, 62.0, 67.0]).view(1, 3, 1, 1)


# --- Data ---
def write_data(folder: str, train_size: int, test_size: int) -> tuple:
    """train/test .beton files of the embedded task: 96-px JPEGs (quality 90) + labels."""
    paths = []
    for split, count in (('train', train_size), ('test', test_size)):
        images, labels = make_arrays(split, count, seed=0, size=96)
        path = os.path.join(folder, f'{split}.beton')
        DatasetWriter(path, {'image': RGBImageField(write_mode='jpg', jpeg_quality=90), 'label': IntField()},
                      num_workers=2).from_indexed_dataset(list(zip(images, labels)), progress=False)
        paths.append(path)
    return tuple(paths)


def make_loader(path: str, train: bool, threads: int, batch_size: int = 128) -> Loader:
    decoder = RandomResizedCropRGBImageDecoder((64, 64)) if train else CenterCropRGBImageDecoder((64, 64), 1.0)
    image = [decoder] + ([RandomHorizontalFlip()] if train else []) + [ToTensor(), ToTorchImage()]
    return Loader(path, batch_size=batch_size, num_workers=threads, seed=0, drop_last=train,
                  order=OrderOption.RANDOM if train else OrderOption.SEQUENTIAL,
                  pipelines={'image': image, 'label': [IntDecoder(), ToTensor(), Squeeze()]})


# --- Model ---
def small_cnn() -> nn.Module:
    """(B, 3, 64, 64) float -> (B, 10) logits; 0.8 M multiply-adds per image: small enough that loading
    a batch costs about as much as a training step on it, the case where sharing the loader pays."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),      # 64 -> 32 px
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),    # 32 -> 16 px
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),   # 16 -> 8 px
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class Trainee:
    """One model with its optimizer: `step` trains it on a batch."""

    def __init__(self, lr: float, seed: int = 0):
        torch.manual_seed(seed)
        self.lr = lr
        self.model = small_cnn()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                                         weight_decay=5e-4)

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.model.train()
        loss = nn.functional.cross_entropy(self.model((images.float() - MEAN) / STD), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def accuracy(self, loader: Loader) -> float:
        self.model.eval()
        correct = seen = 0
        with torch.no_grad():
            for images, labels in loader:
                correct += (self.model((images.float() - MEAN) / STD).argmax(1) == labels).sum().item()
                seen += len(labels)
        return correct / seen


# --- Train: shared loader, or one after another ---
def train_shared(loader: Loader, trainees: list, epochs: int) -> float:
    """Seconds to train every model on each batch of one loader."""
    start = time.perf_counter()
    for _ in range(epochs):
        for images, labels in loader:
            for trainee in trainees:
                trainee.step(images, labels)
    return time.perf_counter() - start


def train_one_after_another(loader: Loader, trainees: list, epochs: int) -> float:
    """Seconds to train the models in turn, each with its own passes over the data (same batches)."""
    start = time.perf_counter()
    for trainee in trainees:
        loader.load_state_dict({**loader.state_dict(), 'epoch': 0, 'batches_served': 0})  # same batches
        for _ in range(epochs):
            for images, labels in loader:
                trainee.step(images, labels)
    return time.perf_counter() - start


def loading_only(loader: Loader, epochs: int) -> float:
    start = time.perf_counter()
    for _ in range(epochs):
        for _batch in loader:
            pass
    return time.perf_counter() - start


# --- Main ---
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', type=int, default=4, help='models trained (default 4)')
    parser.add_argument('--images', type=int, default=4000, help='training images (default 4000)')
    parser.add_argument('--test-images', type=int, default=1000)
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=3,
                        help='rounds of (one after another, shared); the fastest of each is reported, since '
                             'other programs on a shared machine only ever slow a round down (default 3)')
    parser.add_argument('--threads', type=int, default=2, help='loader threads and torch threads (default 2)')
    parser.add_argument('--json', help='also write the result to this file')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    learning_rates = [0.4 / 2 ** k for k in range(args.models)]   # a sweep: 0.4, 0.2, 0.1, ...
    times = {'loading_only_s': [], 'one_after_another_s': [], 'shared_loader_s': []}
    with tempfile.TemporaryDirectory() as folder:
        train_path, test_path = write_data(folder, args.images, args.test_images)
        train_loader = make_loader(train_path, True, args.threads)
        test_loader = make_loader(test_path, False, args.threads)
        loading_only(train_loader, 1)                                # compile and warm the page cache
        warm_up = Trainee(0.1)                                       # torch's first steps are slower
        for images, labels in train_loader:
            warm_up.step(images, labels)
        for _ in range(args.repeats):  # alternate the two ways, so a busy moment of the machine hits both
            times['loading_only_s'].append(loading_only(train_loader, args.epochs))
            sequential = [Trainee(lr) for lr in learning_rates]
            times['one_after_another_s'].append(train_one_after_another(train_loader, sequential, args.epochs))
            shared = [Trainee(lr) for lr in learning_rates]
            train_loader.load_state_dict({**train_loader.state_dict(), 'epoch': 0, 'batches_served': 0})
            times['shared_loader_s'].append(train_shared(train_loader, shared, args.epochs))
        result = {'models': args.models, 'images': args.images, 'epochs': args.epochs, 'threads': args.threads,
                  'repeats': args.repeats, 'runs': times, **{k: min(v) for k, v in times.items()},
                  'learning_rates': learning_rates,
                  'test_accuracy_shared': [t.accuracy(test_loader) for t in shared],
                  'test_accuracy_one_after_another': [t.accuracy(test_loader) for t in sequential]}
    result['speedup'] = result['one_after_another_s'] / result['shared_loader_s']
    print(f"{args.models} models, {args.images:,} images x {args.epochs} epochs, {args.threads} threads "
          f"(fastest of {args.repeats} rounds):")
    print(f"  loading alone:              {result['loading_only_s']:6.1f} s")
    print(f"  one after another:          {result['one_after_another_s']:6.1f} s")
    print(f"  one loader for all models:  {result['shared_loader_s']:6.1f} s  ({result['speedup']:.2f}x faster)")
    for name in ('shared', 'one_after_another'):
        accuracies = ', '.join(f'lr {lr:g}: {a:.0%}' for lr, a in zip(learning_rates, result[f'test_accuracy_{name}']))
        print(f"  test accuracy ({name.replace('_', ' ')}): {accuracies}")
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == '__main__':
    main()
