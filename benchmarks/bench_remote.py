"""bench_remote.py: training from a .beton behind HTTP vs from a local file, on the benchmark photo set.

Setup: benchmarks/data.py's photo-like images as JPEG (max side 256, quality 90) + label, written once with
our writer into --data-dir; a real nginx on loopback serves the file through the tests' fault-injecting
proxy (tests/servers.py) set to --latency (default 20 ms before each answer) and --bandwidth (default
200 MB/s for all connections together). Pipeline: RandomResizedCrop 160 + flip, QUASI_RANDOM order,
batch 256, every CPU as workers.

Each measurement runs in a fresh process (this script with --worker) and times --epochs epochs:
  local   Loader(path) (OS page cache, file warm in RAM)
  remote  Loader(url, remote={'cache_dir': <fresh folder>}): epoch 1 fetches every page through the
          proxy (cold), later epochs read the disk page cache (warm)
  alternating  both loaders in one process, each run once (compiled, page cache warm), then their epochs
          alternate, so both see the same moments of the machine's load
Reported (medians over --repeats rounds): images/s of epoch 1 and of the later epochs, the images/s the
bandwidth allows (images / (file size / bandwidth)), peak RSS; ratios
  remote epoch 1 / min(local epoch 1, bandwidth bound)     (goal: close to 1: the fetch is hidden or bound)
  remote warm epochs / local epochs, alternating          (goal: >= 0.95)
Both epoch-1 figures include the pipelines' compilation (the same in both). The machine's other load is
recorded with each result.

  python benchmarks/bench_remote.py --quick         # 1,200 images, 3 epochs, 1 repeat
  python benchmarks/bench_remote.py                 # 3,000 images, 4 epochs, 3 repeats
JSON: benchmarks/results/remote.json (--out; the committed copy is the one docs/remote.md quotes).
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- Data ----------------------------------------------------------------------------------------

def prepare(data_dir: Path, count: int, seed: int) -> Path:
    """The photo set as .beton (written once, reused)."""
    path = data_dir / f'remote_photo256_n{count}_s{seed}.beton'
    if path.exists():
        return path
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    data = _load(HERE / 'data.py', 'ffcv_bench_data')
    dataset = data.LazyPhotoDataset(count, seed)
    fields = {'image': RGBImageField(write_mode='jpg', max_resolution=256, jpeg_quality=90), 'label': IntField()}
    data_dir.mkdir(parents=True, exist_ok=True)
    DatasetWriter(str(path), fields).from_indexed_dataset(dataset, chunksize=100, progress=False)
    return path


# --- One measurement (a fresh process) -----------------------------------------------------------

def _loader(source: str, cache_dir=None):
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage
    pipelines = {'image': [RandomResizedCropRGBImageDecoder((160, 160)), RandomHorizontalFlip(), ToTensor(),
                           ToTorchImage()],
                 'label': [IntDecoder(), ToTensor()]}
    return Loader(source, batch_size=256, num_workers=-1, order=OrderOption.QUASI_RANDOM, seed=0,
                  pipelines=pipelines, drop_last=False,
                  remote=None if cache_dir is None else {'cache_dir': cache_dir})


def _epoch(loader) -> tuple:
    """(images, seconds) of one epoch."""
    start = time.perf_counter()
    count = sum(int(images.shape[0]) for images, _ in loader)
    return count, time.perf_counter() - start


def worker(spec: dict) -> dict:
    """One measurement; JSON-ready result.

    local / remote: `epochs` epochs of one loader (the first includes compilation; remote: cold page cache).
    alternating: a local and a remote loader, each run once (compiled, cache warm), then their epochs
    alternate `epochs` times, so both see the same moments of the machine's load.
    """
    import numpy as np
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731
    if spec['system'] == 'alternating':
        loaders = {'local': _loader(spec['source']), 'remote': _loader(spec['url'], spec['cache_dir'])}
        for loader in loaders.values():
            _epoch(loader)
        rates = {name: [] for name in loaders}
        for _ in range(spec['epochs']):
            for name, loader in loaders.items():
                count, seconds = _epoch(loader)
                rates[name].append(count / seconds)
        return {'system': 'alternating', 'local_images_per_s': rates['local'], 'remote_images_per_s': rates['remote'],
                'warm_ratio': float(np.median(rates['remote']) / np.median(rates['local']))}
    loader = _loader(spec['source'], spec['cache_dir'] if spec['system'] == 'remote' else None)
    times, count = [], 0
    for _ in range(spec['epochs']):
        count, seconds = _epoch(loader)
        times.append(seconds)
    result = {'system': spec['system'], 'images': count, 'epoch_seconds': times,
              'first_images_per_s': count / times[0],
              'later_images_per_s': float(np.median([count / t for t in times[1:]])), 'peak_rss_mb': peak()}
    if spec['system'] == 'remote':
        result['stats'] = dict(loader.memory_manager.stats)
    return result


def busy_cores(seconds: float = 0.5) -> float:
    """Cores busy on the machine (all processes), sampled over `seconds`."""
    def busy():
        with open('/proc/stat') as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return sum(values) - values[3] - values[4], sum(values)
    (b0, t0), _ = busy(), time.sleep(seconds)
    b1, t1 = busy()
    return (b1 - b0) / max(t1 - t0, 1) * os.cpu_count()


def measure(spec: dict, timeout: float) -> dict:
    load_before = busy_cores()
    output = subprocess.run([sys.executable, __file__, '--worker', json.dumps(spec)], capture_output=True,
                            text=True, timeout=timeout, cwd=ROOT)
    if output.returncode:
        raise RuntimeError(f'{spec["system"]} failed:\n{output.stderr[-3000:]}')
    result = json.loads(output.stdout.strip().splitlines()[-1])
    result['busy_cores_before'] = round(load_before, 2)
    return result


# --- Main ----------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='1,200 images, 3 epochs, 1 repeat')
    parser.add_argument('--count', type=int, help='images (default 3000; --quick 1200)')
    parser.add_argument('--epochs', type=int, help='epochs per measurement (default 4; --quick 3)')
    parser.add_argument('--repeats', type=int, help='rounds (default 3; --quick 1)')
    parser.add_argument('--latency', type=float, default=0.020, help='seconds before each answer (default 0.020)')
    parser.add_argument('--bandwidth', type=float, default=200e6, help='bytes/s, all connections (default 200e6)')
    parser.add_argument('--data-dir', default=os.path.join(tempfile.gettempdir(), 'ffcv-bench-data'))
    parser.add_argument('--out', default=str(ROOT / 'benchmarks' / 'results' / 'remote.json'))
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per measurement')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.count = args.count or (1200 if args.quick else 3000)
    args.epochs = max(args.epochs or (3 if args.quick else 4), 2)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    servers = _load(ROOT / 'tests' / 'servers.py', 'ffcv_bench_servers')
    path = prepare(Path(args.data_dir), args.count, 0)
    size = path.stat().st_size
    server = servers.nginx()
    shutil.copy(path, os.path.join(server.root, path.name))
    proxy = servers.FaultProxy(server.port)
    proxy.latency, proxy.bandwidth = args.latency, args.bandwidth
    runs = {'local': [], 'remote': [], 'alternating': []}
    try:
        for round_index in range(args.repeats):
            for system in runs:
                cache = tempfile.mkdtemp(prefix='ffcv-bench-cache-')
                spec = {'system': system, 'epochs': args.epochs, 'cache_dir': cache, 'url': proxy.url(path.name),
                        'source': proxy.url(path.name) if system == 'remote' else str(path)}
                try:
                    result = measure(spec, args.timeout)
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
                runs[system].append(result)
                if system == 'alternating':
                    print(f'round {round_index + 1} alternating warm epochs: remote / local = '
                          f'{result["warm_ratio"]:.3f}', flush=True)
                else:
                    print(f'round {round_index + 1} {system}: epoch 1 {result["first_images_per_s"]:,.0f} images/s, '
                          f'later {result["later_images_per_s"]:,.0f} images/s, peak RSS '
                          f'{result["peak_rss_mb"]:.0f} MB (other load before: {result["busy_cores_before"]} cores)',
                          flush=True)
    finally:
        proxy.close()
        server.stop()
    summary = {system: {key: statistics.median(r[key] for r in runs[system])
                        for key in ('first_images_per_s', 'later_images_per_s', 'peak_rss_mb')}
               for system in ('local', 'remote')}
    bandwidth_bound = args.count / (size / args.bandwidth)
    ratios = {
        'remote_first_vs_bound': summary['remote']['first_images_per_s']
        / min(summary['local']['first_images_per_s'], bandwidth_bound),
        'remote_first_vs_local_first': summary['remote']['first_images_per_s'] / summary['local']['first_images_per_s'],
        'remote_warm_vs_local': statistics.median(r['warm_ratio'] for r in runs['alternating']),
        'remote_warm_vs_local_separate_processes': summary['remote']['later_images_per_s']
        / summary['local']['later_images_per_s'],
        'remote_peak_rss_vs_local': summary['remote']['peak_rss_mb'] / summary['local']['peak_rss_mb'],
    }
    report = {'file_bytes': size, 'images': args.count, 'epochs': args.epochs, 'repeats': args.repeats,
              'latency_s': args.latency, 'bandwidth_bytes_per_s': args.bandwidth, 'cpus': os.cpu_count(),
              'bandwidth_bound_images_per_s': bandwidth_bound, 'summary': summary, 'ratios': ratios,
              'goals': {'remote_warm_vs_local >= 0.95': ratios['remote_warm_vs_local'] >= 0.95},
              'runs': runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({'bandwidth_bound_images_per_s': round(bandwidth_bound), 'summary': summary,
                      'ratios': {k: round(v, 3) for k, v in ratios.items()}}, indent=2))
    print(f'JSON: {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
