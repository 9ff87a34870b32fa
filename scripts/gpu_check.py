"""gpu_check.py: the checks to run the day a GPU is lent (at most 8 minutes on one GPU), rehearsed on a CPU.

    bash scripts/gpu_check.sh [--out DIR]     # on the GPU machine: about 3 minutes on one H200
    bash scripts/gpu_check.sh --dry-run       # anywhere: the same steps on the CPU at tiny sizes, about 2 minutes

Steps, in order; each one's output goes to OUT/logs/<step>.log, the figures to OUT/results.json, and a table of
measured vs published figures ends the run:

1. the GPU's name, then the CUDA tests (``pytest -m cuda`` on the test files that carry the marker);
2. the CIFAR-10 recipe: train_cifar.py with examples/cifar/cifar.yaml (ResNet-9, AMP, channels_last, fed by
   the loader's ToDevice(non_blocking=True) from pinned buffers) for 24 epochs on 50,000 generated 32x32
   images, against FFCV's published 36 s on one A100; then ``ffcv bench`` of the same file (the loader alone);
3. the ImageNet recipe: on 20,480 generated ImageNet-like images written with write_imagenet.py's rn18 preset,
   first its two sides apart (scripts/gpu_check_sides.py): the recipe's train loader with no model, and its
   train step on batches already on the GPU with no loader; then ResNet-18 at 160 px (train_imagenet.py with
   rn18_configs/rn18_16_epochs.yaml), three epochs (the first includes compilation and warm-up; the others give
   the figure), against the published 35.0 min for 16 epochs of 1,281,167 images on one A100: 9,761 images/s.
   The slower side is named as the limit;
4. torchrun --nproc_per_node=1 of scripts/gpu_check_torchrun.py: a process group over NCCL, an all_reduce and
   DistributedDataParallel steps of the recipe's ResNet-18 (a one-process train_imagenet.py run creates no
   process group, so NCCL is exercised there), then train_imagenet.py as ``__main__`` for a few steps, as
   ``torchrun --nproc_per_node=1 train_imagenet.py`` runs it.

--dry-run runs every step on the CPU (CUDA hidden, gloo instead of NCCL, tiny sizes, a few steps; the CUDA
tests are reported as skipped), so that on a GPU the only unknown left is the GPU. Ratios are measured
speed / published speed: above 1 is faster than FFCV's A100 figure (a different GPU: see the GPU column).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's ffcv, also where another one is installed (or none)

# --- Config ---
# Published figures (FFCV's README and ffcv-imagenet's, restated on the first line of each config file).
# A train epoch drops the last partial batch: CIFAR-10 is 97 batches of 512 = 49,664 images an epoch.
PUBLISHED = {
    'cifar': {'seconds': 36.0, 'epochs': 24, 'images_per_epoch': 97 * 512, 'gpu': '1 x A100',
              'source': 'FFCV README: ResNet-9, CIFAR-10, 93% top-1 in 36 s on one A100 (examples/cifar/cifar.yaml)'},
    'rn18': {'seconds': 35.0 * 60, 'epochs': 16, 'images_per_epoch': 1_281_167, 'gpu': '1 x A100',
             'source': 'rn18_configs/rn18_16_epochs.yaml: 16 epochs in 35.0 min on one A100, final validation '
                       'included; 4 of the 16 epochs train at 192 px, so the 160 px rate was somewhat higher'},
}
for _figures in PUBLISHED.values():
    _figures['images_per_s'] = _figures['epochs'] * _figures['images_per_epoch'] / _figures['seconds']

# Sizes of a run: 'gpu' is the real check, 'dry' the CPU rehearsal (tiny, so it runs in about two minutes).
SIZES = {
    'gpu': {'cifar_train': 50_000, 'cifar_test': 10_000, 'cifar_epochs': 24, 'cifar_batch': 512,
            'bench_batches': 50, 'imagenet_train': 20_480, 'imagenet_val': 2_048, 'imagenet_side': 400,
            'imagenet_epochs': 3, 'imagenet_batch': 1024, 'imagenet_res': 160, 'val_batch': 512, 'val_res': 256,
            'imagenet_workers': 12, 'loader_epochs': 3, 'model_steps': 30, 'model_warmup': 5,
            'torchrun_steps': 10, 'ddp_steps': 5, 'ddp_batch': 256},
    'dry': {'cifar_train': 32, 'cifar_test': 16, 'cifar_epochs': 1, 'cifar_batch': 16,
            'bench_batches': 2, 'imagenet_train': 16, 'imagenet_val': 8, 'imagenet_side': 64,
            'imagenet_epochs': 2, 'imagenet_batch': 8, 'imagenet_res': 32, 'val_batch': 8, 'val_res': 32,
            'imagenet_workers': 2, 'loader_epochs': 2, 'model_steps': 2, 'model_warmup': 1,
            'torchrun_steps': 2, 'ddp_steps': 2, 'ddp_batch': 4},
}
BUDGET_S = 8 * 60        # the whole run, GPU mode included; steps still to come when it runs out are not run
STEP_LIMIT_S = {'cuda_tests': 150, 'cifar_train': 300, 'cifar_bench': 90, 'loader': 120, 'model': 120,
                'imagenet_train': 240, 'torchrun': 180}


# --- Data ---
def _cifar_chunk(task):
    """(images, labels) of the embedded CIFAR-like task, `count` samples drawn with `seed`."""
    from ffcv.datasets.embedded import make_arrays
    count, seed = task
    return make_arrays('train', count, seed=seed)


def write_cifar_like(folder: Path, size: dict) -> tuple:
    """train.beton / test.beton as examples/cifar/write_cifar.py writes CIFAR-10 (raw 32x32 + label), from the
    embedded CIFAR-like task (ffcv.datasets.embedded.make_arrays); the train split is drawn in parallel
    chunks, one seed each."""
    from ffcv.datasets import ArrayDataset
    from ffcv.datasets.embedded import make_arrays
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    train, test = size['cifar_train'], size['cifar_test']
    chunks = max(1, min(os.cpu_count() or 1, train // 2000))
    tasks = [(train // chunks + (k < train % chunks), 100 + k) for k in range(chunks)]
    with multiprocessing.get_context('fork').Pool(chunks) as pool:
        parts = pool.map(_cifar_chunk, tasks)
    splits = {'train': (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])),
              'test': make_arrays('test', test, seed=0)}
    paths = []
    for split, (images, labels) in splits.items():
        path = folder / f'{split}.beton'
        DatasetWriter(str(path), {'image': RGBImageField(), 'label': IntField()}).from_indexed_dataset(
            ArrayDataset(images, labels), progress=False)
        paths.append(str(path))
    return paths[0], paths[1]


class ImageNetLike:
    """`count` deterministic ImageNet-shaped samples (RGB uint8 image, label 0-999).

    Sizes as ImageNet's after write_imagenet.py's cap: 80% with the longer side at `long_side`, the rest
    between half of it and it, aspect ratios 4:3, 3:2, 1:1 and their transposes. Content: a smooth colour
    field plus pixel noise, so that JPEG sizes and decoding times are those of photographs, not of flat colour.
    """

    def __init__(self, count: int, long_side: int, seed: int = 0):
        self.count, self.long_side, self.seed = count, long_side, seed
        rng = np.random.default_rng(seed)
        self.noise = rng.integers(0, 17, (long_side + 64, long_side + 64, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        import cv2
        rng = np.random.default_rng([self.seed, index])
        aspect = (4 / 3, 3 / 2, 1.0, 3 / 4, 2 / 3)[int(rng.integers(5))]
        side = self.long_side if rng.random() < 0.8 else int(rng.integers(self.long_side // 2, self.long_side))
        height, width = (round(side / aspect), side) if aspect >= 1 else (side, round(side * aspect))
        colours = rng.integers(0, 239, (6, 8, 3), dtype=np.uint8)  # + noise (0-16) stays within 0-255
        image = cv2.resize(colours, (width, height), interpolation=cv2.INTER_LINEAR)  # (H, W, 3)
        top, left = rng.integers(0, 64, size=2)
        image += self.noise[top:top + height, left:left + width]
        return image, index % 1000


def _write_imagenet():
    """examples/imagenet/write_imagenet.py as a module (its presets and file names)."""
    spec = importlib.util.spec_from_file_location('write_imagenet', ROOT / 'examples/imagenet/write_imagenet.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imagenet_files(folder: Path) -> Dict[str, Path]:
    """{'train': path, 'val': path}: the names write_imagenet.py gives files written with its rn18 preset."""
    write_imagenet = _write_imagenet()
    return {split: folder / write_imagenet.output_name(split, **write_imagenet.PRESETS['rn18'])
            for split in ('train', 'val')}


def write_imagenet_like(folder: Path, size: dict) -> Dict[str, Path]:
    """train/val .beton files as write_imagenet.py writes them with its rn18 preset (proportion mode, 10% JPEG
    at quality 90, longer side capped at 400), from `ImageNetLike` samples."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    preset, paths = _write_imagenet().PRESETS['rn18'], imagenet_files(folder)
    for split, count, seed in (('train', size['imagenet_train'], 0), ('val', size['imagenet_val'], 1)):
        fields = {'image': RGBImageField(write_mode='proportion', **preset), 'label': IntField()}
        DatasetWriter(str(paths[split]), fields).from_indexed_dataset(
            ImageNetLike(count, size['imagenet_side'], seed), progress=False)
    return paths


