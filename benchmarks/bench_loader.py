"""bench_loader.py: Loader throughput and memory, ours vs FFCV 1.0.2, torch DataLoader, DALI, SPDL, same data.

Datasets (benchmarks/data.py generators, written once with OUR writer and cached in --data-dir; FFCV 1.0.2
reads the very same .beton files):
  photo256  5,000 photo-like images (350-500 px) as JPEG, max_resolution 256, quality 90, + IntField label
  photo500  the same images, max_resolution 500 (i.e. full size)
  cifar     50,000 CIFAR-like 32x32 raw images + IntField label
Cases (pipeline on dataset; every image pipeline ends with ToTensor + ToTorchImage, labels IntDecoder +
ToTensor + Squeeze):
  train / train500  RandomResizedCrop 160 + RandomHorizontalFlip, RANDOM order, batch 256, drop_last
  val / val500      CenterCrop 224 (ratio 224/256), SEQUENTIAL order, batch 256
  cifar             flip + RandomTranslate(2) + Cutout(4), RANDOM order, batch 512 (needs our translate/cutout)
  cifar_flip        flip only (raw-decode throughput; runs whatever transforms exist)
  multiview         FFCV's graph: one center-crop decode, 8 views branching off it (ours and FFCV)
  dino              DINO's 2 x 224 + 6 x 96 views by name from the photo256 JPEGs, batch 64: each a random
                    resized crop (scale 0.4-1 / 0.05-0.4) + flip + colour jitter, grayscale, blur, solarization
                    (those four when ffcv.transforms has them; the report says), ours vs torch DataLoader +
                    torchvision v2 (one PIL decode per image, the same transforms per view)
  dino_separate     the same 8 views, each decoding the JPEG again (ours only): the cost decode-once saves
  dino_1view        only the first global view (ours and torch): the report gives the cost of 8 views per
                    sample over 1 (one decode per sample: well under 8x)
Systems, all with the same thread / worker count (default: every CPU this process may use):
  ours   ffcv.loader.Loader (threads)
  ffcv   FFCV 1.0.2 in its own environment (--anchor-python), the same script and pipelines
  torch  torch.utils.data.DataLoader, workers = threads, persistent_workers, the same images held in
         memory (JPEG bytes decoded with PIL, or --torch-decoder torchvision) with torchvision transforms
  dali   NVIDIA DALI on the CPU (device_id=None, num_threads = threads; benchmarks/dali_loader.py): the same
         JPEG bytes in memory through fn.external_source -> decoders.image_random_crop -> resize ->
         crop_mirror_normalize (train) or decoders.image -> resize(resize_shorter) -> crop_mirror_normalize
         (val); cases train, val, train500 and val500 only
  spdl   SPDL (benchmarks/spdl_loader.py): the same JPEG bytes, spdl.io demux + decode with an FFmpeg filter
         graph that crops, scales and flips, in a spdl.pipeline of `threads` concurrency; the same cases
Every measurement runs in its own fresh process (benchmarks/loader_worker.py): the first epoch and the wait
for its first batch are timed from the loader's construction (compilation included; 'first_batch' in the
results, '1st b.' in the table), then `--epochs - 1` steady epochs (median), and
the process's peak RSS (torch, DALI, SPDL also: RSS / PSS summed over the process tree, sampled). The first
batch of every system is checked in the worker (shape, dtype, plausible pixels). Systems alternate within
each of `--repeats` rounds; medians are reported.
On a shared machine, each measurement waits (--max-wait) for the machine to be quiet; one during which
other processes still used more than --max-other-load cores is repeated (--retries) and the quietest
attempt kept; medians use the undisturbed runs when there are any (every result records the other load).

  python benchmarks/bench_loader.py                   # full run, JSON in bench_results/loader.json
  python benchmarks/bench_loader.py --quick           # smoke run (1,000 photos, 10,000 CIFAR, 1 repeat)
  python benchmarks/bench_loader.py --cases train,val --systems ours,ffcv
  python benchmarks/bench_loader.py --quick --cases dino,dino_separate,dino_1view --systems ours,torch
  python benchmarks/bench_loader.py --quick --cases train,val --systems ours,dali,spdl

Peers: DALI and SPDL are not dependencies of the project (CI does not install them); a system whose
package does not import (or, for SPDL, cannot decode a JPEG) is skipped with a one-line reason. To include them:
  pip install nvidia-dali-cuda130      # DALI 2.4 wheels (~200 MB); runs on the CPU, no GPU or CUDA needed
  pip install spdl                     # SPDL 0.8 (spdl-io / spdl-core wheels); it also needs FFmpeg's shared
  apt-get install libavdevice59        #   libraries, versions 4-9 (this line: Debian 12's FFmpeg 5.1)
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
from typing import Dict, List, Optional

import numpy as np

_spec = importlib.util.spec_from_file_location('ffcv_bench_anchor', Path(__file__).with_name('anchor.py'))
anchor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anchor)
data = anchor.load_sibling('data')

WORKER = 'loader_worker.py'
SYSTEMS = ('ours', 'ffcv', 'torch', 'dali', 'spdl')
PEERS = ('dali', 'spdl')  # benchmarks/dali_loader.py, spdl_loader.py: photo train / val pipelines only
TREE_SAMPLED = ('torch', *PEERS)  # systems whose worker also samples RSS / PSS over the process tree

# Dataset sizes (full / --quick) and how each is written.
DATASETS = {
    'photo256': {'kind': 'photo', 'count': 5000, 'quick_count': 1000,
                 'image_args': {'write_mode': 'jpg', 'max_resolution': 256, 'jpeg_quality': 90}},
    'photo500': {'kind': 'photo', 'count': 5000, 'quick_count': 1000,
                 'image_args': {'write_mode': 'jpg', 'max_resolution': 500, 'jpeg_quality': 90}},
    'cifar': {'kind': 'cifar', 'count': 50000, 'quick_count': 10000, 'image_args': {'write_mode': 'raw'}},
}
CASES = {
    'train': {'dataset': 'photo256', 'pipeline': 'train', 'res': 160, 'batch_size': 256},
    'val': {'dataset': 'photo256', 'pipeline': 'val', 'res': 224, 'batch_size': 256},
    'train500': {'dataset': 'photo500', 'pipeline': 'train', 'res': 160, 'batch_size': 256},
    'val500': {'dataset': 'photo500', 'pipeline': 'val', 'res': 224, 'batch_size': 256},
    'cifar': {'dataset': 'cifar', 'pipeline': 'cifar', 'res': 32, 'batch_size': 512,
              'systems': ('ours', 'ffcv', 'torch')},
    'cifar_flip': {'dataset': 'cifar', 'pipeline': 'cifar_flip', 'res': 32, 'batch_size': 512,
                   'systems': ('ours', 'ffcv', 'torch')},
    # FFCV's multi-view graph (8 views of one decode); ours and FFCV only (no torch baseline for it here)
    'multiview': {'dataset': 'photo256', 'pipeline': 'multiview', 'res': 256, 'batch_size': 64,
                  'systems': ('ours', 'ffcv')},
    # DINO's views by name (benchmarks/loader_worker.py: DINO_PIPELINES); decode once vs each view on its own
    # (the first `samples` images only, --quick: `quick_samples`: the torch baseline runs a few images/s here)
    'dino': {'dataset': 'photo256', 'pipeline': 'dino', 'res': 224, 'batch_size': 64, 'systems': ('ours', 'torch'),
             'samples': 1024, 'quick_samples': 320},
    'dino_separate': {'dataset': 'photo256', 'pipeline': 'dino_separate', 'res': 224, 'batch_size': 64,
                      'systems': ('ours',), 'samples': 1024, 'quick_samples': 320},
    'dino_1view': {'dataset': 'photo256', 'pipeline': 'dino_1view', 'res': 224, 'batch_size': 64,
                   'systems': ('ours', 'torch'), 'samples': 1024, 'quick_samples': 320},
}
DEFAULT_CASES = 'train,val,train500,val500,cifar'
# Goals of the Loader issue and of issue 17 (first batch and first epoch ahead of DALI's, peak RSS at or below
# every peer's): (metric, system compared with, required ratio: ours / other; for 'rss' and 'first_batch', the
# seconds to the first batch, other / ours).
GOALS = {
    'train': [('steady', 'ffcv', 1.3), ('steady', 'torch', 3.0), ('first', 'ffcv', 3.0), ('rss', 'ffcv', 1.0),
              ('first', 'dali', 1.0), ('first_batch', 'dali', 1.0), ('rss', 'dali', 1.0), ('rss', 'spdl', 1.0)],
    'val': [('steady', 'ffcv', 1.2), ('rss', 'ffcv', 1.0)],
    'cifar': [('steady', 'ffcv', 1.0), ('rss', 'ffcv', 1.0)],
    'multiview': [('steady', 'ffcv', 2.0)],
    'dino': [('steady', 'torch', 3.0)],
}


# --- Data ------------------------------------------------------------------------------------------

def dataset_path(data_dir: Path, name: str, count: int, seed: int) -> Path:
    return data_dir / f'{name}_n{count}_s{seed}.beton'


def write_dataset(path: Path, name: str, count: int, seed: int, num_workers: int) -> None:
    """Write one benchmark dataset with our DatasetWriter (atomic: the file appears only when complete)."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    info = DATASETS[name]
    if info['kind'] == 'photo':
        dataset = data.LazyPhotoDataset(count, seed)  # generated in the writer's worker processes
    else:
        dataset = data.make_dataset(info['kind'], count, seed)
    fields = {'image': RGBImageField(**info['image_args']), 'label': IntField()}
    start = time.perf_counter()
    DatasetWriter(str(path), fields, num_workers=num_workers).from_indexed_dataset(dataset, chunksize=100,
                                                                                  progress=False)
    print(f'  wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} s',
          flush=True)


