"""bench_augment.py: a RandAugment training pipeline, ours vs torch DataLoader + torchvision v2, same images.

Pipeline (both systems): RandomResizedCrop 224 -> RandomHorizontalFlip -> RandAugment(num_ops=2, magnitude=9)
-> uint8 (B, 3, 224, 224) tensor, random order, batch 128, drop_last.
  ours   ffcv.loader.Loader, `--num-workers` threads: RandomResizedCropRGBImageDecoder((224, 224)),
         RandomHorizontalFlip(), RandAugment(2, 9), ToTensor(), ToTorchImage()
  torch  torch.utils.data.DataLoader, `--num-workers` worker processes (persistent), the same JPEG bytes held
         in memory, decoded with PIL (or --torch-decoder torchvision), torchvision.transforms.v2:
         RandomResizedCrop(224, antialias=True), RandomHorizontalFlip(), RandAugment(2, 9), PILToTensor()
Data: bench_loader.py's photo256 dataset (benchmarks/data.py photo-like images, JPEG quality 90, longest side
256), written once with our writer and cached in --data-dir (5,000 images; --quick: 1,000).
Each measurement runs in a fresh process: a first epoch (compilation, worker start-up), then `--epochs - 1`
steady epochs whose median gives images/s. Systems alternate over `--repeats` rounds; medians of the rounds
and the ratio ours / torch go to the JSON report with the CPU load other processes caused meanwhile.

  python benchmarks/bench_augment.py                 # 5,000 images, 3 repeats -> benchmarks/results/augment.json
  python benchmarks/bench_augment.py --quick         # 1,000 images
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

_spec = importlib.util.spec_from_file_location('ffcv_bench_anchor', Path(__file__).with_name('anchor.py'))
anchor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anchor)

SYSTEMS = ('ours', 'torch')
GOAL = 3.0  # steady images/s, ours / torch


# --- One measurement (runs in its own process) -------------------------------------------------------

def ours_loader(spec: dict):
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandAugment, RandomHorizontalFlip, Squeeze, ToTensor, ToTorchImage
    image = [RandomResizedCropRGBImageDecoder((spec['res'], spec['res'])), RandomHorizontalFlip(),
             RandAugment(spec['num_ops'], spec['magnitude']), ToTensor(), ToTorchImage()]
    return Loader(spec['path'], batch_size=spec['batch_size'], num_workers=spec['num_workers'],
                  order=OrderOption.RANDOM, os_cache=True, drop_last=True, seed=spec['seed'],
                  pipelines={'image': image, 'label': [IntDecoder(), ToTensor(), Squeeze()]})


def torch_loader(spec: dict):
    import numpy as np
    import torch
    from torchvision.transforms import v2
    worker = anchor.load_sibling('loader_worker')  # its JPEGBytesDataset: bytes in memory, decoded per item
    arrays = np.load(spec['torch_data'])
    blob, offsets = arrays['blob'], arrays['offsets']
    blobs = [blob[offsets[i]:offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
    steps = [v2.RandomResizedCrop(spec['res'], antialias=True), v2.RandomHorizontalFlip(),
             v2.RandAugment(spec['num_ops'], spec['magnitude'])]
    if spec['torch_decoder'] == 'pil':
        steps.append(v2.PILToTensor())
    dataset = worker.JPEGBytesDataset(blobs, arrays['labels'], v2.Compose(steps), spec['torch_decoder'])
    torch.manual_seed(spec['seed'])
    return torch.utils.data.DataLoader(dataset, batch_size=spec['batch_size'], shuffle=True,
                                       num_workers=spec['num_workers'], persistent_workers=True, drop_last=True)


def measure(spec: dict) -> dict:
    """First epoch (from construction) and steady epochs of one system; other processes' CPU load meanwhile."""
    worker = anchor.load_sibling('loader_worker')
    import torch  # noqa: F401  (imports are not part of the measurement)
    import torchvision  # noqa: F401
    import ffcv  # noqa: F401
    busy, mine = worker.busy_cpu_seconds(), worker.tree_cpu_seconds()
    start = time.perf_counter()
    loader = (ours_loader if spec['system'] == 'ours' else torch_loader)(spec)
    images = worker.run_epoch(loader)
    first = time.perf_counter() - start
    epochs = []
    for _ in range(spec['epochs'] - 1):
        begin = time.perf_counter()
        assert worker.run_epoch(loader) == images
        epochs.append(time.perf_counter() - begin)
    wall = time.perf_counter() - start
    other = ((worker.busy_cpu_seconds() - busy) - (worker.tree_cpu_seconds() - mine)) / wall
    return {'images': images, 'first_epoch_s': first, 'epoch_s': epochs, 'other_load_cores': other,
            'first_images_per_s': images / first, 'steady_images_per_s': images / statistics.median(epochs)}


