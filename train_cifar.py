"""train_cifar.py: ResNet-9 on CIFAR-10 with ffcv loaders (FFCV's examples/cifar recipe).

Published by FFCV: 93% top-1 in 36 s on one A100 (24 epochs, batch 512). Our measured figures are in
examples/cifar/README.md, each from a logged run.

    python train_cifar.py                                   # embedded 10-class dataset, CPU, a few minutes
    python examples/cifar/write_cifar.py --root /data/cifar --out /data/cifar_beton
    python train_cifar.py --config-file examples/cifar/cifar.yaml \
        --data.train_dataset=/data/cifar_beton/train.beton --data.val_dataset=/data/cifar_beton/test.beton

Any parameter can be overridden with --section.key=value; --training.resume=RUN/checkpoint.pt continues a run
exactly where it stopped (mid-epoch included). FFCV's own examples/cifar/default_config.yaml loads unchanged.
"""
from __future__ import annotations

import time
import uuid
import warnings
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torchvision
from fastargs import Config, Param, Section
from torch import nn

from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.runs.config import Boolean, ConfigError, Settings, config_dict, parse_config, settings_of
from ffcv.runs.console import EpochProgress, announce, run_as_program
from ffcv.runs.run_log import RunLogger, atomic_save, load_checkpoint
from ffcv.runs.stop import StopOnSignal
from ffcv.transforms import (Convert, Cutout, ModuleWrapper, RandomHorizontalFlip, RandomTranslate, Squeeze, ToDevice,
                             ToTensor, ToTorchImage)

# --- Config ---
# The defaults are the embedded run on a CPU (what a plain `python train_cifar.py` does); FFCV's published
# recipe for CIFAR-10 on a GPU is examples/cifar/cifar.yaml (batch 512, 24 epochs, peak LR 0.5 at epoch 5).
CONFIG = Config()
Section('data', 'datasets', config_descriptor=CONFIG).params(
    train_dataset=Param(str, 'train .beton (empty: build the embedded dataset)', default=''),
    val_dataset=Param(str, 'test .beton (empty: the embedded test split)', default=''),
    num_workers=Param(int, 'loader threads (-1: all CPUs), unless training.num_workers is set', default=-1),
    gpu=Param(int, 'CUDA device index when training.device is cuda (or auto on a GPU machine)', default=0),
    embedded_train_size=Param(int, 'samples of the embedded train split', default=5000),
    embedded_test_size=Param(int, 'samples of the embedded test split', default=1000))
Section('training', 'optimisation', config_descriptor=CONFIG).params(
    batch_size=Param(int, 'samples per step', default=128),
    epochs=Param(int, 'passes over the train set', default=5),
    lr=Param(float, 'peak learning rate', default=0.2),
    lr_peak_epoch=Param(float, 'epoch at which the triangular schedule peaks', default=1.5),
    momentum=Param(float, 'SGD momentum', default=0.9),
    weight_decay=Param(float, 'L2 weight decay (all parameters)', default=5e-4),
    label_smoothing=Param(float, 'cross-entropy label smoothing', default=0.1),
    lr_tta=Param(Boolean(), 'test-time augmentation: add the logits of the flipped image', default=True),
    seed=Param(int, 'seed of the order, the augmentations and the model init', default=0),
    device=Param(str, "'auto' (cuda if available), 'cuda', 'cpu'", default='auto'),
    num_workers=Param(int, "FFCV's name for the loader threads: when set it replaces data.num_workers (FFCV's "
                           'script read only this one)', default=None),
    max_steps=Param(int, 'stop after this many steps in total (0: no limit; for smoke tests)', default=0),
    checkpoint_every=Param(int, 'also checkpoint every N steps (0: only at the end of each epoch)', default=0),
    resume=Param(str, 'checkpoint to continue from', default=''))
Section('logging', 'outputs', config_descriptor=CONFIG).params(
    folder=Param(str, 'parent folder of the run folders', default='runs/cifar'),
    run_name=Param(str, 'run folder name (default: a fresh id)', default=''),
    wandb=Param(Boolean(), 'also log to Weights & Biases', default=False),
    wandb_project=Param(str, 'wandb project', default='ffcv-cifar'))

# Mean / std of CIFAR-10 on the 0-255 scale (FFCV's constants), used as the cutout/translate fill too.
CIFAR_MEAN, CIFAR_STD = [125.307, 122.961, 113.8575], [51.5865, 50.847, 51.255]


