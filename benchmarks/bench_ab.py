"""bench_ab.py: the loader of two or more checkouts of this repository, epoch against epoch, on one machine.

A regression of a few percent hides in the run-to-run spread of fresh-process benchmarks on a shared VM
(`bench_loader.py` runs of one commit differ by 10-30% between minutes here). This one starts, per checkout,
`--processes` warm processes, each with the benchmark's loader built and its first epoch done, and then asks
them in turn for one epoch at a time (the order reversed every round), so that every round compares the
checkouts under the same minute's conditions, and several processes per checkout average out what one
process's memory layout gives or takes. Each round's rate of a checkout is the mean over its processes; the
ratio to the first checkout is taken round by round, and its median and quartiles are reported.

    python benchmarks/bench_ab.py base=/tmp/base head=. --pipeline train --rounds 16 --processes 3
    python benchmarks/bench_ab.py head=. nounmap=.:FFCV_SOME_SWITCH=0 --pipeline val

A checkout is NAME=PATH[:VAR=VALUE...] (environment variables for its processes). Each process imports
`ffcv` from PATH (PYTHONPATH, working directory PATH) and builds the pipeline with this script's
`loader_worker.ffcv_loader` (the same public API calls in every checkout). The dataset is
`bench_loader.py`'s photo256 file in --data-dir, written there first when missing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
RESOLUTIONS = {'train': 160, 'val': 224}


def serve(spec: dict) -> None:
    """Child process: build the loader, run its first epoch, then one epoch per line read from stdin,
    answering each with the epoch's images per second."""
    sys.path.insert(0, str(HERE))
    import loader_worker
    import ffcv
    loader = loader_worker.ffcv_loader(spec)
    loader_worker.run_epoch(loader)
    print(json.dumps({'ffcv_file': ffcv.__file__}), flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        images = loader_worker.run_epoch(loader)
        print(images / (time.perf_counter() - start), flush=True)


def parse_checkout(text: str) -> dict:
    name, sep, rest = text.partition('=')
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f'expected NAME=PATH[:VAR=VALUE...], got {text!r}')
    path, *assignments = rest.split(':')
    env = {}
    for assignment in assignments:
        key, sep, value = assignment.partition('=')
        if not sep or not key:
            raise argparse.ArgumentTypeError(f'expected VAR=VALUE after the path in {text!r}')
        env[key] = value
    root = Path(path).resolve()
    if not (root / 'ffcv' / '__init__.py').exists():
        raise argparse.ArgumentTypeError(f'{root} holds no ffcv package')
    return {'name': name, 'path': root, 'env': env}


def start_processes(checkouts: List[dict], spec: dict, count: int) -> List[tuple]:
    processes = []
    for checkout in checkouts:
        env = dict(os.environ, PYTHONPATH=str(checkout['path']), **checkout['env'])
        for k in range(count):
            process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), '--serve', json.dumps(spec)],
                                       cwd=checkout['path'], env=env, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            processes.append((checkout['name'], k, process))
    for name, k, process in processes:  # every loader built and through its first epoch
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f'{name} process {k} failed to start (exit {process.wait()})')
        imported = Path(json.loads(line)['ffcv_file']).resolve()
        expected = next(c['path'] for c in checkouts if c['name'] == name)
        if not imported.is_relative_to(expected):
            raise RuntimeError(f'{name} imported ffcv from {imported}, not from {expected}')
    return processes


def run_rounds(processes: List[tuple], rounds: int) -> Dict[tuple, List[float]]:
    rates = {(name, k): [] for name, k, _ in processes}
    for r in range(rounds):
        for name, k, process in (processes if r % 2 == 0 else processes[::-1]):
            process.stdin.write('go\n')
            process.stdin.flush()
            rates[(name, k)].append(float(process.stdout.readline()))
        print(f'  round {r + 1}/{rounds} done', flush=True)
    for _, _, process in processes:
        process.stdin.close()
        process.wait()
    return rates