def export_for_torch(beton: Path, out: Path) -> None:
    """The images of `beton` as the torch baseline holds them: JPEG bytes (blob + offsets) or raw pixels."""
    from ffcv.reader import Reader
    reader = Reader(str(beton))
    column = reader.metadata['f0']
    labels = reader.metadata['f1'].astype(np.int64)
    blobs = [reader.read(int(ptr)) for ptr in column['data_ptr']]
    tmp = out.with_suffix('.tmp.npz')
    if (column['mode'] == 1).all():  # raw images of one size
        height, width = int(column['height'][0]), int(column['width'][0])
        images = np.stack([b.reshape(height, width, 3) for b in blobs])
        np.savez(tmp, images=images, labels=labels)
    else:
        offsets = np.zeros(len(blobs) + 1, np.int64)
        offsets[1:] = np.cumsum([b.size for b in blobs])
        np.savez(tmp, blob=np.concatenate(blobs), offsets=offsets, labels=labels)
    reader.close()
    os.replace(tmp, out)


def prepare_data(data_dir: Path, names: List[str], quick: bool, seed: int, num_workers: int) -> Dict[str, dict]:
    """Write (once) every dataset in `names`; {name: {'path', 'torch_data', 'count'}}."""
    data_dir.mkdir(parents=True, exist_ok=True)
    prepared = {}
    for name in names:
        count = DATASETS[name]['quick_count' if quick else 'count']
        path = dataset_path(data_dir, name, count, seed)
        torch_data = path.with_suffix('.torch.npz')
        if not path.exists():
            print(f'[data] writing {name}: {count} {DATASETS[name]["kind"]} images, {DATASETS[name]["image_args"]}',
                  flush=True)
            write_dataset(path, name, count, seed, num_workers)
        if not torch_data.exists():
            export_for_torch(path, torch_data)
        prepared[name] = {'path': str(path), 'torch_data': str(torch_data), 'count': count,
                          'file_mb': path.stat().st_size / 2**20}
    return prepared


