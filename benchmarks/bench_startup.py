"""bench_startup.py: where a fresh process's time goes before its first batch (issue 17 §3).

    python benchmarks/bench_startup.py                      # val and train on a 1,500-image 256-px file
    python benchmarks/bench_startup.py --cold               # also with an empty numba cache
    python benchmarks/bench_startup.py --profile val        # cProfile of Loader() + first batch (one run)

Each measurement is a fresh process (`--worker`), run once untimed first so that numba's on-disk cache is warm
(the user's second run onwards). The worker times, in order: the interpreter's start (spawn to first line),
``import numpy``, ``import torch``, ``import numba``, ``import ffcv`` and the API the recipes import,
``Loader(...)`` (Reader, memory manager, pipeline build and compilation), ``iter(loader)`` (buffers, worker
threads), the first batch, the rest of the first epoch and one steady epoch. Every numba kernel loaded from
the cache or compiled meanwhile is listed with its time and phase (cache loads timed by wrapping
`numba.core.caching.Cache._load_overload` in the worker, compilations by numba's "numba:compile" event).
`--cold` points NUMBA_CACHE_DIR at an empty folder per process. Medians of `--repeats` processes; JSON in
benchmarks/results/startup.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ('interpreter', 'import_numpy', 'import_torch', 'import_numba', 'import_ffcv', 'loader', 'iter',
          'first_batch')
CASES = {'val': {'pipeline': 'val', 'res': 224}, 'train': {'pipeline': 'train', 'res': 160}}


# --- Worker (one fresh process) ----------------------------------------------------------------------

def qualified(function) -> str:
    return f'{function.__module__}.{function.__qualname__}'


class KernelLog:
    """numba cache loads and compilations, each with its seconds and the phase it happened in."""

    def __init__(self):
        import numba.core.caching as caching
        import numba.core.event as event
        self.phase, self.entries, self._starts = 'import', [], {}
        # the inner load, which both numba's load_overload and ffcv's fast one (installed at import) call
        original = caching.Cache._load_overload
        log = self

        def _load_overload(cache, sig, target_context):
            started = time.perf_counter()
            result = original(cache, sig, target_context)
            what = 'cache load' if result is not None else 'cache miss'
            log.entries.append({'kernel': qualified(cache._py_func), 'what': what,
                                'seconds': time.perf_counter() - started, 'phase': log.phase})
            return result
        caching.Cache._load_overload = _load_overload

        class Compiles(event.Listener):
            def on_start(self, ev):
                log._starts[id(ev.data['dispatcher'])] = time.perf_counter()

            def on_end(self, ev):
                dispatcher = ev.data['dispatcher']
                started = log._starts.pop(id(dispatcher), time.perf_counter())
                log.entries.append({'kernel': qualified(dispatcher.py_func), 'what': 'compile',
                                    'seconds': time.perf_counter() - started, 'phase': log.phase})
        event.register('numba:compile', Compiles())


def worker(spec: dict) -> dict:
    started_wall, started = time.time(), time.perf_counter()
    times = {'interpreter': started_wall - spec['spawned']}
    mark = started

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        times[name] = now - mark
        mark = now

    import numpy  # noqa: F401
    lap('import_numpy')
    import torch  # noqa: F401
    lap('import_torch')
    import numba  # noqa: F401
    lap('import_numba')
    log = KernelLog()
    mark = time.perf_counter()  # the log's set-up is not part of any phase
    import ffcv  # noqa: F401
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder  # noqa: F401
    from ffcv.loader import Loader, OrderOption  # noqa: F401
    from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToTensor, ToTorchImage  # noqa: F401
    lap('import_ffcv')
    sys.path.insert(0, str(HERE))
    from loader_worker import ffcv_loader
    mark = time.perf_counter()
    log.phase = 'loader'
    loader = ffcv_loader(spec)
    lap('loader')
    log.phase = 'iter'
    iterator = iter(loader)
    lap('iter')
    log.phase = 'first_batch'
    images = int(next(iterator)[0].shape[0])
    lap('first_batch')
    log.phase = 'first_epoch_rest'
    for batch in iterator:
        images += int(batch[0].shape[0])
    lap('first_epoch_rest')
    log.phase = 'steady_epoch'
    for batch in loader:
        pass
    lap('steady_epoch')
    from ffcv._numba_cache import package_stamp
    return {'times': times, 'images': images, 'kernels': log.entries, 'package_stamp': package_stamp(),
            'pid': os.getpid()}


def profile(spec: dict) -> None:
    """Print the 25 functions with the most cumulative time in Loader() + first batch (one process)."""
    import cProfile
    import pstats
    import ffcv  # noqa: F401
    sys.path.insert(0, str(HERE))
    from loader_worker import ffcv_loader
    profiler = cProfile.Profile()
    profiler.enable()
    loader = ffcv_loader(spec)
    next(iter(loader))
    profiler.disable()
    pstats.Stats(profiler).sort_stats('cumulative').print_stats(25)


# --- Driver ------------------------------------------------------------------------------------------

def run_worker(spec: dict, cache_dir: str | None, timeout: float) -> dict:
    env = dict(os.environ)
    if cache_dir is not None:
        env['NUMBA_CACHE_DIR'] = cache_dir
    spec = {**spec, 'spawned': time.time()}
    done = subprocess.run([sys.executable, __file__, '--worker', json.dumps(spec)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f'worker failed ({done.returncode}):\n{done.stderr[-3000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list) -> dict:
    """Medians over runs: every phase, time to first batch, first-epoch and steady images/s, kernel totals."""
    keys = list(runs[0]['times'])
    median = {key: statistics.median(run['times'][key] for run in runs) for key in keys}
    to_first = [sum(run['times'][p] for p in PHASES) for run in runs]
    first_epoch = [sum(run['times'][p] for p in PHASES) + run['times']['first_epoch_rest'] for run in runs]
    images = runs[0]['images']
    kernel_phases = {}
    for run in runs:
        totals = {}
        for entry in run['kernels']:
            key = f"{entry['phase']}: {entry['what']}"
            totals[key] = totals.get(key, 0.0) + entry['seconds']
        for key, value in totals.items():
            kernel_phases.setdefault(key, []).append(value)
    return {'median_s': median, 'time_to_first_batch_s': statistics.median(to_first),
            'first_epoch_s_from_spawn': statistics.median(first_epoch),
            'first_epoch_images_per_s_from_spawn': images / statistics.median(first_epoch),
            'first_epoch_images_per_s_from_loader': images / statistics.median(
                run['times']['loader'] + run['times']['iter'] + run['times']['first_batch']
                + run['times']['first_epoch_rest'] for run in runs),
            'steady_images_per_s': images / median['steady_epoch'],
            'kernel_seconds_by_phase': {key: statistics.median(values + [0.0] * (len(runs) - len(values)))
                                        for key, values in sorted(kernel_phases.items())},
            'kernel_count': statistics.median(len(run['kernels']) for run in runs),
            'cache_stamps_seen': sorted({run['package_stamp'] for run in runs})}


def print_summary(name: str, summary: dict) -> None:
    print(f'\n{name}: time to first batch {summary["time_to_first_batch_s"]:.3f} s (median), first epoch '
          f'{summary["first_epoch_images_per_s_from_spawn"]:.0f} images/s from spawn, '
          f'{summary["first_epoch_images_per_s_from_loader"]:.0f} from Loader(), steady '
          f'{summary["steady_images_per_s"]:.0f}')
    for phase, seconds in summary['median_s'].items():
        print(f'  {phase:<18} {seconds * 1000:8.1f} ms')
    for key, seconds in summary['kernel_seconds_by_phase'].items():
        print(f'    numba {key:<34} {seconds * 1000:8.1f} ms')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--profile', choices=sorted(CASES), help='cProfile one case instead of measuring')
    parser.add_argument('--cases', default='val,train', help=f'comma-separated from: {", ".join(CASES)}')
    parser.add_argument('--count', type=int, default=1500, help='images in the 256-px photo file')
    parser.add_argument('--repeats', type=int, default=5, help='fresh processes per case (medians)')
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--cold', action='store_true', help='also measure with an empty numba cache')
    parser.add_argument('--data-dir', default='/tmp/ffcv_bench', help='where the dataset is written once')
    parser.add_argument('--timeout', type=float, default=600)
    parser.add_argument('--out', default=str(HERE / 'results' / 'startup.json'))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        sys.stdout.write(json.dumps(worker(json.loads(args.worker))) + '\n')
        sys.stdout.flush()
        os._exit(0)  # interpreter teardown is not part of start-up
    sys.path.insert(0, str(HERE))
    import anchor
    bench_loader = anchor.load_sibling('bench_loader')
    path = bench_loader.dataset_path(Path(args.data_dir), 'photo256', args.count, 0)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        bench_loader.write_dataset(path, 'photo256', args.count, 0, args.num_workers)
    base = {'path': str(path), 'batch_size': args.batch_size, 'num_workers': args.num_workers, 'seed': 0}
    if args.profile:
        return profile({**base, **CASES[args.profile]})
    load_before = os.getloadavg()
    results = {}
    for name in args.cases.split(','):
        spec = {**base, **CASES[name]}
        run_worker(spec, None, args.timeout)  # fills the numba cache if needed: not measured
        runs = [run_worker(spec, None, args.timeout) for _ in range(args.repeats)]
        results[name] = {'warm': summarise(runs), 'runs_warm': runs}
        print_summary(f'{name} (warm numba cache)', results[name]['warm'])
        if args.cold:
            with tempfile.TemporaryDirectory() as scratch:
                cold = [run_worker(spec, os.path.join(scratch, str(k)), args.timeout) for k in range(args.repeats)]
            results[name].update(cold=summarise(cold), runs_cold=cold)
            print_summary(f'{name} (empty numba cache)', results[name]['cold'])
    report = {'benchmark': 'startup', 'file': {'path': str(path), 'images': args.count, 'kind': 'photo256 jpg q90'},
              'batch_size': args.batch_size, 'num_workers': args.num_workers, 'repeats': args.repeats,
              'load_average_before': load_before, 'load_average_after': os.getloadavg(),
              'environment': anchor.environment_info(None), 'cases': results}
    anchor.write_report(report, args.out)


if __name__ == '__main__':
    main()
