"""train_imagenet.py: ResNet-18 / ResNet-50 on ImageNet with ffcv loaders (the ffcv-imagenet recipe).

Published by FFCV (every config states its own row on its first line): rn50 88 epochs 78.4% top-1 in 77.2 min
on 8 A100s, rn18 16 epochs 66.9% in 35.0 min on one A100. Our measured rows are in examples/imagenet/README.md,
each from a logged run (none yet).

    python examples/imagenet/write_imagenet.py --root /data/imagenet --out /data/ffcv --preset rn50
    torchrun --nproc_per_node=8 train_imagenet.py --config-file rn50_configs/rn50_88_epochs.yaml \
        --data.train_dataset=/data/ffcv/train_500_0.50_90.beton --data.val_dataset=/data/ffcv/val_500_0.50_90.beton \
        --data.num_workers=12 --data.in_memory=1 --logging.folder=runs/imagenet
    python train_imagenet.py --config-file rn18_configs/rn18_16_epochs.yaml --data.train_dataset=... (1 GPU)
    python train_imagenet.py ... --training.eval_only=true --training.checkpoint=RUN/final_weights.pt

Batch sizes are per process (GPU); lr.lr is the peak LR of the config's global batch (batch x dist.world_size),
and a launch with another number of processes is refused unless --dist.world_size says so (then scale lr.lr
linearly, see examples/imagenet/README.md). Several nodes: torchrun's --nnodes/--node_rank/--rdzv_* arguments.
ffcv-imagenet's own YAML files work unchanged: with training.distributed=1 a plain `python` launch starts
dist.world_size processes itself (rendezvous at dist.address:dist.port), as ffcv-imagenet did.
--training.resume=RUN/checkpoint.pt continues a stopped run mid-epoch; SIGTERM or Ctrl-C checkpoints and exits.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision
from fastargs import Config, Param, Section
from fastargs.validation import OneOf
from torch import nn

from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.reader import Reader
from ffcv.runs.config import Boolean, ConfigError, Settings, config_dict, parse_config, settings_of
from ffcv.runs.console import EpochProgress, announce, run_as_program
from ffcv.runs.run_log import RunLogger, atomic_save, load_checkpoint
from ffcv.runs.stop import StopOnSignal
from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToDevice, ToTensor, ToTorchImage

# --- Config ---
CONFIG = Config()
Section('model', 'network', config_descriptor=CONFIG).params(
    arch=Param(str, 'torchvision.models classification builder (resnet18, resnet50, ...)', default='resnet18'),
    pretrained=Param(Boolean(), "start from torchvision's pretrained weights", default=False))
Section('resolution', 'progressive resizing of the training images', config_descriptor=CONFIG).params(
    min_res=Param(int, 'side (px) until start_ramp', default=160),
    max_res=Param(int, 'side (px) from end_ramp on', default=160),
    start_ramp=Param(int, 'last epoch (0-based) at min_res', default=0),
    end_ramp=Param(int, 'first epoch at max_res', default=0))
Section('data', 'datasets', config_descriptor=CONFIG).params(
    train_dataset=Param(str, 'train .beton (needed unless training.eval_only)', default=''),
    val_dataset=Param(str, 'validation .beton', required=True),
    num_workers=Param(int, 'loader threads per process (< 1: every CPU)', required=True),
    in_memory=Param(Boolean(), 'true: map the train file in the OS page cache; false: stream it in '
                               'QUASI_RANDOM order (bounded memory)', required=True),
    gpu=Param(int, 'CUDA device of a single-process run (several processes: each uses its local rank)', default=0))
Section('lr', 'per-iteration learning-rate schedule', config_descriptor=CONFIG).params(
    lr_schedule_type=Param(OneOf(['cyclic', 'step']), 'cyclic: linear up to lr_peak_epoch, linear down to 0; '
                                                       'step: multiply by step_ratio every step_length epochs',
                           default='cyclic'),
    lr=Param(float, 'peak LR for the global batch (training.batch_size x dist.world_size)', default=0.5),
    lr_peak_epoch=Param(int, 'cyclic: epoch of the peak', default=2),
    step_ratio=Param(float, 'step: factor per step', default=0.1),
    step_length=Param(int, 'step: epochs per step', default=30))
Section('logging', 'outputs (rank 0 only)', config_descriptor=CONFIG).params(
    folder=Param(str, 'parent folder of the run folders', required=True),
    log_level=Param(int, '0: validate only at the end; 1: validate and log after every epoch', default=1),
    run_name=Param(str, 'run folder name (default: a fresh id)', default=''),
    wandb=Param(Boolean(), 'also log to Weights & Biases', default=False),
    wandb_project=Param(str, 'wandb project', default='ffcv-imagenet'))
Section('validation', 'evaluation', config_descriptor=CONFIG).params(
    batch_size=Param(int, 'images per batch per process', default=512),
    resolution=Param(int, 'side (px) of the 224/256 center crop after resizing', default=224),
    lr_tta=Param(Boolean(), 'add the logits of the mirrored image', default=True))
Section('training', 'optimisation', config_descriptor=CONFIG).params(
    eval_only=Param(Boolean(), 'only evaluate (the weights of training.checkpoint, if given)', default=False),
    checkpoint=Param(str, 'weights to evaluate with eval_only: final_weights.pt or checkpoint.pt', default=''),
    batch_size=Param(int, 'images per step per process (GPU)', default=512),
    optimizer=Param(OneOf(['sgd']), 'SGD with momentum (the only one)', default='sgd'),
    momentum=Param(float, 'SGD momentum', default=0.9),
    weight_decay=Param(float, 'L2 decay (of the parameters bn_wd leaves decayed)', default=4e-5),
    bn_wd=Param(Boolean(), 'false: no decay for parameters whose name contains "bn" (as published); '
                           'true: decay every parameter', default=False),
    epochs=Param(int, 'passes over the train set', default=30),
    label_smoothing=Param(float, 'cross-entropy label smoothing', default=0.1),
    use_blurpool=Param(Boolean(), 'blur before the strided convolutions of >= 16 channels', default=False),
    seed=Param(int, 'seed of the order, the augmentations and the model init', default=0),
    max_steps=Param(int, 'stop (with a checkpoint) after this many steps in total; 0: no limit', default=0),
    checkpoint_every=Param(int, 'also checkpoint every N steps (0: at the end of each epoch only)', default=0),
    resume=Param(str, 'checkpoint.pt of a stopped run to continue', default=''),
    distributed=Param(Boolean(), 'plain `python` launch: true starts dist.world_size processes itself; '
                                 'ignored under torchrun (which starts them)', default=False))
Section('dist', 'processes', config_descriptor=CONFIG).params(
    world_size=Param(int, 'processes (GPUs) the config is tuned for; must equal the number launched',
                     default=1),
    address=Param(str, 'rendezvous host of the processes training.distributed starts', default='localhost'),
    port=Param(int, 'rendezvous port of the processes training.distributed starts', default=12355))

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255  # per channel, 0-255 scale
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255
CROP_RATIO = 224 / 256                                   # validation: central 87.5% of the shorter side


# --- Schedules (pure functions of the config values) ---
def train_resolution(epoch: int, min_res: int, max_res: int, start_ramp: int, end_ramp: int) -> int:
    """Training side for a 0-based epoch: min_res up to start_ramp, max_res from end_ramp, in between the
    linear interpolation rounded (half to even) to a multiple of 32."""
    if epoch <= start_ramp:
        return min_res
    if epoch >= end_ramp:
        return max_res
    interpolated = np.interp(epoch, [start_ramp, end_ramp], [min_res, max_res])
    return int(np.round(interpolated / 32)) * 32


def epoch_lr(epoch: int, schedule: str, lr: float, epochs: int, peak_epoch: int, step_ratio: float,
             step_length: int) -> float:
    """LR at the start of `epoch`. cyclic: through (0, 1e-4 lr), (peak_epoch, lr), (epochs, 0);
    step: lr * step_ratio ** (epoch // step_length), and 0 from `epochs` on."""
    if schedule == 'cyclic':
        return float(np.interp(epoch, [0, peak_epoch, epochs], [1e-4 * lr, lr, 0]))
    return lr * step_ratio ** (epoch // step_length) if epoch < epochs else 0.0


def step_lr(epoch: int, iteration: int, iters: int, **schedule) -> float:
    """LR of step `iteration` (0-based) of `iters` in `epoch`: linear from epoch_lr(epoch) to epoch_lr(epoch + 1)."""
    start, end = epoch_lr(epoch, **schedule), epoch_lr(epoch + 1, **schedule)
    return start + (end - start) * iteration / iters


# --- Distributed ---
class Process:
    """This process's place in the job: rank, local rank, world size, device, and the gloo group used to
    agree on stopping."""

    def __init__(self, rank: int, local_rank: int, world_size: int, device: torch.device):
        self.rank, self.local_rank, self.world_size, self.device = rank, local_rank, world_size, device
        self.stop_group = None


def pick_device(gpu: int, world_size: int, local_rank: int) -> torch.device:
    """cuda:`gpu` (data.gpu) for a single process, cuda:`local_rank` for each of several; CPU without CUDA."""
    if not torch.cuda.is_available():
        return torch.device('cpu')
    return torch.device('cuda', gpu if world_size == 1 else local_rank)


def setup_process(gpu: int = 0) -> Process:
    """Rank, world size and device from torchrun's environment (a plain `python` launch is rank 0 of 1);
    joins the process group when there are several processes: NCCL on GPUs, gloo on CPUs."""
    rank, world_size = int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    device = pick_device(gpu, world_size, local_rank)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    process = Process(rank, local_rank, world_size, device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo',
                                device_id=device if device.type == 'cuda' else None)
        process.stop_group = dist.new_group(backend='gloo') if device.type == 'cuda' else dist.group.WORLD
    return process


def run_rank(local_rank: int, argv: List[str], world_size: int, address: str, port: int) -> None:
    """A process started by spawn_processes: torchrun's environment variables for this rank, then main()."""
    os.environ.update(RANK=str(local_rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size), MASTER_ADDR=address, MASTER_PORT=str(port))
    main(argv)


def spawn_processes(argv: List[str], world_size: int, address: str, port: int) -> dict:
    """training.distributed without torchrun: run `world_size` ranks on this machine (as ffcv-imagenet's
    torch.multiprocessing.spawn did). Like torchrun, a SIGTERM or Ctrl-C here reaches every rank as SIGTERM
    (each one checkpoints and stops); a failing rank stops the others and raises here."""
    if torch.cuda.is_available() and world_size > torch.cuda.device_count():
        raise ConfigError(f'training.distributed: dist.world_size={world_size} processes need as many GPUs, '
                          f'this machine has {torch.cuda.device_count()}')
    ranks = torch.multiprocessing.start_processes(run_rank, args=(argv, world_size, address, port),
                                                  nprocs=world_size, join=False, start_method='spawn')

    def forward(signum, frame):
        for child in ranks.processes:
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)
    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not ranks.join():
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return {'spawned_processes': world_size}


def all_sum(values: List, process: Process) -> List[float]:
    """Element-wise sum of `values` (numbers or 0-d tensors) over every process."""
    total = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=process.device) for v in values])
    if process.world_size > 1:
        dist.all_reduce(total)
    return total.tolist()


