"""bench_epoch_tail.py: what letting idle worker threads help build the epoch's first and last batches gains
(issue 17 §3, §4).

Every worker builds parts of the epoch's first batch, and once no batch is left to take, a worker thread with
nothing to do runs parts of the batches other threads are still building
(`ffcv.loader.epoch_iterator._EpochState.run_parts`). This benchmark runs the same loader with that help
('tail') and without it ('no_tail': `_EpochState.share_parts = False`, each batch built by the thread that
took it, as before), in fresh processes that alternate (tail, no_tail, no_tail, tail,
...) after one untimed run (numba's cache warm), on benchmarks/bench_loader.py's photo set (256-px JPEGs) at
two sizes: a small file, where the tail is a larger share of an epoch, and the loader benchmark's 5,000
images. Pipelines as in bench_loader.py: train (RandomResizedCrop 160 + flip, RANDOM, drop_last) and val
(center crop 224, SEQUENTIAL, the last batch partial).
Reported per case: medians over rounds of the first epoch and of the steady epochs (images/s), and the ratio
tail / no_tail; the machine's load is recorded with each run (`other_load_cores`: CPU used by other processes).

  python benchmarks/bench_epoch_tail.py                   # 1,500 and 5,000 images, 8 rounds, 6 epochs
  python benchmarks/bench_epoch_tail.py --quick           # 1,000 images, 1 round: a smoke run
JSON: benchmarks/results/epoch_tail.json (--out).
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

HERE = Path(__file__).resolve().parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f'ffcv_bench_{name}', HERE / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def worker(spec: dict) -> dict:
    """One measurement in this (fresh) process: loader_worker.measure, with the help in parts (the epoch's
    first batch and its tail) switched off when spec['tail'] is false."""
    if not spec['tail']:
        from ffcv.loader import epoch_iterator
        epoch_iterator._EpochState.share_parts = False
    return _load('loader_worker').measure(spec)


def run(spec: dict, timeout: float) -> dict:
    done = subprocess.run([sys.executable, __file__, '--worker', json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout, cwd=HERE.parent)
    if done.returncode:
        raise RuntimeError(f'worker failed ({done.returncode}):\n{done.stderr[-3000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(results: list) -> dict:
    """Medians over rounds of first-epoch and steady images/s (each round's steady figure: its median epoch)."""
    images = results[0]['images']
    first = statistics.median(images / r['first_epoch_s'] for r in results)
    steady = statistics.median(images / statistics.median(r['epoch_s']) for r in results)
    return {'first_epoch_images_per_s': first, 'steady_images_per_s': steady,
            'max_other_load_cores': max(r['other_load_cores'] for r in results)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--counts', default='1500,5000', help='images in the photo files (comma-separated)')
    parser.add_argument('--cases', default='train,val')
    parser.add_argument('--repeats', type=int, default=8, help='rounds (each runs tail and no_tail, alternating)')
    parser.add_argument('--epochs', type=int, default=6, help='epochs per run (the first is reported apart)')
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--quick', action='store_true', help='1,000 images, 1 round, 3 epochs')
    parser.add_argument('--data-dir', default='/tmp/ffcv_bench')
    parser.add_argument('--timeout', type=float, default=600)
    parser.add_argument('--out', default=str(HERE / 'results' / 'epoch_tail.json'))
    args = parser.parse_args(argv)
    if args.worker:
        sys.stdout.write(json.dumps(worker(json.loads(args.worker))) + '\n')
        sys.stdout.flush()
        os._exit(0)
    if args.quick:
        args.counts, args.repeats, args.epochs = '1000', 1, 3
    bench_loader = _load('bench_loader')
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    report = {'benchmark': 'epoch_tail', 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
              'cpus_available': len(os.sched_getaffinity(0)), 'num_workers': args.num_workers,
              'repeats': args.repeats, 'epochs': args.epochs, 'load_average_before': os.getloadavg(), 'cases': {}}
    for count in (int(c) for c in args.counts.split(',')):
        path = bench_loader.dataset_path(data_dir, 'photo256', count, 0)
        if not path.exists():
            bench_loader.write_dataset(path, 'photo256', count, 0, num_workers=os.cpu_count() or 1)
        for case in args.cases.split(','):
            base = {**bench_loader.CASES[case], 'system': 'ours', 'path': str(path), 'seed': 0,
                    'num_workers': args.num_workers, 'epochs': args.epochs}
            run({**base, 'tail': True, 'epochs': 1}, args.timeout)  # untimed: numba's cache warm, file in RAM
            runs = {'tail': [], 'no_tail': []}
            for round_index in range(args.repeats):
                order = ('tail', 'no_tail') if round_index % 2 == 0 else ('no_tail', 'tail')
                for mode in order:
                    runs[mode].append(run({**base, 'tail': mode == 'tail'}, args.timeout))
            summary = {mode: summarize(results) for mode, results in runs.items()}
            ratios = {f'{metric}_tail_over_no_tail': summary['tail'][metric] / summary['no_tail'][metric]
                      for metric in ('first_epoch_images_per_s', 'steady_images_per_s')}
            name = f'{case}_n{count}'
            report['cases'][name] = {'images': runs['tail'][0]['images'], 'summary': summary, 'ratios': ratios,
                                     'runs': runs}
            print(f"{name:<12} steady tail {summary['tail']['steady_images_per_s']:7,.0f} / no_tail "
                  f"{summary['no_tail']['steady_images_per_s']:7,.0f} img/s = "
                  f"{ratios['steady_images_per_s_tail_over_no_tail']:.3f}; first epoch "
                  f"{ratios['first_epoch_images_per_s_tail_over_no_tail']:.3f}; other load <= "
                  f"{max(s['max_other_load_cores'] for s in summary.values()):.2f} cores", flush=True)
    report['load_average_after'] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f'JSON: {args.out}')


if __name__ == '__main__':
    main()