# --- Commands (one place for every command line, so that a test can check them without running them) ---
def commands(mode: str, data: Path, runs: Path, out: Path) -> Dict[str, List[str]]:
    """The command line of every step that runs a program, for `mode` 'gpu' or 'dry'."""
    size, python = SIZES[mode], sys.executable
    dry = mode == 'dry'
    cifar = [python, 'train_cifar.py', '--config-file', 'examples/cifar/cifar.yaml',
             f'--data.train_dataset={data / "cifar/train.beton"}', f'--data.val_dataset={data / "cifar/test.beton"}',
             f'--training.epochs={size["cifar_epochs"]}', f'--training.batch_size={size["cifar_batch"]}',
             f'--logging.folder={runs}', '--logging.run_name=cifar']
    if dry:  # the published schedule peaks at epoch 5: keep the peak inside the short run
        cifar += ['--training.lr_peak_epoch=1', '--training.device=cpu', '--data.num_workers=2']
    files = imagenet_files(data / 'imagenet')
    imagenet = ['train_imagenet.py', '--config-file', 'rn18_configs/rn18_16_epochs.yaml',
                f'--data.train_dataset={files["train"]}', f'--data.val_dataset={files["val"]}',
                f'--data.num_workers={size["imagenet_workers"]}',
                f'--training.batch_size={size["imagenet_batch"]}',
                f'--resolution.min_res={size["imagenet_res"]}', f'--resolution.max_res={size["imagenet_res"]}',
                f'--validation.batch_size={size["val_batch"]}', f'--validation.resolution={size["val_res"]}',
                f'--logging.folder={runs}']
    return {
        'cuda_tests': [python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-m', 'cuda', '-rs',
                       f'--junitxml={out / "cuda_tests.xml"}', *cuda_test_files()],
        'cifar_train': cifar,
        'cifar_bench': [python, '-m', 'ffcv.tools.cli', 'bench', str(data / 'cifar/train.beton'), '--json',
                        '--pipeline', 'simple', '--batch-size', str(size['cifar_batch']),
                        '--batches', str(size['bench_batches'])],
        'loader': [python, 'scripts/gpu_check_sides.py', 'loader', str(files['train']), '--batch-size',
                   str(size['imagenet_batch']), '--res', str(size['imagenet_res']), '--workers',
                   str(size['imagenet_workers']), '--epochs', str(size['loader_epochs']),
                   '--out', str(out / 'loader.json')],
        'model': [python, 'scripts/gpu_check_sides.py', 'model', '--arch', 'resnet18', '--batch-size',
                  str(size['imagenet_batch']), '--res', str(size['imagenet_res']), '--steps', str(size['model_steps']),
                  '--warmup', str(size['model_warmup']), '--out', str(out / 'model.json')],
        'imagenet_train': [python, *imagenet, f'--training.epochs={size["imagenet_epochs"]}',
                           '--logging.run_name=rn18'],
        'torchrun': [python, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1',
                     'scripts/gpu_check_torchrun.py', str(files['train']),
                     '--steps', str(size['ddp_steps']), '--batch-size', str(size['ddp_batch']),
                     '--res', str(size['imagenet_res']), '--num-workers', str(size['imagenet_workers']),
                     '--out', str(out / 'ddp.json'), '--', *imagenet[1:],
                     f'--training.max_steps={size["torchrun_steps"]}', '--logging.run_name=torchrun'],
    }


