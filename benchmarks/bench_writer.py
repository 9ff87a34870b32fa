"""bench_writer.py: DatasetWriter throughput, ours vs FFCV 1.0.2, on the same generated data.

Cases (benchmarks/data.py `WRITER_CASES`), each with an IntField label:
  jpeg      2,000 photo-like images (350-500 px, partly procedural) -> RGBImageField(write_mode='jpg',
            max_resolution=256, jpeg_quality=90); goal: >= 1.5x FFCV
  photo     1,500 photographs (crops of scikit-image's sample photos at random 350-500 px sides, a little
            noise) -> the same field; goal: >= 1.5x FFCV
  photo50k  50,000 of them (1,500 distinct, cycled with a faint noise band per pass: see data.py) -> the
            same field; goal: >= 1.5x FFCV
  raw       10,000 CIFAR-like 32x32 images -> RGBImageField() (raw); goal: >= 1x FFCV

Both writers use the same number of worker processes (default: every CPU this process may use) and
write to the same folder. The datasets are generated into memory first (in both interpreters, from the
same seeded generator; a digest confirms they are identical), and only the `from_indexed_dataset` call
is timed. Runs alternate ours / FFCV after one untimed warm-up each; medians are reported.

  python benchmarks/bench_writer.py                  # full run, JSON in bench_results/writer.json
  python benchmarks/bench_writer.py --quick          # smoke run (200 to 3,000 images per case)
  python benchmarks/bench_writer.py --cases photo,photo50k --repeats 2
  python benchmarks/bench_writer.py --anchor-python /path/to/ffcv-1.0.2-venv/bin/python
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

_spec = importlib.util.spec_from_file_location('ffcv_bench_anchor', Path(__file__).with_name('anchor.py'))
anchor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anchor)
data = anchor.load_sibling('data')

GOALS = {'jpeg': 1.5, 'photo': 1.5, 'photo50k': 1.5, 'raw': 1.0}   # required ratio ours / FFCV 1.0.2 (images/s)


# --- Ours (in this process) ----------------------------------------------------------------------

def cpu_seconds() -> float:
    """CPU time of this process and of its children that have been waited for (the writer's pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def write_ours(dataset, case: dict, path: str, num_workers: int) -> Dict[str, float]:
    """One timed write with our DatasetWriter; the file is removed afterwards."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    fields = {'image': RGBImageField(**case['image_args']), 'label': IntField()}
    writer = DatasetWriter(path, fields, num_workers=num_workers)
    cpu_start, start = cpu_seconds(), time.perf_counter()
    writer.from_indexed_dataset(dataset, chunksize=100, progress=False)
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    size = os.path.getsize(path)
    os.unlink(path)
    return {'seconds': seconds, 'cpu_seconds': cpu, 'file_bytes': size}


# --- FFCV 1.0.2 (anchor interpreter, a worker process) --------------------------------------------

class AnchorWriter:
    """The FFCV 1.0.2 worker (benchmarks/anchor_write_worker.py) for one case, driven line by line."""

    def __init__(self, python: str, case_name: str, count: int, seed: int, num_workers: int, workdir: str):
        self.log_path = os.path.join(workdir, f'anchor_{case_name}.log')
        self.log = open(self.log_path, 'w')
        args = ['--case', case_name, '--count', count, '--seed', seed, '--num-workers', num_workers,
                '--workdir', workdir, '--digest']
        self.process = subprocess.Popen(anchor.anchor_command(python, 'anchor_write_worker.py', args),
                                        cwd=workdir, env=anchor.clean_env(), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)

    def _receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.log.flush()
            tail = Path(self.log_path).read_text()[-3000:]
            raise RuntimeError(f'FFCV 1.0.2 worker exited (code {self.process.returncode}); its stderr ends:\n'
                               f'{tail}')
        message = json.loads(line)
        if 'error' in message:
            raise RuntimeError(f"FFCV 1.0.2 worker: {message['error']}")
        return message

    def ready(self) -> dict:
        return self._receive()

    def run(self) -> Dict[str, float]:
        self.process.stdin.write('run\n')
        self.process.stdin.flush()
        return self._receive()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write('quit\n')
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.log.close()


# --- One case ------------------------------------------------------------------------------------

def bench_case(name: str, args, workdir: str, anchor_python: Optional[str]) -> dict:
    case = data.WRITER_CASES[name]
    count = case['quick_count'] if args.quick else case['count']
    print(f'\n[{name}] {count} {case["kind"]} images, RGBImageField({case["image_args"]}) + IntField, '
          f'{args.num_workers} workers, {args.repeats} repeats', flush=True)
    other = None
    if anchor_python:  # the anchor generates its copy of the data while we generate ours
        other = AnchorWriter(anchor_python, name, count, args.seed, args.num_workers, workdir)
    try:
        start = time.perf_counter()
        dataset = data.make_dataset(case['kind'], count, args.seed)
        print(f'  generated in {time.perf_counter() - start:.1f} s', flush=True)
        digest = data.dataset_digest(dataset)
        result = {'count': count, 'kind': case['kind'], 'image_args': case['image_args'], 'digest': digest,
                  'ours': [], 'ffcv': [], 'goal_ratio': GOALS[name]}
        if other is not None:
            ready = other.ready()
            result['ffcv_module'] = ready['ffcv_file']
            if Path(ready['ffcv_file']).resolve().is_relative_to(anchor.HERE.parent):
                raise RuntimeError(f"the anchor interpreter imported our ffcv ({ready['ffcv_file']})")
            if ready['digest'] != digest:
                raise RuntimeError(f'the two interpreters generated different data ({digest[:12]} vs '
                                   f"{ready['digest'][:12]}): are numpy / opencv versions the same?")
        path = os.path.join(workdir, f'ours_{name}.beton')
        runners = {'ours': lambda: write_ours(dataset, case, path, args.num_workers)}
        if other is not None:
            runners['ffcv'] = other.run
        for warm_up in range(args.warmup):
            for runner in runners.values():
                runner()
        for repeat in range(args.repeats):
            order = list(runners) if repeat % 2 == 0 else list(runners)[::-1]
            for who in order:
                measured = runners[who]()
                result[who].append(measured)
                print(f'  repeat {repeat + 1} {who:>4}: {count / measured["seconds"]:10,.0f} images/s '
                      f'({measured["seconds"]:.3f} s, CPU {measured["cpu_seconds"] / count * 1e3:.3f} ms/image, '
                      f'{measured["file_bytes"] / count / 1024:.1f} KiB/image)', flush=True)
    finally:
        if other is not None:
            other.close()
    for who in ('ours', 'ffcv'):
        if result[who]:
            seconds = statistics.median(r['seconds'] for r in result[who])
            result[f'{who}_median_images_per_s'] = count / seconds
            result[f'{who}_bytes_per_image'] = statistics.median(r['file_bytes'] for r in result[who]) / count
            result[f'{who}_cpu_ms_per_image'] = statistics.median(r['cpu_seconds'] for r in result[who]) / count * 1e3
    if result['ffcv']:
        result['ratio'] = result['ours_median_images_per_s'] / result['ffcv_median_images_per_s']
        result['cpu_ratio'] = result['ffcv_cpu_ms_per_image'] / result['ours_cpu_ms_per_image']
        result['meets_goal'] = result['ratio'] >= GOALS[name]
    return result


# --- Report --------------------------------------------------------------------------------------

def print_table(results: Dict[str, dict]) -> None:
    """Median wall-clock throughput (the goal) and median CPU time per image (all processes; steadier
    than wall time when other work shares the machine)."""
    def cell(value, form):
        return format(value, form) if value is not None else 'n/a'
    header = (f'{"case":<6}{"images":>8}{"ours img/s":>12}{"FFCV img/s":>12}{"ours/FFCV":>11}{"goal":>7}'
              f'{"ours CPU ms":>13}{"FFCV CPU ms":>13}{"CPU ratio":>11}{"KiB/img ours":>14}{"FFCV":>7}')
    print('\n' + header + '\n' + '-' * len(header))
    for name, r in results.items():
        ratio = f'{r["ratio"]:.2f}x' if 'ratio' in r else 'n/a'
        cpu_ratio = f'{r["cpu_ratio"]:.2f}x' if 'cpu_ratio' in r else 'n/a'
        verdict = '' if 'meets_goal' not in r else ('  ok' if r['meets_goal'] else '  BELOW GOAL')
        ffcv_kib = r.get('ffcv_bytes_per_image')
        print(f'{name:<6}{r["count"]:>8}{r["ours_median_images_per_s"]:>12,.0f}'
              f'{cell(r.get("ffcv_median_images_per_s"), ",.0f"):>12}{ratio:>11}{r["goal_ratio"]:>6.1f}x'
              f'{r["ours_cpu_ms_per_image"]:>13.3f}{cell(r.get("ffcv_cpu_ms_per_image"), ".3f"):>13}{cpu_ratio:>11}'
              f'{r["ours_bytes_per_image"] / 1024:>14.1f}{cell(ffcv_kib / 1024 if ffcv_kib else None, ".1f"):>7}'
              f'{verdict}')


def parse_args(argv: Optional[List[str]] = None):
    from ffcv.writer import available_cpus
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per writer and case (median)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs per writer and case first')
    parser.add_argument('--quick', action='store_true', help='smaller datasets, for a smoke run')
    parser.add_argument('--cases', default='jpeg,photo,photo50k,raw', help=f'comma-separated: {", ".join(GOALS)}')
    parser.add_argument('--num-workers', type=int, default=available_cpus(), help='writer processes (both)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--anchor-python', default=anchor.default_anchor_python(),
                        help='python of the FFCV 1.0.2 environment (env FFCV_ANCHOR_PYTHON)')
    parser.add_argument('--out', default='bench_results/writer.json', help='JSON results file')
    parser.add_argument('--workdir', default=None, help='where the .beton files are written (default: a temp dir)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    anchor_python = args.anchor_python if anchor.anchor_available(args.anchor_python) else None
    if anchor_python is None:
        print(f'FFCV 1.0.2 environment not found at {args.anchor_python} (build it with {anchor.SETUP_HINT}); '
              'reporting ours only. (The torch DataLoader baseline does not apply to writing.)')
    workdir = tempfile.mkdtemp(prefix='ffcv-bench-writer-', dir=args.workdir)
    load_before = tuple(round(v, 1) for v in os.getloadavg())
    try:
        results = {name: bench_case(name, args, workdir, anchor_python) for name in args.cases.split(',')}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    load = {'before': load_before, 'after': tuple(round(v, 1) for v in os.getloadavg())}
    print(f'\nload average (1, 5, 15 min) before {load["before"]}, after {load["after"]} on '
          f'{os.cpu_count()} CPUs: other work on the machine slows both writers and adds noise; '
          'the CPU-time columns are the steadier comparison')
    report = {'benchmark': 'writer', 'quick': args.quick, 'repeats': args.repeats, 'warmup': args.warmup,
              'num_workers': args.num_workers, 'load_average': load,
              'environment': anchor.environment_info(anchor_python), 'cases': results}
    anchor.write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