# --- Data ---
def pick_device(name: str, gpu: int) -> torch.device:
    """training.device ('auto': cuda if available), with data.gpu as the CUDA index (FFCV's data.gpu)."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device('cuda', gpu) if name == 'cuda' else torch.device(name)


def loader_threads(data_workers: int, ffcv_workers: Optional[int]) -> int:
    """data.num_workers, or FFCV's training.num_workers when that is set (FFCV read only that key); a
    different explicit data.num_workers beside it is reported, not dropped silently."""
    if ffcv_workers is None:
        return data_workers
    if data_workers not in (-1, ffcv_workers):
        warnings.warn(f'data.num_workers={data_workers} is ignored: training.num_workers={ffcv_workers} '
                      "(FFCV's key) is set and wins", stacklevel=2)
    return ffcv_workers


def dataset_paths(data: Settings) -> tuple:
    """(train, test) .beton paths: the configured ones, or the embedded dataset (built once, then cached)."""
    if data.train_dataset:
        if not data.val_dataset:
            raise ConfigError('data.val_dataset is required with data.train_dataset')
        return data.train_dataset, data.val_dataset
    from ffcv.datasets.embedded import embedded_cifar
    return embedded_cifar(train_size=data.embedded_train_size, test_size=data.embedded_test_size)


def make_loader(path: str, train: bool, s: Settings, device: torch.device, mean, std) -> Loader:
    fill = tuple(int(v) for v in mean)
    augment = [RandomHorizontalFlip(), RandomTranslate(padding=2, fill=fill), Cutout(4, fill=fill)] if train else []
    on_gpu = [ToDevice(device, non_blocking=True)] if device.type == 'cuda' else []
    dtype = torch.float16 if device.type == 'cuda' else torch.float32
    image = [SimpleRGBImageDecoder(), *augment, ToTensor(), *on_gpu, ToTorchImage(), Convert(dtype),
             ModuleWrapper(torchvision.transforms.Normalize(mean, std))]
    label = [IntDecoder(), ToTensor(), *on_gpu, Squeeze()]
    return Loader(path, batch_size=s.training.batch_size,
                  num_workers=loader_threads(s.data.num_workers, s.training.num_workers),
                  order=OrderOption.RANDOM if train else OrderOption.SEQUENTIAL, drop_last=train,
                  seed=s.training.seed, pipelines={'image': image, 'label': label})


# --- Model ---
def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def resnet9(num_classes: int = 10) -> nn.Module:
    """FFCV's ResNet-9 (KakaoBrain torchskeleton variant), 2,274,880 parameters for 10 classes."""
    return nn.Sequential(
        conv_bn(3, 64),                                                  # (B,3,32,32) -> (B,64,32,32)
        conv_bn(64, 128, kernel=5, stride=2, padding=2),                 # -> (B,128,16,16)
        Residual(nn.Sequential(conv_bn(128, 128), conv_bn(128, 128))),
        conv_bn(128, 256),                                               # -> (B,256,16,16)
        nn.MaxPool2d(2),                                                 # -> (B,256,8,8)
        Residual(nn.Sequential(conv_bn(256, 256), conv_bn(256, 256))),
        conv_bn(256, 128, padding=0),                                    # -> (B,128,6,6)
        nn.AdaptiveMaxPool2d((1, 1)), nn.Flatten(),                      # -> (B,128)
        nn.Linear(128, num_classes, bias=False), Scale(0.2))


# --- Optimizer & schedule ---
def lr_multiplier(step: int, steps_per_epoch: int, epochs: float, peak_epoch: float) -> float:
    """Triangular schedule, per iteration: 0 at step 0, 1 at `peak_epoch`, 0 at the end (FFCV's rule)."""
    return float(np.interp(step, [0, peak_epoch * steps_per_epoch, epochs * steps_per_epoch], [0, 1, 0]))


# --- Train / eval loops ---
def evaluate(model: nn.Module, loader, tta: bool, amp: bool) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad(), torch.autocast('cuda', enabled=amp):
        for images, labels in loader:
            logits = model(images)
            if tta:
                logits = logits + model(torch.flip(images, dims=[3]))  # flip the width axis of (B,C,H,W)
            correct += (logits.argmax(1) == labels).sum().item()
            total += labels.shape[0]
    return correct / max(total, 1)


def checkpoint(logger: RunLogger, step: int, loader: Loader, s: Settings, **parts) -> None:
    """Model, optimizer, schedule and scaler states with the loader's position, written atomically."""
    atomic_save({**{name: part.state_dict() for name, part in parts.items()}, 'loader': loader.state_dict(),
                 'step': step, 'settings': s.as_dict()}, logger.file('checkpoint.pt'))


def resume(path: str, loader: Loader, **parts) -> int:
    """Restore what `checkpoint` saved (in place); returns the step to continue from."""
    saved = load_checkpoint(path, 'training.resume', needs=(*parts, 'loader', 'step'))
    for name, part in parts.items():
        part.load_state_dict(saved[name])
    loader.load_state_dict(saved['loader'])
    return saved['step']