def warm_page_cache(path: str) -> None:
    """Read the file once so that every system finds it in the page cache."""
    with open(path, 'rb') as f:
        while f.read(1 << 24):
            pass


# --- Running one measurement -----------------------------------------------------------------------

def run_measurement(system: str, spec: dict, anchor_python: Optional[str], timeout: float) -> dict:
    """Run loader_worker.py in a fresh process for `system`; its JSON result."""
    spec = dict(spec, system=system)
    if system == 'ffcv':
        command = anchor.anchor_command(anchor_python, WORKER, [json.dumps(spec)])
        env, cwd = anchor.clean_env(), str(Path(spec['path']).parent)
    else:
        command = [sys.executable, str(anchor.HERE / WORKER), json.dumps(spec)]
        env, cwd = dict(os.environ), str(anchor.HERE.parent)
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f'{system} measurement failed (exit {done.returncode}):\n{done.stderr[-3000:]}')
    result = json.loads(lines[-1])
    if system == 'ffcv' and Path(result['ffcv_file']).resolve().is_relative_to(anchor.HERE.parent):
        raise RuntimeError(f"the anchor interpreter imported our ffcv ({result['ffcv_file']})")
    if system == 'ours' and not Path(result['ffcv_file']).resolve().is_relative_to(anchor.HERE.parent):
        raise RuntimeError(f"our interpreter imported another ffcv ({result['ffcv_file']})")
    result['first_images_per_s'] = result['images'] / result['first_epoch_s']
    result['steady_images_per_s'] = result['images'] / statistics.median(result['epoch_s'])
    return result


