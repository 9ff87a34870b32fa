"""bench_imagenet_train.py: images/s of train_imagenet.py's training step on CPU, fed by our Loader or by a
torch DataLoader, on the same generated ImageNet-like data.

Data: `--images` photo-like images (benchmarks/data.py: 350-500 px, seeded), capped at 400 px. Ours reads them
from a .beton written with the rn18 preset (10% JPEG at quality 90, the rest raw; cached in --data-dir). The
torch DataLoader gets the same capped images as in-memory JPEG bytes (quality 90: what an ImageFolder of
JPEGs holds), decoded with PIL, then torchvision RandomResizedCrop + flip + PILToTensor + ConvertImageDtype +
Normalize in its worker processes (the torchvision reference recipe's transforms).

Both feed the same code of train_imagenet.py (build_model with BlurPool, param_groups, SGD, train_step, fp32 on
CPU, channels_last) at the same resolution, batch size and worker count (threads for ours, processes for
torch). A measurement times `--steps` steps after `--warmup` (loader start-up and compilation excluded);
systems alternate within each of `--repeats` rounds and medians are reported, for the training step and for
the loader alone (no model: the data ceiling).

    python benchmarks/bench_imagenet_train.py                       # JSON in bench_results/imagenet_train.json
    python benchmarks/bench_imagenet_train.py --res 64 --batch-size 64 --out bench_results/imagenet_train_64.json
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import io
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recipe = load('train_imagenet', ROOT / 'train_imagenet.py')
data = load('ffcv_bench_data', ROOT / 'benchmarks' / 'data.py')
MAX_SIDE = 400  # rn18 preset


# --- Data ---
def capped(image: np.ndarray) -> np.ndarray:
    """Longer side at most MAX_SIDE (INTER_AREA, as the writer does)."""
    height, width = image.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(image, (int(width * scale), int(height * scale)), interpolation=cv2.INTER_AREA)


def prepare(count: int, seed: int, data_dir: Path):
    """(path of our .beton, list of JPEG bytes, labels), generated once and cached."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    data_dir.mkdir(parents=True, exist_ok=True)
    beton, blobs_file = data_dir / f'imagenet_like_n{count}_s{seed}.beton', data_dir / f'jpeg_n{count}_s{seed}.npz'
    if not (beton.exists() and blobs_file.exists()):
        images = [capped(data.photo_image(i, seed)) for i in range(count)]
        labels = np.array([data.photo_label(i, seed) for i in range(count)])
        field = RGBImageField(write_mode='proportion', max_resolution=MAX_SIDE, compress_probability=0.1,
                              jpeg_quality=90)
        DatasetWriter(str(beton), {'image': field, 'label': IntField()}).from_indexed_dataset(
            data.InMemoryDataset(images, labels), progress=False)
        encoded = [cv2.imencode('.jpg', image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                   for image in images]
        offsets = np.cumsum([0] + [len(b) for b in encoded])
        np.savez(blobs_file, blob=np.frombuffer(b''.join(encoded), np.uint8), offsets=offsets, labels=labels)
    arrays = np.load(blobs_file)
    blob, offsets = arrays['blob'], arrays['offsets']
    return str(beton), [blob[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)], arrays['labels']


class JPEGDataset(torch.utils.data.Dataset):
    def __init__(self, blobs, labels, transform):
        self.blobs, self.labels, self.transform = blobs, labels, transform

    def __len__(self):
        return len(self.blobs)

    def __getitem__(self, index):
        from PIL import Image
        image = Image.open(io.BytesIO(self.blobs[index])).convert('RGB')
        return self.transform(image), int(self.labels[index])


def torch_loader(blobs, labels, res: int, batch_size: int, workers: int):
    from torchvision import transforms as T
    transform = T.Compose([T.RandomResizedCrop(res, antialias=True), T.RandomHorizontalFlip(), T.PILToTensor(),
                           T.ConvertImageDtype(torch.float32),
                           T.Normalize(recipe.IMAGENET_MEAN / 255, recipe.IMAGENET_STD / 255)])
    return torch.utils.data.DataLoader(JPEGDataset(blobs, labels, transform), batch_size=batch_size, shuffle=True,
                                       num_workers=workers, persistent_workers=True, drop_last=True)


def our_loader(path: str, res: int, batch_size: int, workers: int):
    process = recipe.Process(0, 0, 1, torch.device('cpu'))
    loader, _ = recipe.make_train_loader(path, batch_size, workers, True, res, process, seed=0)
    return loader


# --- Measurement ---
def batches(loader):
    while True:
        for images, labels in loader:
            yield images.contiguous(memory_format=torch.channels_last), labels


def measure(loader, arch: str, steps: int, warmup: int, train: bool) -> float:
    """images/s over `steps` steps (after `warmup`), with train_imagenet's training step or no model."""
    if train:
        torch.manual_seed(0)
        model = recipe.build_model(arch, False, True).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(recipe.param_groups(model, 5e-5), lr=0.01, momentum=0.9)
        scaler = torch.amp.GradScaler('cuda', enabled=False)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
        model.train()

        def step(images, labels):
            recipe.train_step(model, images, labels, optimizer, scaler, loss_fn, amp=False)
    else:
        def step(images, labels):
            pass
    stream, count = batches(loader), 0
    for _ in range(warmup):
        step(*next(stream))
    start = time.perf_counter()
    for _ in range(steps):
        images, labels = next(stream)
        step(images, labels)
        count += images.shape[0]
    elapsed = time.perf_counter() - start
    stream.close()
    return count / elapsed


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--images', type=int, default=1000)
    parser.add_argument('--arch', default='resnet18')
    parser.add_argument('--res', type=int, default=160, help='training side (px)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--workers', type=int, default=1, help='loader threads (ours) / processes (torch)')
    parser.add_argument('--torch-threads', type=int, default=1, help='intra-op threads of the model step')
    parser.add_argument('--steps', type=int, default=6)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--loader-steps', type=int, default=20, help='steps of the loader-only measurement')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--data-dir', type=Path, default=Path('/tmp/ffcv_bench_imagenet'))
    parser.add_argument('--out', type=Path, default=ROOT / 'bench_results' / 'imagenet_train.json')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    beton, blobs, labels = prepare(args.images, 0, args.data_dir)
    loaders = {'ours': our_loader(beton, args.res, args.batch_size, args.workers),
               'torch': torch_loader(blobs, labels, args.res, args.batch_size, args.workers)}
    results = {mode: {name: [] for name in loaders} for mode in ('train_step', 'loader_only')}
    for round_ in range(args.repeats):
        for mode, steps in (('train_step', args.steps), ('loader_only', args.loader_steps)):
            for name in (list(loaders) if round_ % 2 == 0 else list(loaders)[::-1]):
                rate = measure(loaders[name], args.arch, steps, args.warmup, train=mode == 'train_step')
                results[mode][name].append(rate)
                print(f'round {round_}: {mode:11s} {name:5s} {rate:8.1f} images/s', flush=True)
    rows = []
    for mode, systems in results.items():
        medians = {name: statistics.median(rates) for name, rates in systems.items()}
        rows.append({'mode': mode, **{f'{name}_images_per_s': round(m, 1) for name, m in medians.items()},
                     'ratio_ours_over_torch': round(medians['ours'] / medians['torch'], 3),
                     'all': {name: [round(r, 1) for r in rates] for name, rates in systems.items()}})
    report = {'meta': {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'machine': platform.platform(),
                       'cpus': os.cpu_count(), 'load_average': os.getloadavg(), 'torch': torch.__version__,
                       'torch_threads': args.torch_threads, 'workers': args.workers, 'arch': args.arch,
                       'res': args.res, 'batch_size': args.batch_size, 'images': args.images,
                       'steps': args.steps, 'warmup': args.warmup, 'repeats': args.repeats,
                       'statistic': 'median images/s over repeats'}, 'rows': rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    for row in rows:
        print(f"{row['mode']:11s} ours {row['ours_images_per_s']:8.1f}  torch {row['torch_images_per_s']:8.1f}  "
              f"ours/torch {row['ratio_ours_over_torch']:.2f}")
    return report


if __name__ == '__main__':
    main()