def print_epoch(record: dict) -> None:
    print(f"epoch {record['epoch']}: loss {record['train_loss']:.3f} train acc {record['train_acc']:.3f} "
          f"test acc {record['test_acc']:.3f} ({record['images_per_s']:.0f} images/s)", flush=True)


def train(s: Settings, logger: RunLogger, folder: Path) -> dict:
    device = pick_device(s.training.device, s.data.gpu)
    amp = device.type == 'cuda'
    if amp:
        torch.cuda.set_device(device)
    torch.manual_seed(s.training.seed)
    train_path, test_path = dataset_paths(s.data)
    train_loader = make_loader(train_path, True, s, device, CIFAR_MEAN, CIFAR_STD)
    test_loader = make_loader(test_path, False, s, device, CIFAR_MEAN, CIFAR_STD)
    model = resnet9().to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=s.training.lr, momentum=s.training.momentum,
                                weight_decay=s.training.weight_decay)
    steps_per_epoch, epochs = len(train_loader), s.training.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(
        step, steps_per_epoch, epochs, s.training.lr_peak_epoch))
    scaler = torch.amp.GradScaler('cuda', enabled=amp)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=s.training.label_smoothing)
    parts = {'model': model, 'optimizer': optimizer, 'schedule': schedule, 'scaler': scaler}
    step = resume(s.training.resume, train_loader, **parts) if s.training.resume else 0
    save = partial(checkpoint, logger, loader=train_loader, s=s, **parts)
    announce('train_cifar.py', {'train': train_loader, 'val': test_loader}, device, folder)

    with StopOnSignal() as stop:
        for epoch in range(train_loader.state_dict()['epoch'], epochs):
            model.train()
            epoch_start, seen, loss_sum, correct, reason = time.time(), 0, 0.0, 0, None
            done = train_loader.state_dict()['batches_served']  # > 0 in a resumed epoch
            with EpochProgress(epoch, steps_per_epoch, done) as progress:
                for images, labels in train_loader:
                    lr = optimizer.param_groups[0]['lr']  # this step's LR (the schedule moves it after the step)
                    with torch.autocast('cuda', enabled=amp):
                        logits = model(images)
                        loss = loss_fn(logits, labels)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    schedule.step()
                    step, loss_value = step + 1, loss.item()
                    seen += labels.shape[0]
                    loss_sum += loss_value * labels.shape[0]
                    correct += (logits.argmax(1) == labels).sum().item()
                    logger.log_step(step, lr=lr, loss=loss_value)
                    progress.update(labels.shape[0], loss_sum, seen)
                    # bookkeeping: checkpoints, and stopping after this step (max_steps, SIGTERM, Ctrl-C)
                    if s.training.checkpoint_every and step % s.training.checkpoint_every == 0:
                        save(step)
                    reason = 'max_steps' if s.training.max_steps and step >= s.training.max_steps else stop.reason
                    if reason:
                        save(step)
                        break
            if reason:
                print(f'stopped ({reason}) at step {step}; resume with '
                      f'--training.resume={folder / "checkpoint.pt"}', flush=True)
                return {'stopped_at_step': step, 'checkpoint': str(folder / 'checkpoint.pt')}
            train_time = time.time() - epoch_start
            save(step)
            record = {'epoch': epoch, 'step': step, 'train_loss': loss_sum / max(seen, 1),
                      'train_acc': correct / max(seen, 1),
                      'test_acc': evaluate(model, test_loader, s.training.lr_tta, amp),
                      'lr': optimizer.param_groups[0]['lr'], 'images_per_s': seen / max(train_time, 1e-9),
                      'epoch_time_s': train_time}
            logger.log(record)
            print_epoch(record)
    return {'test_acc': evaluate(model, test_loader, s.training.lr_tta, amp), 'steps': step,
            'device': str(device)}


# --- Main ---
def main(argv=None) -> dict:
    parse_config(CONFIG, argv, __doc__)
    s = settings_of(CONFIG)
    resumed = Path(s.training.resume).parent if s.training.resume else None
    folder = resumed or Path(s.logging.folder) / (s.logging.run_name or uuid.uuid4().hex[:12])
    logger = RunLogger(folder, config_dict(CONFIG), use_wandb=s.logging.wandb, wandb_project=s.logging.wandb_project,
                       run_name=s.logging.run_name or None)
    start = time.time()
    summary = train(s, logger, folder)
    summary['total_time_s'] = round(time.time() - start, 2)
    logger.finish(summary)
    print(f"run folder: {folder}\n" + ', '.join(f'{k}: {v}' for k, v in summary.items()), flush=True)
    return summary


if __name__ == '__main__':
    run_as_program(main)