def busy_cores(seconds: float = 1.0) -> float:
    """CPU cores the whole machine used over the next `seconds` (from /proc/stat)."""
    def busy() -> float:
        with open('/proc/stat') as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
        return (sum(values) - values[3] - values[4]) / os.sysconf('SC_CLK_TCK')
    start = busy()
    time.sleep(seconds)
    return (busy() - start) / seconds


def wait_until_quiet(limit: float, max_wait: float) -> None:
    """Wait (at most `max_wait` s) until other processes use no more than `limit` cores."""
    deadline = time.monotonic() + max_wait
    while busy_cores() > limit and time.monotonic() < deadline:
        pass


def measure_quietly(system: str, spec: dict, anchor_python: Optional[str], args) -> dict:
    """`run_measurement` once the machine is quiet, repeated (up to --retries times) while other processes
    still used more than --max-other-load cores meanwhile; the attempt with the least other load is kept."""
    attempts = []
    for attempt in range(args.retries + 1):
        wait_until_quiet(args.max_other_load, args.max_wait)
        attempts.append(run_measurement(system, spec, anchor_python, args.timeout))
        if attempts[-1]['other_load_cores'] <= args.max_other_load:
            break
        print(f"  ({system}: other processes used {attempts[-1]['other_load_cores']:.1f} cores meanwhile; "
              f"{'measuring again' if attempt < args.retries else 'keeping the quietest attempt'})", flush=True)
    best = min(attempts, key=lambda r: r['other_load_cores'])
    best['other_load_attempts'] = [r['other_load_cores'] for r in attempts]
    return best


PEER_DISTRIBUTIONS = {'dali': 'nvidia-dali-cuda130', 'spdl': 'spdl'}  # pip names, for the report's versions