def cuda_test_files() -> List[str]:
    """The test files that hold a CUDA test (``pytest.mark.cuda``), relative to the repository."""
    found = [str(path.relative_to(ROOT)) for path in sorted((ROOT / 'tests').glob('test_*.py'))
             if 'mark.cuda' in path.read_text()]
    return found or ['tests']


# --- Steps ---
class Run:
    """One run of the check: its mode, folders, time budget, environment for the programs, and results."""

    def __init__(self, mode: str, out: Path, data: Path, budget_s: float):
        self.mode, self.out, self.data, self.runs = mode, out, data, data / 'runs'
        self.deadline = time.time() + budget_s
        path = [str(ROOT), *filter(None, os.environ.get('PYTHONPATH', '').split(os.pathsep))]
        self.env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'PYTHONPATH': os.pathsep.join(path)}
        if mode == 'dry':
            self.env['CUDA_VISIBLE_DEVICES'] = ''  # the CPU path, even on a machine with a GPU
        self.commands = commands(mode, data, self.runs, out)
        self.steps: List[dict] = []
        (out / 'logs').mkdir(parents=True, exist_ok=True)

    def program(self, name: str) -> dict:
        """Run the command of step `name` (output to OUT/logs/name.log) within its limit and the budget."""
        command = self.commands[name]
        limit = min(STEP_LIMIT_S.get(name, 120), self.deadline - time.time())
        log = self.out / 'logs' / f'{name}.log'
        if limit < 5:
            return {'status': 'not run', 'why': 'time budget spent', 'command': command}
        with open(log, 'w') as handle:
            handle.write('$ ' + ' '.join(command) + '\n')
            handle.flush()
            # its own process group, so that a timeout (or Ctrl-C here) stops torchrun's workers too
            child = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            try:
                code = child.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                try:
                    os.killpg(child.pid, signal.SIGKILL)  # the child if still running, and anything it left
                except ProcessLookupError:
                    pass
                child.wait()
        result = {'status': 'ok' if code == 0 else 'failed', 'exit_code': code, 'command': command,
                  'log': str(log.relative_to(self.out))}
        if code is None:
            result['why'] = f'no exit within {limit:.0f} s'
        elif code != 0:
            result['why'] = f'exit code {code}; last lines of {log.name}:\n' + tail(log)
        return result

    def step(self, name: str, title: str, work: Callable[[], dict], needs: Optional[List[str]] = None) -> dict:
        """Run `work` (which returns the step's figures), timed and recorded; steps whose `needs` failed are
        not run. Failures are recorded, never raised: the later steps still run."""
        number = len(self.steps) + 1
        print(f'[{number}] {title} ...', flush=True)
        failed = [n for n in needs or [] if self.result(n).get('status') != 'ok']
        start = time.time()
        if failed:
            result = {'status': 'not run', 'why': f'needs {", ".join(failed)}'}
        elif self.deadline - start < 5:
            result = {'status': 'not run', 'why': 'time budget spent'}
        else:
            try:
                result = work()
            except Exception as exc:  # a step's failure is a result, not the end of the check
                result = {'status': 'failed', 'why': f'{type(exc).__name__}: {exc}'}
        result = {'name': name, 'title': title, 'seconds': round(time.time() - start, 1), **result}
        self.steps.append(result)
        why = result.get('why', '')
        print(f'[{number}] {result["status"]} ({result["seconds"]} s){": " + why if why else ""}', flush=True)
        return result

    def result(self, name: str) -> dict:
        return next((s for s in self.steps if s['name'] == name), {})