def check_world_size(expected: int, actual: int, batch_size: int, lr: float) -> None:
    if expected != actual:
        raise ConfigError(
            f'this config is tuned for dist.world_size={expected} processes (global batch {expected * batch_size}, '
            f'peak LR {lr}) but {actual} were launched. Launch {expected} (torchrun --nproc_per_node=..., or '
            f'--training.distributed=1 without torchrun), or pass '
            f'--dist.world_size={actual} and scale the LR with the global batch, e.g. '
            f'--lr.lr={lr * actual / expected:.4g} (see examples/imagenet/README.md)')


# --- Data ---
def image_pipeline(decoder, device: torch.device, augment: bool) -> list:
    """uint8 (B,H,W,3) from the decoder -> normalised (B,3,H,W) channels-last: float16 on GPU, float32 on CPU."""
    on_gpu = device.type == 'cuda'
    return [decoder, *([RandomHorizontalFlip()] if augment else []), ToTensor(),
            *([ToDevice(device, non_blocking=True)] if on_gpu else []), ToTorchImage(),
            NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float16 if on_gpu else np.float32)]


def label_pipeline(device: torch.device) -> list:
    return [IntDecoder(), ToTensor(), Squeeze(), *([ToDevice(device, non_blocking=True)]
                                                   if device.type == 'cuda' else [])]