def peer_unavailable(system: str) -> Optional[str]:
    """Why the peer `system` ('dali' or 'spdl') cannot run here (one line), or None when it can.

    Asked in a fresh interpreter, so that this process never loads the peer's libraries (SPDL installs
    glog's signal handlers, which the writer's forked worker processes would inherit)."""
    code = ('import importlib.util, sys; spec = importlib.util.spec_from_file_location("peer", sys.argv[1]); '
            'module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); '
            'print("\\n" + (module.unavailable() or "available"))')
    done = subprocess.run([sys.executable, '-c', code, str(anchor.HERE / f'{system}_loader.py')],
                          capture_output=True, text=True, timeout=300)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return f'{system} availability check failed (exit {done.returncode}): {done.stderr.strip()[-200:]}'
    return None if lines[-1] == 'available' else lines[-1]


def peer_versions(systems: List[str]) -> Dict[str, str]:
    """{pip distribution: version} of the peers that run."""
    from importlib.metadata import version
    return {PEER_DISTRIBUTIONS[s]: version(PEER_DISTRIBUTIONS[s]) for s in systems if s in PEER_DISTRIBUTIONS}


def ours_has_cifar_transforms() -> bool:
    try:
        from ffcv.transforms import Cutout, RandomTranslate  # noqa: F401
    except ImportError:
        return False
    return True


SSL_TRANSFORMS = ('RandomColorJitter', 'RandomGrayscale', 'GaussianBlur', 'RandomSolarization')


def ours_has_ssl_transforms() -> bool:
    """Whether ffcv.transforms has DINO's colour augmentations (jitter, grayscale, blur, solarization)."""
    import ffcv.transforms as transforms
    return all(hasattr(transforms, name) for name in SSL_TRANSFORMS)


def views_summary(results: Dict[str, dict]) -> dict:
    """Decode-once in figures: the time per sample of 8 views over 1 view, and of 8 views decoding each on
    its own over 8 sharing one decode (ours, steady epochs); peak RSS of each."""
    summary = {}
    for name in ('dino', 'dino_separate', 'dino_1view'):
        if name in results and 'ours' in results[name]:
            summary[f'{name}_images_per_s'] = results[name]['ours']['steady_images_per_s']
            summary[f'{name}_peak_rss_mb'] = results[name]['ours']['peak_rss_mb']
    if 'dino_images_per_s' in summary and 'dino_1view_images_per_s' in summary:
        summary['cost_8_views_over_1'] = summary['dino_1view_images_per_s'] / summary['dino_images_per_s']
    if 'dino_images_per_s' in summary and 'dino_separate_images_per_s' in summary:
        summary['cost_separate_over_shared'] = summary['dino_images_per_s'] / summary['dino_separate_images_per_s']
    return summary