def run_measurement(system: str, spec: dict, timeout: float) -> dict:
    command = [sys.executable, __file__, '--worker', json.dumps(dict(spec, system=system))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=str(anchor.HERE.parent))
    lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f'{system} measurement failed (exit {done.returncode}):\n{done.stderr[-3000:]}')
    return json.loads(lines[-1])


# --- Main ------------------------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', default='/tmp/ffcv_bench', help='where the dataset is written once (cache)')
    parser.add_argument('--quick', action='store_true', help='1,000 images instead of 5,000')
    parser.add_argument('--repeats', type=int, default=3, help='fresh-process runs per system (medians)')
    parser.add_argument('--epochs', type=int, default=3, help='epochs per run: the first + steady ones (>= 2)')
    parser.add_argument('--num-workers', type=int, default=2, help='threads (ours) and worker processes (torch)')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--num-ops', type=int, default=2, help='RandAugment num_ops')
    parser.add_argument('--magnitude', type=int, default=9, help='RandAugment magnitude')
    parser.add_argument('--torch-decoder', choices=('pil', 'torchvision'), default='pil',
                        help='JPEG decoder of the torch baseline (default pil, what ImageFolder uses)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--timeout', type=float, default=900, help='seconds allowed per measurement process')
    parser.add_argument('--out', default='benchmarks/results/augment.json', help='JSON results file')
    parser.add_argument('--worker', help=argparse.SUPPRESS)  # internal: run one measurement, print JSON
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error('--epochs must be at least 2 (the first epoch + steady ones)')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        sys.stdout.write(json.dumps(measure(json.loads(args.worker))) + '\n')
        sys.stdout.flush()
        os._exit(0)  # skip teardown of DataLoader workers and threads: not part of the measurement
    loader_bench = anchor.load_sibling('bench_loader')
    dataset = loader_bench.prepare_data(Path(args.data_dir), ['photo256'], args.quick, args.seed,
                                        args.num_workers)['photo256']
    loader_bench.warm_page_cache(dataset['path'])
    spec = {'path': dataset['path'], 'torch_data': dataset['torch_data'], 'res': 224, 'batch_size': args.batch_size,
            'num_workers': args.num_workers, 'epochs': args.epochs, 'seed': args.seed, 'num_ops': args.num_ops,
            'magnitude': args.magnitude, 'torch_decoder': args.torch_decoder}
    print(f"[augment] {dataset['count']} photo256 images, RandomResizedCrop 224 + flip + RandAugment"
          f"({args.num_ops}, {args.magnitude}), batch {args.batch_size}, {args.num_workers} workers, "
          f"{args.epochs} epochs x {args.repeats} repeats", flush=True)
    runs = {system: [] for system in SYSTEMS}
    for repeat in range(args.repeats):
        for system in (SYSTEMS if repeat % 2 == 0 else SYSTEMS[::-1]):
            result = run_measurement(system, spec, args.timeout)
            runs[system].append(result)
            print(f"  repeat {repeat + 1} {system:>5}: first epoch {result['first_images_per_s']:7,.0f} img/s, "
                  f"steady {result['steady_images_per_s']:7,.0f} img/s, other load "
                  f"{result['other_load_cores']:.1f} cores", flush=True)
    summary = {system: {key: statistics.median(r[key] for r in results)
                        for key in ('first_images_per_s', 'steady_images_per_s', 'other_load_cores')}
               for system, results in runs.items()}
    ratio = summary['ours']['steady_images_per_s'] / summary['torch']['steady_images_per_s']
    # each round's own ratio too: on a shared machine the load changes between rounds more than within one
    paired = [a['steady_images_per_s'] / b['steady_images_per_s'] for a, b in zip(runs['ours'], runs['torch'])]
    print(f"\nsteady images/s (medians): ours {summary['ours']['steady_images_per_s']:,.0f}, torch "
          f"{summary['torch']['steady_images_per_s']:,.0f}: ours / torch = {ratio:.2f}x (goal {GOAL:.1f}x "
          f"{'met' if ratio >= GOAL else 'MISSED'}); per round {', '.join(f'{r:.2f}x' for r in paired)}")
    report = {'benchmark': 'augment', 'spec': spec, 'count': dataset['count'], 'repeats': args.repeats,
              'runs': runs, 'summary': summary, 'steady_ours_over_torch': ratio,
              'steady_ours_over_torch_per_round': paired, 'goal': GOAL,
              'goal_met': ratio >= GOAL, 'load_average_at_end': os.getloadavg(),
              'environment': anchor.environment_info(None)}
    anchor.write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