def make_train_loader(path: str, batch_size: int, num_workers: int, in_memory: bool, resolution: int,
                      process: Process, seed: int):
    """Train loader and its RandomResizedCrop decoder (whose output_size is reset every epoch).
    Order: RANDOM across several processes with the file in memory (one global shuffle, split), else
    QUASI_RANDOM (1 process as published; streamed files keep a bounded set of pages in memory)."""
    decoder = RandomResizedCropRGBImageDecoder((resolution, resolution))
    distributed = process.world_size > 1
    order = OrderOption.RANDOM if distributed and in_memory else OrderOption.QUASI_RANDOM
    loader = Loader(path, batch_size=batch_size, num_workers=num_workers, os_cache=in_memory, order=order,
                    drop_last=True, distributed=distributed, seed=seed, pipelines={
                        'image': image_pipeline(decoder, process.device, augment=True),
                        'label': label_pipeline(process.device)})
    return loader, decoder


def make_val_loader(path: str, batch_size: int, num_workers: int, resolution: int, process: Process) -> Loader:
    """Validation loader over this rank's samples rank, rank + world_size, ... (every image counted once)."""
    indices = np.arange(process.rank, Reader(path).num_samples, process.world_size)
    decoder = CenterCropRGBImageDecoder((resolution, resolution), ratio=CROP_RATIO)
    return Loader(path, batch_size=batch_size, num_workers=num_workers, order=OrderOption.SEQUENTIAL,
                  drop_last=False, indices=indices, pipelines={
                      'image': image_pipeline(decoder, process.device, augment=False),
                      'label': label_pipeline(process.device)})