def bench_case(name: str, args, prepared: Dict[str, dict], systems: List[str], anchor_python: Optional[str]) -> dict:
    case = CASES[name]
    systems = [system for system in systems if system in case.get('systems', SYSTEMS)]
    dataset = prepared[case['dataset']]
    spec = {'path': dataset['path'], 'torch_data': dataset['torch_data'], 'pipeline': case['pipeline'],
            'res': case['res'], 'batch_size': args.batch_size or case['batch_size'], 'num_workers': args.num_workers,
            'epochs': args.epochs, 'seed': args.seed, 'torch_decoder': args.torch_decoder,
            'augment': args.augment, 'samples': case.get('quick_samples' if args.quick else 'samples')}
    print(f"\n[{name}] {spec['samples'] or dataset['count']} images of {case['dataset']}, pipeline {case['pipeline']}, "
          f"batch {spec['batch_size']}, {args.num_workers} workers, {args.epochs} epochs x {args.repeats} repeats",
          flush=True)
    warm_page_cache(dataset['path'])
    runs: Dict[str, List[dict]] = {system: [] for system in systems}
    for repeat in range(args.repeats):
        order = systems[repeat % len(systems):] + systems[:repeat % len(systems)]
        for system in order:
            result = measure_quietly(system, spec, anchor_python, args)
            runs[system].append(result)
            print(f"  repeat {repeat + 1} {system:>5}: first batch {result['first_batch_s']:.2f} s, first epoch "
                  f"{result['first_images_per_s']:8,.0f} img/s ({result['first_epoch_s']:.2f} s), "
                  f"steady {result['steady_images_per_s']:8,.0f} img/s, "
                  f"peak RSS {result['peak_rss_mb']:6.0f} MiB, other load {result['other_load_cores']:.1f} cores"
                  + (f" (+ workers: tree PSS {result['peak_tree_pss_mb']:.0f} MiB)" if system == 'torch' else '')
                  + (f" (tree PSS {result['peak_tree_pss_mb']:.0f} MiB)" if system in PEERS else ''),
                  flush=True)
    summary = {'spec': spec, 'count': dataset['count'], 'runs': runs}
    for system, results in runs.items():
        quiet = [r for r in results if r['other_load_cores'] <= args.max_other_load]
        results = quiet or results  # medians over the undisturbed runs when there are any
        summary[system] = {
            'runs_used': len(results), 'runs_quiet': len(quiet),
            'first_images_per_s': statistics.median(r['first_images_per_s'] for r in results),
            'steady_images_per_s': statistics.median(r['steady_images_per_s'] for r in results),
            'peak_rss_mb': statistics.median(r['peak_rss_mb'] for r in results),
        }
        if all('first_batch_s' in r for r in results):
            summary[system]['first_batch_s'] = statistics.median(r['first_batch_s'] for r in results)
        if system in TREE_SAMPLED:
            summary[system]['peak_tree_pss_mb'] = statistics.median(r['peak_tree_pss_mb'] for r in results)
            summary[system]['peak_tree_rss_mb'] = statistics.median(r['peak_tree_rss_mb'] for r in results)
    summary['ratios'] = ratios(summary)
    summary['goals'] = check_goals(name, summary)
    return summary


def ratios(summary: dict) -> dict:
    out = {}
    if 'ours' not in summary:
        return out
    for other in SYSTEMS[1:]:
        if other in summary:
            for metric in ('first', 'steady'):
                key = f'{metric}_images_per_s'
                out[f'{metric}_ours_over_{other}'] = summary['ours'][key] / summary[other][key]
            out[f'rss_{other}_over_ours'] = summary[other]['peak_rss_mb'] / summary['ours']['peak_rss_mb']
            if 'first_batch_s' in summary['ours'] and 'first_batch_s' in summary[other]:
                out[f'first_batch_{other}_over_ours'] = (summary[other]['first_batch_s']
                                                         / summary['ours']['first_batch_s'])
    return out


def check_goals(case: str, summary: dict) -> List[dict]:
    """The issue's goals that apply to this case, each with the measured ratio and whether it is met."""
    checked = []
    for metric, other, required in GOALS.get(case, []):
        # rss and first_batch (a wait) compare other / ours; images/s compare ours / other
        key = f'{metric}_{other}_over_ours' if metric in ('rss', 'first_batch') else f'{metric}_ours_over_{other}'
        if key in summary['ratios']:
            ratio = summary['ratios'][key]
            checked.append({'metric': metric, 'versus': other, 'required': required, 'ratio': ratio,
                            'met': ratio >= required})
    return checked


# --- Report ----------------------------------------------------------------------------------------

def _rate(summary: dict, system: str, key: str) -> str:
    return f'{summary[system][key]:,.0f}' if system in summary else 'n/a'


def _ratio(summary: dict, key: str) -> str:
    return f"{summary['ratios'][key]:.2f}x" if key in summary['ratios'] else 'n/a'


LABELS = {'ours': 'ours', 'ffcv': 'FFCV', 'torch': 'torch', 'dali': 'DALI', 'spdl': 'SPDL'}


def _at_most_goals(summary: dict, metric: str) -> str:
    """The goals of `metric` where ours must be at most the other's (RSS, the wait for the first batch)."""
    return ', '.join(f"<= {LABELS[g['versus']]} {'ok' if g['met'] else 'MISSED'}"
                     for g in summary['goals'] if g['metric'] == metric)