def tail(path: Path, lines: int = 15) -> str:
    return '\n'.join('    ' + line for line in path.read_text(errors='replace').splitlines()[-lines:])


def read_log(path: Path) -> List[dict]:
    """The per-epoch records of a recipe's log.jsonl (the summary line apart)."""
    if not path.exists():
        raise FileNotFoundError(f'{path} was not written')
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if 'epoch' in r and not r.get('summary')]


PROBE = """
import json, torch
cuda = torch.cuda.is_available()
print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'available': cuda,
                  'device_name': torch.cuda.get_device_name(0) if cuda else None,
                  'count': torch.cuda.device_count(), 'nccl': torch.distributed.is_nccl_available()}))
"""


def gpu_info(run: Run) -> dict:
    """The device the checks run on: nvidia-smi's line and torch's view (in a child, as the programs see it)."""
    probe = subprocess.run([sys.executable, '-c', PROBE], env=run.env, capture_output=True, text=True, timeout=120)
    if probe.returncode:
        return {'status': 'failed', 'why': f'{sys.executable} cannot import torch:\n{probe.stderr[-2000:]}'}
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    smi = shutil.which('nvidia-smi')
    if smi and run.mode == 'gpu':
        query = subprocess.run([smi, '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'],
                               capture_output=True, text=True, timeout=30)
        seen['nvidia_smi'] = query.stdout.strip() or query.stderr.strip()
    seen.update(python=platform.python_version(), cpus=os.cpu_count(), host=platform.node())
    if run.mode == 'gpu' and not seen['available']:
        return {'status': 'failed', 'why': 'torch sees no CUDA GPU (run with --dry-run on a machine without one)',
                **seen}
    gpu = seen['device_name'] if run.mode == 'gpu' else 'none: dry run on the CPU (CUDA hidden)'
    print(f'    GPU: {gpu}' + (f' ({seen["nvidia_smi"]})' if seen.get('nvidia_smi') else ''), flush=True)
    return {'status': 'ok', 'gpu': gpu, **seen}