# --- Model ---
class BlurPoolConv2d(nn.Module):
    """A fixed depthwise 3x3 binomial blur (stride 1, zero padding 1) before `conv`, which keeps its stride."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        kernel = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16
        self.register_buffer('blur_filter', kernel.repeat(conv.in_channels, 1, 1, 1))  # (C, 1, 3, 3)
        self.conv = conv

    def forward(self, x):
        x = F.conv2d(x, self.blur_filter, stride=1, padding=1, groups=self.conv.in_channels)
        return self.conv(x)


def add_blurpool(module: nn.Module, prefix: str = '') -> List[str]:
    """Wrap (in place) every Conv2d with a stride > 1 and >= 16 input channels; returns their names."""
    wrapped = []
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and max(child.stride) > 1 and child.in_channels >= 16:
            setattr(module, name, BlurPoolConv2d(child))
            wrapped.append(prefix + name)
        else:
            wrapped += add_blurpool(child, f'{prefix}{name}.')
    return wrapped


def build_model(arch: str, pretrained: bool, use_blurpool: bool) -> nn.Module:
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(f"model.arch: torchvision.models has no classification model '{arch}'")
    model = torchvision.models.get_model(arch, weights='DEFAULT' if pretrained else None)
    if use_blurpool:
        add_blurpool(model)
    return model


def param_groups(model: nn.Module, weight_decay: float, bn_wd: bool = False) -> List[dict]:
    """SGD groups (exempt, decayed). bn_wd false, as published: no decay for parameters whose name contains
    "bn" (with torchvision's names: bn1/bn2/bn3, not the downsample BatchNorms nor fc.bias), `weight_decay`
    for the others; bn_wd true: `weight_decay` for every parameter (the first group is empty)."""
    named = list(model.named_parameters())
    exempt = {name for name, _ in named if 'bn' in name and not bn_wd}
    return [{'params': [p for name, p in named if name in exempt], 'weight_decay': 0.0},
            {'params': [p for name, p in named if name not in exempt], 'weight_decay': weight_decay}]


def load_weights(model: nn.Module, path: str) -> None:
    """Weights from final_weights.pt (a state_dict) or checkpoint.pt; a DDP 'module.' prefix is dropped."""
    saved = load_checkpoint(path, 'training.checkpoint', needs=())
    state = saved.get('model', saved)
    state = {key.removeprefix('module.'): value for key, value in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        blurred = any(key.endswith('.conv.weight') for key in state)
        raise ConfigError(f'{path} does not fit this model (saved with training.use_blurpool='
                          f'{str(blurred).lower()}, model.arch must match too): {exc}') from exc


# --- Train / eval loops ---
def train_step(model, images, labels, optimizer, scaler, loss_fn, amp: bool) -> torch.Tensor:
    """One SGD step (fp16 autocast + loss scaling when `amp`); returns the detached loss."""
    with torch.autocast('cuda', enabled=amp):
        loss = loss_fn(model(images), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def evaluate(model: nn.Module, loader: Loader, tta: bool, amp: bool, process: Process) -> dict:
    """top-1 / top-5 over every rank's images (summed logits of image + mirror with `tta`); val_loss is the
    cross-entropy of the mean logits."""
    model.eval()
    start, totals = time.time(), torch.zeros(4, dtype=torch.float64, device=process.device)
    with torch.no_grad(), torch.autocast('cuda', enabled=amp):
        for images, labels in loader:
            logits = model(images)
            if tta:
                logits = logits + model(torch.flip(images, dims=[3]))  # mirror the width axis of (B,C,H,W)
            ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
            loss = F.cross_entropy(logits.float() / (2 if tta else 1), labels, reduction='sum')
            totals += torch.stack([ranked[:, 0].sum().double(), ranked.any(1).sum().double(), loss.double(),
                                   totals.new_tensor(labels.shape[0])])
    correct_1, correct_5, loss_sum, count = all_sum(list(totals), process)
    count = max(count, 1)
    return {'top_1': correct_1 / count, 'top_5': correct_5 / count, 'val_loss': loss_sum / count,
            'val_images': int(count), 'val_time': time.time() - start}


def sync_buffers(model: nn.Module, process: Process) -> None:
    """Give every rank rank 0's BatchNorm statistics (what rank 0 saves), so evaluation matches the weights."""
    if process.world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def resume_run(path: str, process: Process, model: nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, train_loader: Loader) -> tuple:
    """Restore a stopped run from its checkpoint.pt: model, optimizer, scaler and loader position (in place).
    Returns (step, training seconds so far, the stopped epoch's totals: the global ones on rank 0 and zeros on
    the other ranks, so that they are counted once)."""
    saved = load_checkpoint(path, 'training.resume', needs=('model', 'optimizer', 'loader', 'step', 'world_size'))
    if saved['world_size'] != process.world_size:
        raise ConfigError(f"{path} was written by {saved['world_size']} processes; resume it "
                          f'with the same number (now {process.world_size})')
    model.load_state_dict(saved['model'])
    optimizer.load_state_dict(saved['optimizer'])
    scaler.load_state_dict(saved['scaler'])
    train_loader.load_state_dict(saved['loader'])
    carried = saved['epoch_totals'] if process.rank == 0 else {'loss_sum': 0.0, 'seen': 0, 'time': 0.0}
    return saved['step'], saved['elapsed'], carried


def stop_reason(step: int, max_steps: int, stop: StopOnSignal, process: Process) -> Optional[str]:
    """Why training stops after `step`, if it does: max_steps reached, else a signal on any rank, so that every
    rank stops at the same step (a collective call when distributed, made by every rank after each step)."""
    if max_steps and step >= max_steps:
        return 'max_steps'
    if process.world_size == 1:
        return stop.reason
    flag = torch.tensor([1 if stop.reason else 0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=process.stop_group)
    return (stop.reason or 'signal on another rank') if flag.item() else None


def epoch_record(epoch: int, step: int, resolution: int, lr: float, loss_sum: torch.Tensor, seen: int,
                 epoch_start: float, process: Process) -> dict:
    """The end-of-epoch log entry before validation: the mean train loss and throughput over every rank
    (a collective call)."""
    if process.device.type == 'cuda':
        torch.cuda.synchronize()
    epoch_time = time.time() - epoch_start
    loss_total, seen_total = all_sum([loss_sum, seen], process)
    return {'epoch': epoch, 'step': step, 'resolution': resolution, 'current_lr': lr,
            'train_loss': loss_total / max(seen_total, 1), 'images_per_s': seen_total / epoch_time,
            'epoch_time_s': epoch_time}


def print_epoch(record: dict) -> None:
    print(f"epoch {record['epoch']} ({record['resolution']} px): loss {record['train_loss']:.3f}, "
          + (f"top-1 {record['top_1']:.4f}, " if 'top_1' in record else '')
          + f"{record['images_per_s']:.0f} images/s, {record['epoch_time_s']:.1f} s", flush=True)


def stop_summary(reason: str, step: int, folder: Path, process: Process) -> dict:
    """The summary of a run stopped early (its checkpoint is saved); rank 0 prints how to resume it."""
    if process.rank == 0:
        print(f'stopped ({reason}) at step {step}; resume with --training.resume={folder / "checkpoint.pt"}',
              flush=True)
    return {'stopped_at_step': step, 'checkpoint': str(folder / 'checkpoint.pt')}


def train(s: Settings, process: Process, logger: RunLogger, folder: Path) -> dict:
    if not s.data.train_dataset:
        raise ConfigError('data.train_dataset is required for training (or pass --training.eval_only=true)')
    check_world_size(s.dist.world_size, process.world_size, s.training.batch_size, s.lr.lr)
    device, amp = process.device, process.device.type == 'cuda'
    torch.manual_seed(s.training.seed)
    ramp = (s.resolution.min_res, s.resolution.max_res, s.resolution.start_ramp, s.resolution.end_ramp)
    train_loader, decoder = make_train_loader(s.data.train_dataset, s.training.batch_size,
                                              s.data.num_workers, s.data.in_memory,
                                              train_resolution(0, *ramp), process, s.training.seed)
    val_loader = make_val_loader(s.data.val_dataset, s.validation.batch_size, s.data.num_workers,
                                 s.validation.resolution, process)
    model = build_model(s.model.arch, s.model.pretrained, s.training.use_blurpool)
    model = model.to(device, memory_format=torch.channels_last)  # the layout the loader delivers
    optimizer = torch.optim.SGD(param_groups(model, s.training.weight_decay, s.training.bn_wd), lr=0.0,
                                momentum=s.training.momentum)
    scaler = torch.amp.GradScaler('cuda', enabled=amp)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=s.training.label_smoothing)
    lr_of = partial(step_lr, schedule=s.lr.lr_schedule_type, lr=s.lr.lr, epochs=s.training.epochs,
                    peak_epoch=s.lr.lr_peak_epoch, step_ratio=s.lr.step_ratio,
                    step_length=s.lr.step_length)
    step, elapsed = 0, 0.0  # elapsed: training seconds of the run before this process
    carried = {'loss_sum': 0.0, 'seen': 0, 'time': 0.0}  # the stopped epoch's totals so far
    if s.training.resume:
        step, elapsed, carried = resume_run(s.training.resume, process, model, optimizer, scaler, train_loader)
    net = model
    if process.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if amp else None)
    iters, position = len(train_loader), train_loader.state_dict()

    def checkpoint(loss_sum, seen, seconds):  # collective: every rank calls it after the same step
        loss_total, seen_total = all_sum([loss_sum, seen], process)
        if process.rank == 0:
            atomic_save({'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                         'scaler': scaler.state_dict(), 'loader': train_loader.state_dict(), 'step': step,
                         'world_size': process.world_size, 'settings': s.as_dict(), 'elapsed': time.time() - start,
                         'epoch_totals': {'loss_sum': loss_total, 'seen': int(seen_total), 'time': seconds}},
                        logger.file('checkpoint.pt'))

    announce('train_imagenet.py', {'train': train_loader, 'val': val_loader}, device, folder, process)
    start = time.time() - elapsed  # the published times start here, after building loaders and model
    with StopOnSignal(announce=process.rank == 0) as stop:
        for epoch in range(position['epoch'], s.training.epochs):
            resolution = train_resolution(epoch, *ramp)
            decoder.output_size = (resolution, resolution)
            net.train()
            first = position['batches_served'] if epoch == position['epoch'] else 0
            reason = None
            loss_sum = torch.tensor(carried['loss_sum'], device=device)
            seen, epoch_start = carried['seen'], time.time() - carried['time']
            carried = {'loss_sum': 0.0, 'seen': 0, 'time': 0.0}
            with EpochProgress(epoch, iters, first, enabled=process.rank == 0) as progress:
                for iteration, (images, labels) in enumerate(train_loader, start=first):
                    lr = lr_of(epoch, iteration, iters)
                    for group in optimizer.param_groups:
                        group['lr'] = lr
                    loss = train_step(net, images, labels, optimizer, scaler, loss_fn, amp)
                    step += 1
                    loss_sum += loss.float() * labels.shape[0]
                    seen += labels.shape[0]
                    logger.log_step(step, lr=lr, loss=loss)  # rank 0's loss; read when written (no sync here)
                    progress.update(labels.shape[0] * process.world_size, loss_sum, seen)
                    reason = stop_reason(step, s.training.max_steps, stop, process)
                    if reason or (s.training.checkpoint_every and step % s.training.checkpoint_every == 0):
                        checkpoint(loss_sum, seen, time.time() - epoch_start)
                    if reason:
                        break
            if reason:
                return stop_summary(reason, step, folder, process)
            record = epoch_record(epoch, step, resolution, lr_of(epoch, iters - 1, iters), loss_sum, seen,
                                  epoch_start, process)
            if s.logging.log_level > 0:
                sync_buffers(model, process)
                record.update(evaluate(model, val_loader, s.validation.lr_tta, amp, process))
            checkpoint(0.0, 0, 0.0)
            logger.log({**record, 'relative_time': time.time() - start})
            if process.rank == 0:
                print_epoch(record)
    sync_buffers(model, process)
    result = evaluate(model, val_loader, s.validation.lr_tta, amp, process)
    if process.rank == 0:
        atomic_save(model.state_dict(), logger.file('final_weights.pt'))
    return {**result, 'steps': step, 'relative_time': time.time() - start, 'world_size': process.world_size,
            'global_batch_size': s.training.batch_size * process.world_size, 'device': str(device)}