def print_table(results: Dict[str, dict], num_workers: int) -> None:
    """One block per case: first and steady images/s of every system, ours / each other, the goals, then
    peak RSS (main process; torch + its workers' PSS) and how many runs of each system were quiet."""
    others = SYSTEMS[1:]
    print(f'\nimages/s (median; {num_workers} threads/workers each); RSS in MiB (peak, main process)')
    header = (f'{"case":<11}{"epoch":<7}' + ''.join(f'{LABELS[s]:>8}' for s in SYSTEMS)
              + ''.join(f'{"ours/" + LABELS[s]:>11}' for s in others) + '   goals')
    print(header + '\n' + '-' * (len(header) + 20))
    for name, summary in results.items():
        for metric in ('first', 'steady'):
            key = f'{metric}_images_per_s'
            goals = ', '.join(f"{g['required']:.1f}x {g['versus']} {'ok' if g['met'] else 'MISSED'}"
                              for g in summary['goals'] if g['metric'] == metric)
            print(f'{name if metric == "first" else "":<11}{metric:<7}'
                  + ''.join(f'{_rate(summary, s, key):>8}' for s in SYSTEMS)
                  + ''.join(f'{_ratio(summary, f"{metric}_ours_over_{s}"):>11}' for s in others) + f'   {goals}')
        if all('first_batch_s' in summary[s] for s in SYSTEMS if s in summary):
            wait = {s: f"{summary[s]['first_batch_s']:.2f}" if s in summary else 'n/a' for s in SYSTEMS}
            goals = _at_most_goals(summary, 'first_batch')
            print(f'{"":<11}{"1st b.":<7}' + ''.join(f'{wait[s]:>8}' for s in SYSTEMS)
                  + ''.join(f'{_ratio(summary, f"first_batch_{s}_over_ours"):>11}' for s in others)
                  + f'   {goals}   (s to the first batch)')
        rss = {s: f"{summary[s]['peak_rss_mb']:,.0f}" if s in summary else 'n/a' for s in SYSTEMS}
        goals = _at_most_goals(summary, 'rss')
        workers = (f"   (torch +workers PSS {summary['torch']['peak_tree_pss_mb']:,.0f})" if 'torch' in summary
                   else '')
        print(f'{"":<11}{"RSS":<7}' + ''.join(f'{rss[s]:>8}' for s in SYSTEMS)
              + ''.join(f'{_ratio(summary, f"rss_{s}_over_ours"):>11}' for s in others) + f'   {goals}{workers}')
        quiet = '/'.join(f"{summary[s]['runs_quiet']}" if s in summary else '-' for s in SYSTEMS)
        print(f'{"":<11}{"quiet runs (" + "/".join(LABELS[s] for s in SYSTEMS) + ")":<45}{quiet}')


