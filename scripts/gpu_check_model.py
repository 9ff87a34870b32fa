"""gpu_check_model.py: the recipe's training step without a loader, on batches already on the device.

    python scripts/gpu_check_model.py --arch resnet18 --batch-size 1024 --res 160 --steps 30 --out model.json

train_imagenet.py's model (BlurPool as the rn18/rn50 configs), channels-last layout, SGD with momentum, AMP
with loss scaling and label smoothing: its `train_step`, fed one random uint8-range batch that stays on the
device. The figure is the GPU's ceiling for the recipe: what train_imagenet.py would reach with an infinitely
fast loader. gpu_check.py sets it beside the recipe's measured rate and the loader's alone (`ffcv bench`), so
that a shortfall against the published figure is attributed to the side that limits it. The first `--warmup`
steps (cuDNN's algorithm search, allocator growth) are not timed; the device is synchronised before each clock.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='resnet18', help='torchvision model name (default resnet18)')
    parser.add_argument('--batch-size', type=int, default=1024, help='images per step (default 1024)')
    parser.add_argument('--res', type=int, default=160, help='image side in pixels (default 160)')
    parser.add_argument('--steps', type=int, default=30, help='timed steps (default 30)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps first (default 5)')
    parser.add_argument('--out', type=Path, help='write the figures there as JSON (also printed)')
    args = parser.parse_args(argv)
    device = torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')
    figures = model_rate(args.arch, args.batch_size, args.res, args.steps, args.warmup, device)
    text = json.dumps(figures)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