def evaluate_saved(s: Settings, process: Process, logger: RunLogger, folder: Path) -> dict:
    """--training.eval_only: validation of training.checkpoint (or of the initial/pretrained weights)."""
    model = build_model(s.model.arch, s.model.pretrained, s.training.use_blurpool)
    if s.training.checkpoint:
        load_weights(model, s.training.checkpoint)
    amp = process.device.type == 'cuda'
    model = model.to(process.device, memory_format=torch.channels_last)
    val_loader = make_val_loader(s.data.val_dataset, s.validation.batch_size, s.data.num_workers,
                                 s.validation.resolution, process)
    announce('train_imagenet.py', {'val': val_loader}, process.device, folder, process)
    result = evaluate(model, val_loader, s.validation.lr_tta, amp, process)
    logger.log({'eval_only': True, 'checkpoint': s.training.checkpoint, **result})
    return {**result, 'world_size': process.world_size, 'device': str(process.device)}


# --- Main ---
def main(argv=None) -> dict:
    parse_config(CONFIG, argv, __doc__)
    s = settings_of(CONFIG)
    if s.training.distributed and s.dist.world_size > 1 and 'RANK' not in os.environ:  # not under torchrun
        return spawn_processes(sys.argv[1:] if argv is None else list(argv), s.dist.world_size, s.dist.address,
                               s.dist.port)
    process = setup_process(s.data.gpu)
    try:
        resumed = Path(s.training.resume).parent if s.training.resume else None
        folder = resumed or Path(s.logging.folder) / (s.logging.run_name or uuid.uuid4().hex[:12])
        logger = RunLogger(folder, config_dict(CONFIG), enabled=process.rank == 0, use_wandb=s.logging.wandb,
                           wandb_project=s.logging.wandb_project, run_name=s.logging.run_name or None)
        summary = (evaluate_saved if s.training.eval_only else train)(s, process, logger, folder)
        logger.finish(summary)
        if process.rank == 0:
            print(f'run folder: {folder}\n' + ', '.join(f'{k}: {v}' for k, v in summary.items()), flush=True)
        return summary
    finally:
        if process.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == '__main__':
    run_as_program(main)