def cuda_tests(run: Run) -> dict:
    result = run.program('cuda_tests')
    report = run.out / 'cuda_tests.xml'
    if result['status'] == 'not run' or not report.exists():
        return result
    counts = {key: 0 for key in ('tests', 'failures', 'errors', 'skipped')}
    for suite in ElementTree.parse(report).getroot().iter('testsuite'):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    counts['passed'] = counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped']
    bad = counts['failures'] + counts['errors'] + (counts['skipped'] if run.mode == 'gpu' else 0)
    result.update(counts, status='ok' if result['status'] == 'ok' and not bad and counts['tests'] else 'failed')
    return result


def cifar_train(run: Run) -> dict:
    result = run.program('cifar_train')
    if result['status'] != 'ok':
        return result
    epochs = read_log(run.runs / 'cifar' / 'log.jsonl')
    shutil.copy(run.runs / 'cifar' / 'log.jsonl', run.out / 'cifar_log.jsonl')
    seconds = sum(r['epoch_time_s'] for r in epochs)
    images = sum(r['images_per_s'] * r['epoch_time_s'] for r in epochs)
    rate = images / seconds
    published = PUBLISHED['cifar']
    return {**result, 'epochs': len(epochs), 'train_seconds': seconds, 'images': round(images),
            'images_per_s': rate, 'test_acc': epochs[-1].get('test_acc'),
            'seconds_for_published_work': published['epochs'] * published['images_per_epoch'] / rate,
            'ratio': rate / published['images_per_s']}


def cifar_bench(run: Run) -> dict:
    """Run the step's ``ffcv bench --json`` of the CIFAR-like file; keep the loader's rate and each stage's."""
    result = run.program('cifar_bench')
    if result['status'] != 'ok':
        return result
    text = (run.out / result['log']).read_text()
    report, _ = json.JSONDecoder().raw_decode(text, text.index('\n{') + 1)  # after the command line
    return {**result, 'device': report['device'], 'batch_size': report['batch_size'],
            'images_per_s': report['loader']['images_per_s'], 'bottleneck': report['bottleneck'].get('stage'),
            'stages': {s['stage']: round(s['images_per_s']) for f in report['fields'] for s in f['stages']}}


def side_alone(run: Run, name: str) -> dict:
    """Run step `name` ('loader' or 'model': scripts/gpu_check_sides.py) and keep its figures."""
    result = run.program(name)
    if result['status'] != 'ok':
        return result
    return {**result, **json.loads((run.out / f'{name}.json').read_text())}


def imagenet_train(run: Run) -> dict:
    result = run.program('imagenet_train')
    if result['status'] != 'ok':
        return result
    epochs = read_log(run.runs / 'rn18' / 'log.jsonl')
    shutil.copy(run.runs / 'rn18' / 'log.jsonl', run.out / 'rn18_log.jsonl')
    steady = epochs[1:] or epochs  # the first epoch compiles the pipelines and warms up
    images = sum(r['images_per_s'] * r['epoch_time_s'] for r in steady)
    rate = images / sum(r['epoch_time_s'] for r in steady)
    return {**result, 'epochs': len(epochs), 'measured_epochs': len(steady), 'resolution': epochs[-1]['resolution'],
            'images_per_epoch': round(images / len(steady)), 'images_per_s': rate,
            'first_epoch_images_per_s': epochs[0]['images_per_s'], 'ratio': rate / PUBLISHED['rn18']['images_per_s']}