def parse_args(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', default='/tmp/ffcv_bench', help='where datasets are written once (cache)')
    parser.add_argument('--quick', action='store_true', help='smaller datasets and 1 repeat, for a smoke run')
    parser.add_argument('--cases', default=DEFAULT_CASES, help=f'comma-separated from: {", ".join(CASES)}')
    parser.add_argument('--systems', default=','.join(SYSTEMS),
                        help=f'comma-separated from: {", ".join(SYSTEMS)} (dali / spdl: skipped when not installed)')
    parser.add_argument('--repeats', type=int, default=None, help='fresh-process runs per system (default 3; '
                                                                  '--quick: 1)')
    parser.add_argument('--epochs', type=int, default=5, help='epochs per run: the first + steady ones (>= 4)')
    parser.add_argument('--num-workers', type=int, default=len(os.sched_getaffinity(0)),
                        help='threads (ours, FFCV) and worker processes (torch); default: every CPU available')
    parser.add_argument('--batch-size', type=int, default=None, help='override every case\'s batch size')
    parser.add_argument('--torch-decoder', choices=('pil', 'torchvision'), default='pil',
                        help='JPEG decoder of the torch baseline (default pil, what torchvision datasets use)')
    parser.add_argument('--dino-augment', choices=('auto', 'none'), default='auto',
                        help="dino cases: DINO's colour augmentations when ffcv.transforms has them (auto), or "
                             'flip only (none: decoding and resizing alone)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--timeout', type=float, default=900, help='seconds allowed per measurement process')
    parser.add_argument('--max-other-load', type=float, default=0.5,
                        help='CPU cores other processes may use during a measurement before it is retried '
                             '(shared machines; default 0.5)')
    parser.add_argument('--max-wait', type=float, default=120, help='seconds to wait for a quiet machine before '
                                                                   'each measurement (default 120)')
    parser.add_argument('--retries', type=int, default=2, help='extra attempts of a measurement disturbed by '
                                                               'other processes (default 2)')
    parser.add_argument('--anchor-python', default=anchor.default_anchor_python(),
                        help='python of the FFCV 1.0.2 environment (env FFCV_ANCHOR_PYTHON)')
    parser.add_argument('--out', default='bench_results/loader.json', help='JSON results file')
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.epochs < 2:
        parser.error('--epochs must be at least 2 (the first epoch + steady ones)')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cases = [c for c in args.cases.split(',') if c]
    systems = [s for s in args.systems.split(',') if s]
    unknown = [c for c in cases if c not in CASES] + [s for s in systems if s not in SYSTEMS]
    if unknown:
        print(f'unknown case or system: {", ".join(unknown)}', file=sys.stderr)
        return 2
    anchor_python = args.anchor_python if anchor.anchor_available(args.anchor_python) else None
    skipped = {}  # system -> why it did not run
    if 'ffcv' in systems and anchor_python is None:
        skipped['ffcv'] = (f'FFCV 1.0.2 environment not found at {args.anchor_python} '
                           f'(build it with {anchor.SETUP_HINT})')
        print(f"skipping ffcv: {skipped['ffcv']}")
        systems.remove('ffcv')
    for system in [s for s in PEERS if s in systems]:
        reason = peer_unavailable(system)
        if reason:
            print(f'skipping {system}: {reason}')
            skipped[system] = reason
            systems.remove(system)
    if 'cifar' in cases and 'ours' in systems and not ours_has_cifar_transforms():
        print('note: skipping the cifar case: ffcv.transforms has no RandomTranslate / Cutout yet '
              '(run --cases cifar_flip for raw-decode throughput)')
        cases.remove('cifar')
    prepared = prepare_data(Path(args.data_dir), sorted({CASES[c]['dataset'] for c in cases}), args.quick,
                            args.seed, args.num_workers)
    args.augment = args.dino_augment == 'auto' and ours_has_ssl_transforms()  # torch applies the same set
    if any(c.startswith('dino') for c in cases):
        extra = (f" + {', '.join(SSL_TRANSFORMS)}" if args.augment else ' only (--dino-augment none)'
                 if args.dino_augment == 'none' else f" only (no {', '.join(SSL_TRANSFORMS)} in ffcv.transforms)")
        print(f'dino views: random resized crop + flip{extra}', flush=True)
    results = {name: bench_case(name, args, prepared, systems, anchor_python) for name in cases}
    print_table(results, args.num_workers)
    views = views_summary(results)
    if views:
        print('\ndecode once (ours, steady): ' + ', '.join(f'{k} {v:,.2f}' for k, v in views.items()))
    report = {'benchmark': 'loader', 'quick': args.quick, 'repeats': args.repeats, 'epochs': args.epochs,
              'num_workers': args.num_workers, 'torch_decoder': args.torch_decoder, 'datasets': prepared,
              'environment': anchor.environment_info(anchor_python), 'cases': results,
              'dino_augmentations': list(SSL_TRANSFORMS) if args.augment else ['RandomHorizontalFlip'],
              'decode_once': views, 'skipped_systems': skipped, 'peer_versions': peer_versions(systems)}
    anchor.write_report(report, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