def summarise(names: List[str], rates: Dict[tuple, List[float]], count: int, rounds: int) -> dict:
    per_round = {n: [statistics.mean(rates[(n, k)][r] for k in range(count)) for r in range(rounds)] for n in names}
    summary = {}
    for name in names:
        ratios = [a / b for a, b in zip(per_round[name], per_round[names[0]])]
        quartiles = statistics.quantiles(ratios, n=4) if rounds > 1 else [ratios[0]] * 3
        summary[name] = {'median_images_per_s': statistics.median(per_round[name]),
                         'per_process_median': [statistics.median(rates[(name, k)]) for k in range(count)],
                         'ratio_median': statistics.median(ratios), 'ratio_quartiles': [quartiles[0], quartiles[2]],
                         'ratios': ratios, 'rounds': per_round[name]}
    return summary


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkouts', nargs='*', type=parse_checkout, help='NAME=PATH[:VAR=VALUE...]; the first is '
                                                                         'the reference')
    parser.add_argument('--pipeline', choices=sorted(RESOLUTIONS), default='train')
    parser.add_argument('--rounds', type=int, default=16)
    parser.add_argument('--processes', type=int, default=3, help='warm processes per checkout')
    parser.add_argument('--num-workers', type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument('--data-dir', default='/tmp/ffcv_bench')
    parser.add_argument('--out', default='bench_results/ab.json')
    parser.add_argument('--beton', default=None, help="a .beton of JPEG images to read instead of bench_loader's "
                                                       'photo256 (whose fields it must have: image, label)')
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--quick', action='store_true', help="bench_loader's smaller photo256 (1,000 images), for a "
                                                             'smoke run')
    parser.add_argument('--serve', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(json.loads(args.serve))
        return 0
    if len(args.checkouts) < 2 or len({c['name'] for c in args.checkouts}) != len(args.checkouts):
        parser.error('give at least two checkouts, with different names')
    if args.rounds < 1 or args.processes < 1:
        parser.error('--rounds and --processes must be at least 1')
    sys.path.insert(0, str(HERE))
    import bench_loader
    if args.beton is None:
        args.beton = bench_loader.prepare_data(Path(args.data_dir), ['photo256'], args.quick, 0,
                                               args.num_workers)['photo256']['path']
    bench_loader.warm_page_cache(args.beton)
    spec = {'path': str(Path(args.beton).resolve()), 'pipeline': args.pipeline, 'res': RESOLUTIONS[args.pipeline],
            'batch_size': args.batch_size, 'num_workers': args.num_workers, 'seed': 0}
    names = [c['name'] for c in args.checkouts]
    print(f'[{args.pipeline}] {", ".join(names)}: {args.processes} processes each, {args.rounds} rounds', flush=True)
    processes = start_processes(args.checkouts, spec, args.processes)
    rates = run_rounds(processes, args.rounds)
    summary = summarise(names, rates, args.processes, args.rounds)
    for name in names:
        s = summary[name]
        print(f'{name:>12}: {s["median_images_per_s"]:,.0f} images/s (median of rounds), / {names[0]}: '
              f'{s["ratio_median"]:.3f} (quartiles {s["ratio_quartiles"][0]:.3f}-{s["ratio_quartiles"][1]:.3f})')
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    checkouts = [{'name': c['name'], 'path': str(c['path']), 'env': c['env'],
                  'git_commit': _commit(c['path'])} for c in args.checkouts]
    out.write_text(json.dumps({'benchmark': 'ab', 'date': time.strftime('%Y-%m-%dT%H:%M:%S'), 'spec': spec,
                               'processes': args.processes, 'rounds_count': args.rounds, 'checkouts': checkouts,
                               'results': summary}, indent=1))
    print(f'results written to {out}')
    return 0


def _commit(path: Path) -> Optional[str]:
    done = subprocess.run(['git', '-C', str(path), 'rev-parse', 'HEAD'], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


if __name__ == '__main__':
    sys.exit(main())