def torchrun(run: Run) -> dict:
    result = run.program('torchrun')
    if result['status'] != 'ok':
        return result
    ddp = json.loads((run.out / 'ddp.json').read_text())
    expected = 'gloo' if run.mode == 'dry' else 'nccl'
    summary = json.loads((run.runs / 'torchrun' / 'log.jsonl').read_text().splitlines()[-1])
    steps = SIZES[run.mode]['torchrun_steps']
    result.update(ddp=ddp, stopped_at_step=summary.get('stopped_at_step'))
    if ddp['backend'] != expected:
        return {**result, 'status': 'failed', 'why': f"process group over {ddp['backend']}, not {expected}"}
    if summary.get('stopped_at_step') != steps:
        return {**result, 'status': 'failed', 'why': f'train_imagenet.py: expected a stop at step {steps}, its '
                                                     f'log ends with {summary}'}
    return result


# --- Summary ---
def summary_rows(run: Run) -> List[tuple]:
    """(check, measured, published, ratio) rows of the final table, from the recorded steps."""
    step, rows = run.result, []
    rows.append(('GPU', step('gpu').get('gpu', '?'), PUBLISHED['cifar']['gpu'], ''))
    tests = step('cuda_tests')
    if 'tests' in tests:
        failed = tests['failures'] + tests['errors']
        rows.append(('CUDA tests (pytest -m cuda)', f"{tests['passed']} passed, {failed} failed, "
                                                    f"{tests['skipped']} skipped", '', ''))
    cifar, published = step('cifar_train'), PUBLISHED['cifar']
    if 'ratio' in cifar:
        epochs = f"{cifar['epochs']} epoch{'s' * (cifar['epochs'] > 1)}"
        rows.append((f'CIFAR-10 ResNet-9, {epochs}: images/s', f"{cifar['images_per_s']:,.0f}",
                     f"{published['images_per_s']:,.0f}", f"{cifar['ratio']:.3g}x"))
        rows.append(('  = time for 24 epochs of 49,664 images', f"{cifar['seconds_for_published_work']:,.1f} s",
                     f"{published['seconds']:.0f} s", f"{cifar['ratio']:.3g}x"))
    bench = step('cifar_bench')
    if 'images_per_s' in bench:
        copy = 'with ToDevice' if bench['device'] else 'no ToDevice'
        rows.append((f'  loader alone (ffcv bench, {copy}): images/s', f"{bench['images_per_s']:,.0f}", '', ''))
    rn18, published = step('imagenet_train'), PUBLISHED['rn18']
    if 'ratio' in rn18:
        measured = f"epoch {rn18['epochs']}" if rn18['measured_epochs'] == 1 else f"epochs 2-{rn18['epochs']}"
        rows.append((f"ResNet-18 at {rn18['resolution']} px, {rn18['images_per_epoch']:,} images an epoch, "
                     f'{measured}: images/s',
                     f"{rn18['images_per_s']:,.0f}", f"{published['images_per_s']:,.0f}", f"{rn18['ratio']:.3g}x"))
        rows.append(('  first epoch (compilation, warm-up): images/s', f"{rn18['first_epoch_images_per_s']:,.0f}",
                     '', ''))
    loader, model = step('loader'), step('model')
    if 'images_per_s' in loader:
        rows.append((f"  loader alone (the recipe's, {loader['workers']} workers, no model): images/s",
                     f"{loader['images_per_s']:,.0f}", '', ''))
    if 'images_per_s' in model:
        rows.append(('  model alone (train steps on batches already on the device): images/s',
                     f"{model['images_per_s']:,.0f}", '', ''))
    if 'images_per_s' in loader and 'images_per_s' in model:
        device = ' (GPU)' if model['device'].startswith('cuda') else ''
        slower = 'the loader' if loader['images_per_s'] < model['images_per_s'] else f'the model{device}'
        rows.append(('  limited by', slower, '', ''))
    dist = step('torchrun')
    if dist.get('status') == 'ok':
        ddp = dist['ddp']
        rows.append((f"torchrun: all_reduce + {ddp['steps']} DDP steps over {ddp['backend']}: images/s",
                     f"{ddp['images_per_s']:,.0f}", '', ''))
        rows.append(('torchrun: train_imagenet.py', f"{dist['stopped_at_step']} steps", '', ''))
    return rows


