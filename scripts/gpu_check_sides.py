"""gpu_check_sides.py: the two sides of train_imagenet.py apart, each as fast as it goes without the other.

    python scripts/gpu_check_sides.py model --batch-size 1024 --res 160 --steps 30 --out model.json
    python scripts/gpu_check_sides.py loader TRAIN.beton --batch-size 1024 --res 160 --workers 12 --out loader.json

``model``: the recipe's model (BlurPool as the rn18/rn50 configs), channels-last layout, SGD with momentum, AMP
with loss scaling and label smoothing: its `train_step`, fed one random batch that stays on the device. The
first `--warmup` steps (cuDNN's algorithm search, allocator growth) are not timed.

``loader``: the recipe's train loader (`make_train_loader`: RandomResizedCrop, flip, ToDevice, normalisation)
iterated for `--epochs` epochs with nothing else to do; the device is synchronised after every batch, so a
batch counts once its copy has landed. The first epoch compiles and starts the workers; the others give the
figure, as for the recipe.

gpu_check.py sets both beside the recipe's measured rate, so that a shortfall against the published figure is
attributed to the side that limits it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train_imagenet  # noqa: E402  (the recipe, at the repository root)


def model_rate(arch: str, batch_size: int, res: int, steps: int, warmup: int, device: torch.device) -> dict:
    """Images per second of `steps` timed training steps on one fixed batch that lives on `device`."""
    amp = device.type == 'cuda'
    torch.backends.cudnn.benchmark = True  # as the recipe
    model = train_imagenet.build_model(arch, False, True).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(train_imagenet.param_groups(model, 5e-5), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler('cuda', enabled=amp)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator(device='cpu').manual_seed(0)
    images = (torch.randint(0, 256, (batch_size, 3, res, res), generator=generator).float() - 128) / 64
    images = images.to(device).contiguous(memory_format=torch.channels_last)
    if amp:
        images = images.half()  # what the loader's pipeline delivers (NormalizeImage to float16)
    labels = torch.randint(0, 1000, (batch_size,), generator=generator).to(device)
    model.train()
    losses = []
    for _ in range(warmup):
        losses.append(train_imagenet.train_step(model, images, labels, optimizer, scaler, loss_fn, amp))
    if amp:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        losses.append(train_imagenet.train_step(model, images, labels, optimizer, scaler, loss_fn, amp))
    if amp:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    values = [float(loss) for loss in losses]
    if not all(value == value for value in values):  # NaN
        raise RuntimeError(f'a training step gave a NaN loss: {values}')
    return {'arch': arch, 'device': str(device), 'amp': amp, 'batch_size': batch_size, 'resolution': res,
            'steps': steps, 'warmup_steps': warmup, 'timed_seconds': seconds,
            'images_per_s': steps * batch_size / seconds, 'first_loss': values[0], 'last_loss': values[-1]}


def loader_rate(path: str, batch_size: int, res: int, workers: int, epochs: int, device: torch.device) -> dict:
    """Images per second of the recipe's train loader alone, per epoch; the figure is that of epochs 2 on."""
    process = train_imagenet.Process(0, 0, 1, device)
    loader, _ = train_imagenet.make_train_loader(path, batch_size, workers, True, res, process, seed=0)
    rates = []
    for _ in range(epochs):
        images, started = 0, time.perf_counter()
        for batch_images, labels in loader:
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            images += labels.shape[0]
        rates.append(images / (time.perf_counter() - started))
    if tuple(batch_images.shape[1:]) != (3, res, res) or batch_images.device != device:
        raise RuntimeError(f'the loader gave {tuple(batch_images.shape)} on {batch_images.device}')
    steady = rates[1:] or rates
    return {'file': path, 'device': str(device), 'batch_size': batch_size, 'resolution': res, 'workers': workers,
            'epochs': epochs, 'images_per_epoch': images, 'epoch_images_per_s': rates,
            'images_per_s': sum(steady) / len(steady)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sides = parser.add_subparsers(dest='side', required=True)
    for side in ('model', 'loader'):
        sub = sides.add_parser(side, help=f'the {side} alone')
        if side == 'loader':
            sub.add_argument('train_file', help='a train .beton (image, label) as write_imagenet.py writes')
            sub.add_argument('--workers', type=int, default=12, help='loader threads (default 12, as the configs)')
            sub.add_argument('--epochs', type=int, default=3, help='epochs; the first is not counted (default 3)')
        else:
            sub.add_argument('--arch', default='resnet18', help='torchvision model name (default resnet18)')
            sub.add_argument('--steps', type=int, default=30, help='timed steps (default 30)')
            sub.add_argument('--warmup', type=int, default=5, help='untimed steps first (default 5)')
        sub.add_argument('--batch-size', type=int, default=1024, help='images per step (default 1024)')
        sub.add_argument('--res', type=int, default=160, help='image side in pixels (default 160)')
        sub.add_argument('--out', type=Path, help='write the figures there as JSON (also printed)')
    args = parser.parse_args(argv)
    device = torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')
    if args.side == 'model':
        figures = model_rate(args.arch, args.batch_size, args.res, args.steps, args.warmup, device)
    else:
        figures = loader_rate(args.train_file, args.batch_size, args.res, args.workers, args.epochs, device)
    text = json.dumps(figures)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
