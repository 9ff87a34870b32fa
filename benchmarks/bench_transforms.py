"""Per-operation throughput of the transforms: ours vs FFCV 1.0.2, in the same run, on the same data.

Each operation is built as a loader would build it (``declare_state_and_memory`` on the input state,
buffers preallocated from its AllocationQuery, ``generate_code()``, compiled with the library's own
``Compiler`` where the library compiles it) and its generated function is called directly on a batch;
the figure is batch / median call time (images/s, one thread). The two sides alternate per op (3
rounds by default), so both see the same machine load. Our per-batch seed computation is
included in the timed call, as it is in the loader.

Both libraries are imported as `ffcv`, so each side runs this same file in `--worker` mode in its own
interpreter, isolated (``-I``, no PYTHONPATH, cwd outside the repository): ours with this venv's
python, FFCV's with $FFCV_ANCHOR_PYTHON (default /root/.venvs/ffcv-anchor/bin/python, built by
scripts/setup_ffcv_anchor.sh). Without the anchor, only our column is printed.

    .venv/bin/python benchmarks/bench_transforms.py --out bench_results/transforms.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ANCHOR = '/root/.venvs/ffcv-anchor/bin/python'
CONFIGS = [(32, 512), (160, 128)]  # (image side, batch size)
MEAN = '(125, 122, 113)'
IMAGENET = 'np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])'
# name -> (input kind, constructor expressions evaluated with np, H, W, B and ffcv.transforms in scope)
OPS = {
    'RandomHorizontalFlip': ('image', ['RandomHorizontalFlip()']),
    'RandomTranslate': ('image', [f'RandomTranslate(padding=2, fill={MEAN})']),
    'Cutout': ('image', [f'Cutout(max(4, H // 8), fill={MEAN})']),
    'RandomResizedCrop': ('image', ['RandomResizedCrop(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), size=H)']),
    'NormalizeImage fp16': ('image', [f'NormalizeImage({IMAGENET}, np.float16)']),
    'NormalizeImage fp32': ('image', [f'NormalizeImage({IMAGENET}, np.float32)']),
    'ImageMixup': ('image', ['ImageMixup(alpha=0.2, same_lambda=False)']),
    'LabelMixup': ('label', ['LabelMixup(alpha=0.2, same_lambda=False)']),
    'MixupToOneHot': ('mixed', ['MixupToOneHot(num_classes=1000)']),
    'Poison': ('image', ['Poison(np.full((H, W, 3), 200, np.uint8), np.full((H, W), 0.3), np.arange(0, 10**6, 2))']),
    'ReplaceLabel': ('label', ['ReplaceLabel(np.arange(0, 10**6, 2), 7)']),
    'RandomBrightness': ('image', ['RandomBrightness(0.4, p=1.0)']),
    'RandomContrast': ('image', ['RandomContrast(0.4, p=1.0)']),
    'RandomSaturation': ('image', ['RandomSaturation(0.4, p=1.0)']),
    'CIFAR chain (flip+translate+cutout)': ('image', ['RandomHorizontalFlip()', f'RandomTranslate(2, fill={MEAN})',
                                                      f'Cutout(max(4, H // 8), fill={MEAN})']),
}


# --- Worker: runs under either library ---

def _build(expressions, kind, side, batch):
    """Declare, allocate and generate each op of a chain; returns (callables, first input)."""
    import numpy as np
    import torch
    import ffcv.transforms as transforms
    from ffcv.pipeline.compiler import Compiler
    from ffcv.pipeline.state import State

    rng = np.random.default_rng(0)
    cpu = torch.device('cpu')
    if kind == 'image':
        data = rng.integers(0, 256, (batch, side, side, 3), dtype=np.uint8)
        state = State(True, cpu, (side, side, 3), np.dtype('uint8'))
    elif kind == 'label':
        data = rng.integers(0, 1000, (batch, 1), dtype=np.int64)
        state = State(True, cpu, (1,), np.dtype('int64'))
    else:  # LabelMixup rows (label_i, label_{i-1}, lam) after ToTensor()
        labels = rng.integers(0, 1000, batch)
        data = torch.from_numpy(np.stack([labels, np.roll(labels, 1), rng.uniform(0, 1, batch)], 1).astype(np.float32))
        state = State(False, cpu, (3,), torch.float32)
    scope = dict(vars(transforms), np=np, H=side, W=side, B=batch)
    calls = []
    for position, expression in enumerate(expressions):
        op = eval(expression, scope)  # noqa: S307 - expressions are the constants above
        state, query = op.declare_state_and_memory(state)
        destination = None
        if query is not None:
            shape = (batch, *query.shape)
            destination = (torch.empty(shape, dtype=query.dtype) if isinstance(query.dtype, torch.dtype)
                           else np.empty(shape, dtype=query.dtype))
        code = op.generate_code()
        function = Compiler.compile(code) if state.jit_mode else code
        calls.append((function, destination, bool(getattr(code, 'with_indices', False)),
                      bool(getattr(code, 'with_seeds', False)), getattr(code, 'seed_key', 1000 + position)))
    return calls, data


def _run_chain(calls, data, indices):
    import numpy as np
    result = data
    for function, destination, with_indices, with_seeds, key in calls:
        args = [result, destination]
        if with_indices:
            args.append(indices)
        if with_seeds:  # ours: the loader computes these for every batch, so they are timed too
            from ffcv.pipeline.seeding import batch_seeds
            args.append(batch_seeds(np.uint64(1), np.uint64(0), indices, np.uint64(key)))
        result = function(*args)
    return result


def _timed_calls(state, min_time):
    """Time calls of one built chain for about `min_time` seconds; returns the call times."""
    calls, data, indices = state
    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time and len(times) < 500):
        tick = time.perf_counter()
        _run_chain(calls, data, indices)
        times.append(time.perf_counter() - tick)
    return times


def worker() -> None:
    """Answer requests on stdin, one JSON line each: {"key", "op", "side", "batch", "min_time"} -> times."""
    import cv2
    import numba
    import numpy as np
    import torch
    import ffcv
    cv2.setNumThreads(1)  # our loader does this; one thread per batch on both sides
    torch.set_num_threads(1)
    print(json.dumps({'ffcv_file': ffcv.__file__, 'numba': numba.__version__, 'torch': torch.__version__}),
          flush=True)
    built = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            key = request['key']
            if key not in built:
                kind, expressions = OPS[request['op']]
                calls, data = _build(expressions, kind, request['side'], request['batch'])
                built[key] = (calls, data, np.arange(request['batch'], dtype=np.int64))
                for _ in range(3):  # compile and warm caches
                    _run_chain(*built[key])
            answer = {'times': _timed_calls(built[key], request['min_time'])}
        except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
            answer = {'error': f'{type(exc).__name__}: {exc}'}
        print(json.dumps(answer), flush=True)


# --- Driver ---

class Side:
    """A worker interpreter (ours or FFCV's) kept alive for the whole run, answering one request at a time."""

    def __init__(self, python: str, cwd: str):
        drop = {'PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'PYTHONUSERBASE', 'VIRTUAL_ENV', '__PYVENV_LAUNCHER__'}
        env = {key: value for key, value in os.environ.items() if key not in drop}
        # -I and a cwd outside the repository: `import ffcv` finds the library installed in that interpreter
        self.process = subprocess.Popen([python, '-I', str(Path(__file__).resolve()), '--worker'], cwd=cwd, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f'benchmark worker {self.process.args[0]} exited (code {self.process.wait()})')
        return json.loads(line)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + '\n')
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def measure_all(sides, names, rounds: int, min_time: float) -> dict:
    """Per op and size, alternate the sides `rounds` times (so both see the same machine load) and pool
    each side's call times; returns {key: {side: result}}."""
    results = {}
    for name in names:
        for side_px, batch in CONFIGS:
            key = f'{name} | {side_px}x{side_px} | b{batch}'
            pooled = {label: [] for label in sides}
            errors = {}
            for _ in range(rounds):
                for label, side in sides.items():
                    if label in errors:
                        continue
                    answer = side.ask(key=key, op=name, side=side_px, batch=batch, min_time=min_time / rounds)
                    if 'error' in answer:
                        errors[label] = answer['error']
                    else:
                        pooled[label] += answer['times']
            results[key] = {}
            for label in sides:
                if label in errors:
                    results[key][label] = {'error': errors[label]}
                else:
                    median = sorted(pooled[label])[len(pooled[label]) // 2]
                    results[key][label] = {'median_s': median, 'images_per_s': batch / median,
                                           'calls': len(pooled[label])}
    return results


def print_table(results) -> list:
    rows = []
    print(f"{'operation':38s} {'size':>9s} {'batch':>5s} {'ours img/s':>12s} {'FFCV img/s':>12s} {'ratio':>6s}")
    for key, by_side in results.items():
        name, size, batch = key.split(' | ')
        mine, other = by_side['ours'], by_side.get('ffcv', {})
        ratio = (mine['images_per_s'] / other['images_per_s']
                 if 'images_per_s' in mine and 'images_per_s' in other else None)
        rows.append({'op': name, 'size': size, 'batch': int(batch[1:]), 'ours': mine, 'ffcv': other or None,
                     'ratio': ratio})
        shown = [f"{d['images_per_s']:12,.0f}" if 'images_per_s' in d else f"{'error' if d else '-':>12s}"
                 for d in (mine, other)]
        print(f"{name:38s} {size:>9s} {batch[1:]:>5s} {shown[0]} {shown[1]} {f'{ratio:6.2f}' if ratio else '     -'}")
        for label, d in (('ours', mine), ('ffcv', other)):
            if 'error' in d:
                print(f'    {label}: {d["error"]}')
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='bench_results/transforms.json')
    parser.add_argument('--anchor-python', default=os.environ.get('FFCV_ANCHOR_PYTHON', DEFAULT_ANCHOR))
    parser.add_argument('--min-time', type=float, default=0.6, help='seconds of timed calls per op, size and side')
    parser.add_argument('--rounds', type=int, default=3, help='alternations between the two sides')
    parser.add_argument('--ops', nargs='*', default=list(OPS), help='subset of operation names')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return

    with tempfile.TemporaryDirectory() as cwd:
        sides = {'ours': Side(sys.executable, cwd)}
        if Path(args.anchor_python).exists():
            sides['ffcv'] = Side(args.anchor_python, cwd)
            if sides['ffcv'].info['ffcv_file'] == sides['ours'].info['ffcv_file']:
                raise RuntimeError('both sides imported the same ffcv; the anchor environment is not isolated')
        else:
            print(f'FFCV 1.0.2 anchor not found at {args.anchor_python}: reporting ours only')
        try:
            results = measure_all(sides, args.ops, args.rounds, args.min_time)
        finally:
            for side in sides.values():
                side.close()
    rows = print_table(results)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {'machine': platform.platform(), 'cpus': os.cpu_count(), 'python': platform.python_version(),
            'sides': {label: side.info for label, side in sides.items()}, 'rounds': args.rounds,
            'method': 'median single-thread call time of the generated function on preallocated buffers, '
                      'sides alternated per op'}
    out.write_text(json.dumps({'meta': meta, 'rows': rows}, indent=1))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