def format_summary(run: Run) -> str:
    """The table that ends the run, then one line per step that did not succeed."""
    heading = ('GPU check summary' if run.mode == 'gpu' else
               'DRY RUN summary (CPU, tiny sizes: the figures test the plumbing, not the speed)')
    header = ('check', 'measured', 'published, 1 x A100', 'ratio')
    rows = [header] + summary_rows(run)
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    lines = ['', f'=== {heading} ===']
    lines += ['  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    bad = [s for s in run.steps if s['status'] != 'ok']
    for s in bad:
        why = (s.get('why') or '?').splitlines()[0]
        lines.append(f"{s['status'].upper()}: {s['title']}: {why}")
    lines.append(f"{len(run.steps) - len(bad)} of {len(run.steps)} steps ok; results in {run.out / 'results.json'}")
    return '\n'.join(lines)


# --- Main ---
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dry-run', action='store_true', help='every step on the CPU at tiny sizes (no GPU needed)')
    parser.add_argument('--out', type=Path, help='folder for results.json and the logs (default: a new temp dir)')
    parser.add_argument('--data', type=Path, help='folder for the generated datasets and runs (default: a temp '
                                                  'dir, removed at the end; about 7 GB in GPU mode)')
    parser.add_argument('--budget', type=float, default=BUDGET_S, help=f'seconds for the whole run '
                                                                       f'(default {BUDGET_S})')
    args = parser.parse_args(argv)
    mode = 'dry' if args.dry_run else 'gpu'
    out = args.out or Path(tempfile.mkdtemp(prefix='gpu_check_'))
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or Path(tempfile.mkdtemp(prefix='gpu_check_data_'))
    for folder in ('cifar', 'imagenet'):
        (data / folder).mkdir(parents=True, exist_ok=True)
    run, size = Run(mode, out, data, args.budget), SIZES[mode]
    started = time.time()
    print(f"gpu_check ({'dry run on the CPU' if args.dry_run else 'GPU'}): results in {out}, data in {data}",
          flush=True)
    try:
        run.step('gpu', 'GPU and torch', lambda: gpu_info(run))
        gpu = ['gpu']
        run.step('cuda_tests', 'CUDA tests (pytest -m cuda)', lambda: cuda_tests(run), gpu)
        run.step('cifar_data', f"CIFAR-like data: {size['cifar_train']:,} train + {size['cifar_test']:,} test "
                 '32x32 images', lambda: {'status': 'ok', 'files': write_cifar_like(data / 'cifar', size)}, gpu)
        run.step('cifar_train', f"train_cifar.py, {size['cifar_epochs']} epochs", lambda: cifar_train(run),
                 ['cifar_data'])
        run.step('cifar_bench', 'ffcv bench of the CIFAR-like train file', lambda: cifar_bench(run), ['cifar_data'])
        run.step('imagenet_data', f"ImageNet-like data: {size['imagenet_train']:,} train + {size['imagenet_val']:,} "
                 f"val images, longer side {size['imagenet_side']} px",
                 lambda: {'status': 'ok', 'files': write_imagenet_like(data / 'imagenet', size)}, gpu)
        run.step('loader', f"the recipe's train loader alone, {size['loader_epochs']} epochs",
                 lambda: side_alone(run, 'loader'), ['imagenet_data'])
        run.step('model', f"ResNet-18 train steps alone, batch {size['imagenet_batch']} at {size['imagenet_res']} px",
                 lambda: side_alone(run, 'model'), gpu)
        run.step('imagenet_train', f"train_imagenet.py, ResNet-18, {size['imagenet_epochs']} epochs at "
                 f"{size['imagenet_res']} px", lambda: imagenet_train(run), ['imagenet_data'])
        run.step('torchrun', f"torchrun: {'gloo' if args.dry_run else 'NCCL'}, {size['ddp_steps']} DDP steps, "
                 f"train_imagenet.py {size['torchrun_steps']} steps", lambda: torchrun(run), ['imagenet_data'])
    finally:
        results = {'mode': mode, 'started': time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(started)),
                   'seconds': round(time.time() - started, 1), 'budget_s': args.budget, 'sizes': size,
                   'published': PUBLISHED, 'steps': run.steps,
                   'summary': [dict(zip(('check', 'measured', 'published', 'ratio'), row))
                               for row in summary_rows(run)]}
        (out / 'results.json').write_text(json.dumps(results, indent=2, default=str))
        print(format_summary(run), flush=True)
        if args.data is None:
            shutil.rmtree(data, ignore_errors=True)
    return 0 if all(s['status'] == 'ok' for s in run.steps) else 1


if __name__ == '__main__':
    sys.exit(main())
