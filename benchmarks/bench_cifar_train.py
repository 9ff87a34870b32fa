"""bench_cifar_train.py: images/s of train_cifar.py's training step on CPU, fed by our Loader or by a torch
DataLoader, on the same data (the embedded 10-class 32x32 dataset, 5,000 images).

Ours: train_cifar.make_loaders (flip + translate(2) + cutout(4) + normalize, RANDOM order). Torch: a Dataset
over the same images held in memory, with torchvision RandomHorizontalFlip + RandomCrop(32, padding=2,
fill=mean) + a 4x4 cutout + ToTensor-style conversion + Normalize, in `--workers` worker processes
(persistent). Both feed the same model and step (ResNet-9, SGD, label smoothing, fp32, channels_last) with the
same batch size. Each measurement times `--steps` steps after `--warmup`; the two alternate within each of
`--repeats` rounds; medians are reported for the training step and for the loader alone (no model).

    python benchmarks/bench_cifar_train.py            # JSON in bench_results/cifar_train.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2 as T

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('train_cifar', ROOT / 'train_cifar.py')
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)


class TorchCifar(torch.utils.data.Dataset):
    """The same images, augmented per sample with torchvision (what a torch user would write)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels)
        fill = [int(v) for v in recipe.CIFAR_MEAN]
        self.augment = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32, padding=2, fill=fill)])
        self.normalize = T.Normalize(recipe.CIFAR_MEAN, recipe.CIFAR_STD)
        self.fill = torch.tensor(fill, dtype=torch.uint8)[:, None, None]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = self.augment(self.images[index]).clone()
        top, left = np.random.randint(0, 29, size=2)
        image[:, top:top + 4, left:left + 4] = self.fill          # cutout(4), inside the image
        return self.normalize(image.float()), self.labels[index]


def torch_loader(batch_size: int, workers: int):
    from ffcv.datasets.embedded import make_arrays
    images, labels = make_arrays('train', 5000)
    return torch.utils.data.DataLoader(TorchCifar(images, labels), batch_size=batch_size, shuffle=True,
                                       drop_last=True, num_workers=workers, persistent_workers=True)


def ffcv_loader(batch_size: int, workers: int):
    s = {'data.train_dataset': '', 'data.val_dataset': '', 'data.embedded_train_size': 5000,
         'data.embedded_test_size': 1000, 'training.batch_size': batch_size, 'data.num_workers': workers,
         'training.seed': 0}
    train, _ = recipe.make_loaders(s, torch.device('cpu'), recipe.CIFAR_MEAN, recipe.CIFAR_STD)
    return train


def batches(loader):
    """Endless batches across epochs."""
    while True:
        yield from loader


def measure(loader, steps: int, warmup: int, model=None) -> float:
    """images/s over `steps` batches (a training step on each when a model is given)."""
    stream = batches(loader)
    if model is not None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    seen, start = 0, None
    for step in range(warmup + steps):
        if step == warmup:
            start, seen = time.perf_counter(), 0
        images, labels = next(stream)
        if model is not None:
            loss = loss_fn(model(images.contiguous(memory_format=torch.channels_last)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seen += labels.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--workers', type=int, default=os.cpu_count())
    parser.add_argument('--steps', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--loader-steps', type=int, default=30)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', default='bench_results/cifar_train.json')
    args = parser.parse_args()
    loaders = {'ffcv': ffcv_loader(args.batch_size, args.workers), 'torch': torch_loader(args.batch_size, args.workers)}
    results = {name: {'train_step': [], 'loader_only': []} for name in loaders}
    for _ in range(args.repeats):
        for name, loader in loaders.items():
            torch.manual_seed(0)
            model = recipe.resnet9().to(memory_format=torch.channels_last)
            results[name]['train_step'].append(measure(loader, args.steps, args.warmup, model))
            results[name]['loader_only'].append(measure(loader, args.loader_steps, args.warmup))
    summary = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    print(f"{'':12} {'train step img/s':>18} {'loader only img/s':>18}")
    for name, values in summary.items():
        print(f"{name:12} {values['train_step']:18.1f} {values['loader_only']:18.0f}")
    print(f"{'ffcv/torch':12} {summary['ffcv']['train_step'] / summary['torch']['train_step']:17.2f}x "
          f"{summary['ffcv']['loader_only'] / summary['torch']['loader_only']:17.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({'args': vars(args), 'runs': results, 'median': summary,
                                          'torch': torch.__version__, 'cpus': os.cpu_count(),
                                          'load_average': os.getloadavg()}, indent=2))
    print(f'results written to {args.out}')


if __name__ == '__main__':
    main()
