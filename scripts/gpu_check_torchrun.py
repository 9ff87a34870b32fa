"""gpu_check_torchrun.py: what gpu_check.py runs under torchrun: NCCL and DDP, then train_imagenet.py itself.

    torchrun --standalone --nproc_per_node=1 scripts/gpu_check_torchrun.py TRAIN.beton --steps 5 --out dist.json \
        -- --config-file rn18_configs/rn18_16_epochs.yaml --training.max_steps=10 ...

1. A process group over NCCL (gloo without CUDA), an all_reduce whose sum is checked, and `--steps`
   DistributedDataParallel steps of train_imagenet.py's ResNet-18 with its loader and train step (timed after
   the first). train_imagenet.py joins a process group only when it has several processes, so a one-GPU
   torchrun of the recipe alone never touches NCCL: this part does.
2. The group closed, train_imagenet.py runs as ``__main__`` with the arguments after ``--``, exactly as
   ``torchrun --nproc_per_node=1 train_imagenet.py ARGS`` runs it (torchrun's environment, a fresh module),
   in the same process: one torchrun start instead of two.

Rank 0 writes the figures of part 1 to `--out` as JSON before part 2 starts.
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train_imagenet  # noqa: E402  (the recipe, at the repository root)


def ddp_steps(args, rank: int, local_rank: int, world_size: int) -> dict:
    """Part 1 (see the module docstring); returns the figures."""
    device = train_imagenet.pick_device(local_rank, world_size, local_rank)  # cuda:local_rank, or the CPU
    amp = device.type == 'cuda'
    backend = 'nccl' if amp else 'gloo'
    if amp:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, device_id=device if amp else None)
    try:
        total = torch.full((1,), float(rank + 1), device=device)
        dist.all_reduce(total)
        expected = world_size * (world_size + 1) / 2
        if total.item() != expected:
            raise RuntimeError(f'all_reduce over {backend} gave {total.item()}, expected {expected}')
        process = train_imagenet.Process(rank, local_rank, world_size, device)
        loader, _ = train_imagenet.make_train_loader(args.train_file, args.batch_size, args.num_workers, True,
                                                     args.res, process, seed=0)
        model = train_imagenet.build_model('resnet18', False, True).to(device, memory_format=torch.channels_last)
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if amp else None)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        scaler = torch.amp.GradScaler('cuda', enabled=amp)
        losses, images, started = [], 0, time.time()
        while len(losses) < args.steps:
            for batch_images, labels in loader:
                loss = train_imagenet.train_step(net, batch_images, labels, optimizer, scaler, nn.CrossEntropyLoss(),
                                                 amp)
                losses.append(loss.item())  # .item() waits for the step
                if len(losses) == 1:
                    started = time.time()  # the first step compiles and warms up: time the others
                else:
                    images += labels.shape[0] * world_size
                if len(losses) == args.steps:
                    break
        return {'backend': backend, 'world_size': world_size, 'device': str(device), 'all_reduce': total.item(),
                'steps': len(losses), 'losses': losses, 'images_per_s': images / (time.time() - started)}
    finally:
        dist.destroy_process_group()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ours, recipe = (argv[:argv.index('--')], argv[argv.index('--') + 1:]) if '--' in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('train_file', help='a train .beton (image, label) as write_imagenet.py writes')
    parser.add_argument('--steps', type=int, default=5, help='DDP steps (default 5)')
    parser.add_argument('--batch-size', type=int, default=256, help='images per DDP step per process')
    parser.add_argument('--res', type=int, default=160, help='side of the training crops (px)')
    parser.add_argument('--num-workers', type=int, default=-1, help='loader threads per process')
    parser.add_argument('--out', type=Path, required=True, help='JSON file for the figures of part 1 (rank 0)')
    args = parser.parse_args(ours)
    rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    report = ddp_steps(args, rank, local_rank, int(os.environ['WORLD_SIZE']))
    if rank == 0:
        args.out.write_text(json.dumps(report, indent=2))
        print(json.dumps(report), flush=True)
    if recipe:
        sys.argv = [str(ROOT / 'train_imagenet.py'), *recipe]
        try:
            runpy.run_path(sys.argv[0], run_name='__main__')
        except SystemExit as exc:  # the recipe's entry point may exit with its code
            if exc.code not in (0, None):
                raise
    return 0


if __name__ == '__main__':
    sys.exit(main())
