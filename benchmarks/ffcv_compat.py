"""ffcv_compat.py: our .beton files against FFCV 1.0.2 (the original), in both directions.

(a)+(b) Our writer writes files covering every field type (IntField, FloatField with NaN/inf/-0.0,
        NDArrayField float32 and int16, TorchTensorField, BytesField with empty blobs, JSONField with
        unicode, RGBImageField raw / jpg / smart / proportion at fixed and varied sizes, with and without
        max_resolution). FFCV 1.0.2, in its own interpreter, reads each one through its Loader (SEQUENTIAL,
        batch 8, drop_last=False, 1 worker; SimpleRGBImageDecoder for fixed-size images, CenterCrop
        (64, 64) at 224/256 for varied ones) and through its Reader plus the raw bytes its memory manager
        finds. Exact for ints, floats (bitwise), arrays, bytes, JSON and raw pixels (raw pixels against
        FFCV's own resizer applied to the original image); JPEG within a mean of 3 grey levels of our decode.
(c)     FFCV 1.0.2 writes a small file per field kind; our `Reader.read_sample` reads it back.

  python benchmarks/ffcv_compat.py [--anchor-python PATH] [--keep DIR]

Prints a PASS/FAIL table and exits 1 on any failure (2 when the FFCV 1.0.2 environment is missing).
`run_checks()` is the same thing for tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import struct
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

_spec = importlib.util.spec_from_file_location('ffcv_bench_anchor', Path(__file__).with_name('anchor.py'))
anchor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anchor)
data = anchor.load_sibling('data')

CROP_SIZE = (64, 64)
CROP_RATIO = 224 / 256
JPEG_TOLERANCE = 3.0   # mean absolute difference in grey levels between two decodes of the same JPEG


# --- Test data -----------------------------------------------------------------------------------

def special_floats() -> List[float]:
    payload_nan = struct.unpack('<d', struct.pack('<Q', 0x7FF8_0000_0000_0123))[0]
    return [float('nan'), float('inf'), float('-inf'), -0.0, 5e-324, 1.7976931348623157e308, payload_nan]


def json_values(rng: np.random.Generator, count: int) -> list:
    fixed = [{}, {'text': ''}, {'ünïcødé': '日本語テキスト 🙂', 'list': [1, 2.5, None, True, False]},
             {'nested': {'deep': [{'a': [1, [2, [3]]]}], 'emoji': '🚀✨'}}, [], 'just a string', 12345,
             {'nan': float('nan'), 'big': 2**62, 'neg': -1e-300}]
    values = list(fixed)
    while len(values) < count:
        length = int(rng.integers(0, 40))
        values.append({'id': len(values), 'caption': ''.join(chr(int(c)) for c in rng.integers(0x20, 0x2FF, length)),
                       'boxes': rng.integers(0, 500, (int(rng.integers(0, 4)), 4)).tolist()})
    return values[:count]


def blob_values(rng: np.random.Generator, count: int, empty_at=(0, 5, 6)) -> List[bytes]:
    blobs = [rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes() for _ in range(count)]
    for i in empty_at:
        blobs[i % count] = b''
    blobs[7 % count] = b'\x00'
    blobs[-1] = b''
    return blobs


def varied_images(count: int, seed: int, low: int = 24, high: int = 220) -> List[np.ndarray]:
    """Photo-like images of random sizes in [low, high] per side (some below 64, some above 128)."""
    rng = np.random.default_rng([seed, 0xA11])
    images = []
    for i in range(count):
        height, width = (int(v) for v in rng.integers(low, high + 1, 2))
        images.append(cv2.resize(data.photo_image(i, seed), (width, height), interpolation=cv2.INTER_AREA))
    return images


def scalar_array_case(file: str, count: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    ints = [int(v) for v in rng.integers(-2**63, 2**63 - 1, count, endpoint=True)]
    ints[:4] = [-2**63, 2**63 - 1, 0, -1]
    floats = [float(v) for v in rng.standard_normal(count) * 1e3]
    floats[1:1 + len(special_floats())] = special_floats()
    mats = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(count)]
    mats[1][0, :3] = [np.nan, np.inf, -np.inf]
    vecs = [rng.integers(-32768, 32767, 7, endpoint=True).astype(np.int16) for _ in range(count)]
    vecs[0][:2] = [-32768, 32767]
    tensors = [rng.standard_normal((2, 3)) for _ in range(count)]
    return {'file': file, 'count': count, 'fields': [
        {'name': 'int', 'type': 'IntField', 'args': {}},
        {'name': 'float', 'type': 'FloatField', 'args': {}},
        {'name': 'mat', 'type': 'NDArrayField', 'args': {'dtype': 'float32', 'shape': (3, 4)}},
        {'name': 'vec16', 'type': 'NDArrayField', 'args': {'dtype': 'int16', 'shape': (7,)}},
        {'name': 'tensor', 'type': 'TorchTensorField', 'args': {'dtype': 'float64', 'shape': (2, 3)}},
    ], 'values': {'int': ints, 'float': floats, 'mat': mats, 'vec16': vecs, 'tensor': tensors}}


def bytes_json_case(file: str, count: int, seed: int, empty_at=(0, 5, 6)) -> dict:
    rng = np.random.default_rng(seed)
    return {'file': file, 'count': count, 'fields': [
        {'name': 'blob', 'type': 'BytesField', 'args': {}},
        {'name': 'meta', 'type': 'JSONField', 'args': {}},
    ], 'values': {'blob': blob_values(rng, count, empty_at), 'meta': json_values(rng, count)}}


def image_modes_case(file: str, count: int, seed: int, args: dict) -> dict:
    fields = [{'name': name, 'type': 'RGBImageField', 'args': field_args, 'varied': True}
              for name, field_args in args.items()]
    values = {name: varied_images(count, seed + k) for k, name in enumerate(args)}
    return {'file': file, 'count': count, 'fields': fields, 'values': values,
            'crop_size': CROP_SIZE, 'crop_ratio': CROP_RATIO}


def forward_cases() -> List[dict]:
    """Files our writer writes and FFCV 1.0.2 reads (partial last batches on purpose)."""
    cifar, labels = data.cifar_images(21, seed=3)
    fixed_jpeg = [cv2.resize(data.photo_image(i, 7), (64, 48), interpolation=cv2.INTER_AREA) for i in range(21)]
    fixed = {'file': 'ours_images_fixed.beton', 'count': 21, 'fields': [
        {'name': 'raw32', 'type': 'RGBImageField', 'args': {}},
        {'name': 'jpg48x64', 'type': 'RGBImageField', 'args': {'write_mode': 'jpg', 'jpeg_quality': 90}},
        {'name': 'label', 'type': 'IntField', 'args': {}},
    ], 'values': {'raw32': list(cifar), 'jpg48x64': fixed_jpeg, 'label': [int(v) for v in labels]}}
    varied = image_modes_case('ours_images_varied.beton', 23, 11, {
        'raw': {'write_mode': 'raw', 'max_resolution': 120},
        'jpg': {'write_mode': 'jpg', 'max_resolution': 128, 'jpeg_quality': 85},
        'smart': {'write_mode': 'smart', 'smart_threshold': 20000},
        'prop': {'write_mode': 'proportion', 'compress_probability': 0.5, 'max_resolution': 160},
    })
    return [scalar_array_case('ours_scalars_arrays.beton', 37, 1), bytes_json_case('ours_bytes_json.beton', 29, 2),
            fixed, varied]


def reverse_cases() -> List[dict]:
    """Files FFCV 1.0.2 writes and our Reader reads."""
    return [scalar_array_case('ffcv_scalars_arrays.beton', 13, 21),
            bytes_json_case('ffcv_bytes_json.beton', 11, 22, empty_at=(3, 4)),
            bytes_json_case('ffcv_bytes_empty_first.beton', 6, 23, empty_at=(0,)),
            image_modes_case('ffcv_images.beton', 12, 24, {
                'raw': {'write_mode': 'raw', 'max_resolution': 100},
                'jpg': {'write_mode': 'jpg', 'max_resolution': 96, 'jpeg_quality': 90},
                'smart': {'write_mode': 'smart', 'smart_threshold': 15000},
                'prop': {'write_mode': 'proportion', 'compress_probability': 0.5},
            })]


# --- Our side ------------------------------------------------------------------------------------

# the same spec -> Field rule on both sides: it builds from whichever `ffcv` the interpreter imports
build_field = anchor.load_sibling('anchor_compat_worker').build_field


class _Columns:
    """Indexed dataset over per-field value lists (torch tensors built for TorchTensorField)."""

    def __init__(self, case: dict):
        import torch
        self.columns = []
        for spec in case['fields']:
            values = case['values'][spec['name']]
            if spec['type'] == 'TorchTensorField':
                values = [torch.from_numpy(np.asarray(v)) for v in values]
            self.columns.append(values)

    def __len__(self):
        return len(self.columns[0])

    def __getitem__(self, index):
        return tuple(column[index] for column in self.columns)


def write_ours(case: dict, workdir: Path) -> None:
    """Write `case` with our writer and add what our Reader decodes (images) to the case."""
    from ffcv.reader import Reader
    from ffcv.writer import DatasetWriter
    fields = {spec['name']: build_field(spec) for spec in case['fields']}
    DatasetWriter(str(workdir / case['file']), fields, num_workers=2).from_indexed_dataset(
        _Columns(case), progress=False)
    reader = Reader(str(workdir / case['file']))
    case['ours_decoded'], case['modes'] = {}, {}
    for index, spec in enumerate(case['fields']):
        if spec['type'] == 'RGBImageField':
            case['ours_decoded'][spec['name']] = [reader.read_sample(i)[spec['name']] for i in range(case['count'])]
            case['modes'][spec['name']] = [int(m) for m in reader.metadata[f'f{index}']['mode']]


def _float_bits(value) -> bytes:
    return struct.pack('<d', float(value))


def _same(spec: dict, got, want) -> bool:
    kind = spec['type']
    if kind == 'IntField':
        return isinstance(got, int) and got == want
    if kind == 'FloatField':
        return _float_bits(got) == _float_bits(want)
    if kind in ('NDArrayField', 'TorchTensorField'):
        want = np.asarray(want)
        return got.shape == want.shape and got.dtype == want.dtype and got.tobytes() == want.tobytes()
    if kind == 'BytesField':
        return np.asarray(got).tobytes() == bytes(want)
    if kind == 'JSONField':
        return json.dumps(got) == json.dumps(want)
    raise ValueError(kind)


def read_reverse(case: dict, seen: dict, workdir: Path) -> List[dict]:
    """Our Reader on a file FFCV 1.0.2 wrote: one row per field."""
    from ffcv.reader import Reader
    rows = []

    def row(field, check, ok, detail):
        rows.append({'direction': 'FFCV writes, ours reads', 'file': case['file'], 'field': field,
                     'check': check, 'ok': bool(ok), 'detail': detail})
    try:
        reader = Reader(str(workdir / case['file']))
        samples = [reader.read_sample(i) for i in range(reader.num_samples)]
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        row('*', 'our Reader opens and reads every sample', False, f'{type(exc).__name__}: {exc}'[:400])
        return rows
    row('*', 'our Reader opens and reads every sample', len(samples) == case['count'], f'{len(samples)} samples')
    for index, spec in enumerate(case['fields']):
        name = spec['name']
        got = [sample[name] for sample in samples]
        if spec['type'] != 'RGBImageField':
            bad = next((i for i, (g, w) in enumerate(zip(got, case['values'][name])) if not _same(spec, g, w)), None)
            row(name, 'read_sample values exact', bad is None,
                'bitwise equal' if bad is None else f'sample {bad}: {got[bad]!r} vs {case["values"][name][bad]!r}')
            continue
        info = seen[name]
        modes = [int(m) for m in reader.metadata[f'f{index}']['mode']]
        row(name, 'modes as FFCV stored them', modes == info['modes'],
            f'{modes.count(0)} jpg / {modes.count(1)} raw')
        problems, worst = [], 0.0
        for i, (image, ffcv_decoded, resized, mode) in enumerate(zip(got, info['decoded'], info['resized'], modes)):
            if image.shape != resized.shape:
                problems.append(f'sample {i}: shape {image.shape} vs {resized.shape}')
            elif mode == 1 and not np.array_equal(image, resized):
                problems.append(f'sample {i}: raw pixels differ')
            elif mode == 0:
                error = float(np.abs(image.astype(np.float32) - ffcv_decoded).mean())
                worst = max(worst, error)
                if error >= JPEG_TOLERANCE:
                    problems.append(f'sample {i}: JPEG differs by {error:.2f} levels on average')
        row(name, 'read_sample: raw exact / JPEG ~ OpenCV decode', not problems,
            problems[0] if problems else f'worst JPEG mean diff {worst:.2f}')
    return rows


# --- Running both directions ---------------------------------------------------------------------

def _anchor_step(python: str, command: str, workdir: Path) -> Optional[str]:
    """Run the anchor worker; None on success, else the end of its output."""
    result = anchor.run_anchor(python, 'anchor_compat_worker.py', [command, str(workdir)], cwd=str(workdir))
    if result.returncode != 0:
        return (result.stdout + result.stderr)[-3000:]
    return None


def run_checks(anchor_python: Optional[str] = None, workdir: Optional[Path] = None) -> List[dict]:
    """Every check in both directions; rows {direction, file, field, check, ok, detail}."""
    python = anchor_python or anchor.default_anchor_python()
    if not anchor.anchor_available(python):
        raise FileNotFoundError(f'FFCV 1.0.2 environment not found at {python} ({anchor.SETUP_HINT})')
    with tempfile.TemporaryDirectory(prefix='ffcv-compat-') as temporary:
        workdir = Path(workdir or temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = []
        # (a) + (b): ours writes, FFCV reads
        cases = forward_cases()
        for case in cases:
            write_ours(case, workdir)
        (workdir / 'manifest.pkl').write_bytes(pickle.dumps(cases))
        failure = _anchor_step(python, 'read', workdir)
        if failure is not None:
            rows.append({'direction': 'ours writes, FFCV reads', 'file': '*', 'field': '*',
                         'check': 'FFCV worker ran', 'ok': False, 'detail': failure})
        else:
            for result in json.loads((workdir / 'ffcv_results.json').read_text()):
                rows.append({'direction': 'ours writes, FFCV reads', **result})
        # (c): FFCV writes, ours reads
        reverse = reverse_cases()
        (workdir / 'reverse_spec.pkl').write_bytes(pickle.dumps(reverse))
        failure = _anchor_step(python, 'write', workdir)
        if failure is not None:
            rows.append({'direction': 'FFCV writes, ours reads', 'file': '*', 'field': '*',
                         'check': 'FFCV worker wrote the files', 'ok': False, 'detail': failure})
        else:
            written = {w['file']: w['images'] for w in pickle.loads((workdir / 'ffcv_written.pkl').read_bytes())}
            for case in reverse:
                rows.extend(read_reverse(case, written[case['file']], workdir))
    return rows


def print_table(rows: List[dict]) -> None:
    widths = [max(len(str(r[k])) for r in rows) for k in ('file', 'field', 'check')]
    direction = None
    for r in rows:
        if r['direction'] != direction:
            direction = r['direction']
            print(f'\n== {direction} ==')
        status = 'PASS' if r['ok'] else 'FAIL'
        print(f"{status}  {r['file']:<{widths[0]}}  {r['field']:<{widths[1]}}  {r['check']:<{widths[2]}}  "
              f"{r['detail']}")
    failed = sum(not r['ok'] for r in rows)
    print(f'\n{len(rows) - failed} passed, {failed} failed')


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--anchor-python', default=anchor.default_anchor_python(),
                        help='python of the FFCV 1.0.2 environment (env FFCV_ANCHOR_PYTHON)')
    parser.add_argument('--keep', default=None, help='write the files here and keep them')
    args = parser.parse_args(argv)
    if not anchor.anchor_available(args.anchor_python):
        print(f'FFCV 1.0.2 environment not found at {args.anchor_python}: build it with {anchor.SETUP_HINT}')
        return 2
    rows = run_checks(args.anchor_python, Path(args.keep) if args.keep else None)
    print_table(rows)
    return 0 if all(r['ok'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
