"""FFCV 1.0.2 side of ffcv_compat.py: run under the anchor interpreter (``python -I``), never ours.

  anchor_compat_worker.py read DIR    read every file of DIR/manifest.pkl (written by our writer) with
                                      FFCV's Loader and with FFCV's Reader + raw bytes; checks -> DIR/ffcv_results.json
  anchor_compat_worker.py write DIR   write one small file per field kind with FFCV's DatasetWriter;
                                      what was written (and how FFCV sees it) -> DIR/ffcv_written.pkl

Each check is a row {file, field, check, ok, detail}; an exception inside a check is a failed row,
never a crash of the whole run.
"""
import json
import pickle
import sys
import traceback
from pathlib import Path

import cv2
import numpy as np

JPEG_TOLERANCE = 3.0   # mean absolute difference, grey levels, between two decodes of one JPEG
BATCH_SIZE = 8


class Checks:
    """Collects result rows."""

    def __init__(self):
        self.rows = []

    def add(self, file, field, check, ok, detail=''):
        self.rows.append({'file': file, 'field': field, 'check': check, 'ok': bool(ok), 'detail': detail})

    def run(self, file, field, check, function):
        """Run `function() -> (ok, detail)`; an exception is a failure with its message."""
        try:
            ok, detail = function()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            ok, detail = False, f'{type(exc).__name__}: {exc}'.strip()[:400]
            traceback.print_exc()
        self.add(file, field, check, ok, detail)


def bitwise_equal(a, b) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def first_mismatch(outputs, expected, compare):
    for i, (got, want) in enumerate(zip(outputs, expected)):
        if not compare(got, want):
            return i
    if len(outputs) != len(expected):
        return min(len(outputs), len(expected))
    return None


# --- Reading our files ---------------------------------------------------------------------------

def load_all(path, pipelines):
    """Every batch of FFCV's Loader, SEQUENTIAL, batch 8, drop_last=False, 1 worker: per field, a list."""
    import torch
    from ffcv.loader import Loader, OrderOption
    loader = Loader(str(path), batch_size=BATCH_SIZE, num_workers=1, order=OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines=pipelines)
    columns = None
    for batch in loader:
        if columns is None:
            columns = [[] for _ in batch]
        for column, values in zip(columns, batch):
            if isinstance(values, torch.Tensor):
                values = values.cpu().numpy()
            column.extend(np.array(v, copy=True) for v in values)
    return columns


def raw_blobs(path, field_index, pointer_key):
    """Per sample (metadata row, bytes) as FFCV's own memory manager finds them (sorted ptr -> size)."""
    from ffcv.memory_managers.os_cache import OSCacheManager
    from ffcv.reader import Reader
    reader = Reader(str(path))
    manager = OSCacheManager(reader)
    data = np.memmap(str(path), dtype=np.uint8, mode='r')
    column = reader.metadata[f'f{field_index}']
    blobs = []
    for row in column:
        ptr = int(row[pointer_key])
        size = int(manager.sizes[np.searchsorted(manager.ptrs, ptr)])
        blobs.append((row, np.array(data[ptr:ptr + size])))
    return reader, blobs


def ffcv_resizer(image, max_resolution):
    from ffcv.fields.rgb_image import resizer
    return resizer(image, max_resolution)


def expected_mode(field_spec, stored_image, ours_mode):
    """0 (jpg) or 1 (raw) as FFCV's rules give for this field; 'proportion' is random: ours is taken."""
    mode = field_spec['args'].get('write_mode', 'raw')
    if mode == 'jpg':
        return 0
    if mode == 'smart':
        threshold = field_spec['args'].get('smart_threshold')
        return 0 if threshold is not None and stored_image.nbytes > threshold else 1
    if mode == 'proportion':
        return ours_mode
    return 1


def check_image_bytes(checks, name, path, index, spec, case):
    """FFCV's Reader + raw bytes: mode, size, raw pixels exact, JPEG decodes close to ours."""
    field = spec['name']
    originals = case['values'][field]
    ours = case['ours_decoded'][field]
    ours_modes = case['modes'][field]
    reader, blobs = raw_blobs(path, index, 'data_ptr')
    max_res = spec['args'].get('max_resolution')
    expected = [ffcv_resizer(image, max_res) for image in originals]

    def modes():
        want = [expected_mode(spec, e, m) for e, m in zip(expected, ours_modes)]
        got = [int(row['mode']) for row, _ in blobs]
        bad = first_mismatch(got, want, lambda a, b: a == b)
        counts = f'{got.count(0)} jpg / {got.count(1)} raw'
        return bad is None, counts if bad is None else f'sample {bad}: mode {got[bad]}, expected {want[bad]}'
    checks.run(name, field, 'mode per FFCV rule', modes)

    def sizes():
        got = [(int(row['height']), int(row['width'])) for row, _ in blobs]
        want = [e.shape[:2] for e in expected]
        bad = first_mismatch(got, want, lambda a, b: tuple(a) == tuple(b))
        if bad is not None:
            return False, f'sample {bad}: {got[bad]} vs FFCV resizer {want[bad]}'
        return True, f'{len(got)} images'
    checks.run(name, field, 'height/width = FFCV resizer', sizes)

    def pixels():
        worst_jpeg, raw_count = 0.0, 0
        for i, ((row, blob), want, mine) in enumerate(zip(blobs, expected, ours)):
            height, width = int(row['height']), int(row['width'])
            if int(row['mode']) == 1:
                raw_count += 1
                if blob.size != height * width * 3:
                    return False, f'sample {i}: raw blob of {blob.size} bytes for {height}x{width}'
                if not np.array_equal(blob.reshape(height, width, 3), want):
                    diff = np.abs(blob.reshape(height, width, 3).astype(int) - want).max()
                    return False, f'sample {i}: raw pixels differ from FFCV resizer output (max diff {diff})'
            else:
                decoded = cv2.imdecode(blob, cv2.IMREAD_COLOR)
                if decoded is None:
                    return False, f'sample {i}: OpenCV cannot decode the {blob.size}-byte JPEG'
                decoded = decoded[:, :, ::-1]
                if decoded.shape != (height, width, 3):
                    return False, f'sample {i}: JPEG decodes to {decoded.shape}, metadata says {height}x{width}'
                error = float(np.abs(decoded.astype(np.float32) - mine).mean())
                worst_jpeg = max(worst_jpeg, error)
                if error >= JPEG_TOLERANCE:
                    return False, f'sample {i}: JPEG decode differs from ours by {error:.2f} levels on average'
        return True, f'{raw_count} raw exact; JPEG vs our decode worst mean diff {worst_jpeg:.2f}'
    checks.run(name, field, 'Reader bytes: raw exact / JPEG ~ ours', pixels)


def center_crop_reference(image, size, ratio):
    from ffcv.fields.rgb_image import get_center_crop
    height, width = image.shape[:2]
    top, left, crop_h, crop_w = get_center_crop(height, width, None, ratio)
    crop = np.ascontiguousarray(image[top:top + crop_h, left:left + crop_w])
    return cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def read_case(checks, workdir, case):
    from ffcv.fields.decoders import CenterCropRGBImageDecoder
    name = case['file']
    path = workdir / name
    specs = case['fields']
    pipelines = {}
    for spec in specs:
        if spec['type'] == 'RGBImageField' and spec.get('varied'):
            pipelines[spec['name']] = [CenterCropRGBImageDecoder(tuple(case['crop_size']), case['crop_ratio'])]
    outputs = {}

    def loader():
        columns = load_all(path, pipelines)
        for spec, column in zip(specs, columns):
            outputs[spec['name']] = column
        count = len(columns[0]) if columns else 0
        return count == case['count'], f'{count} samples in {-(-count // BATCH_SIZE)} batches (last partial)'
    checks.run(name, '*', 'FFCV Loader reads the file', loader)
    if not outputs:
        return

    for index, spec in enumerate(specs):
        field, kind = spec['name'], spec['type']
        got = outputs[field]
        want = case['values'][field]
        if kind in ('IntField', 'FloatField', 'NDArrayField', 'TorchTensorField'):
            def exact(got=got, want=want, kind=kind):
                dtype = {'IntField': np.int64, 'FloatField': np.float64}.get(kind)
                reference = [np.asarray(w, dtype=dtype).reshape(g.shape) if dtype else np.asarray(w)
                             for g, w in zip(got, want)]
                bad = first_mismatch(got, reference, bitwise_equal)
                return bad is None, 'bitwise equal' if bad is None else f'sample {bad}: {got[bad]!r} vs {want[bad]!r}'
            checks.run(name, field, 'Loader values exact', exact)
        elif kind == 'BytesField':
            def prefix(got=got, want=want):
                bad = first_mismatch(got, want, lambda g, w: g.size >= len(w) and g[:len(w)].tobytes() == bytes(w))
                sizes = [len(w) for w in want]
                detail = f'{len(want)} blobs, sizes {min(sizes)}..{max(sizes)} ({sizes.count(0)} empty)'
                return bad is None, detail if bad is None else f'sample {bad} ({len(want[bad])} bytes) differs'
            checks.run(name, field, 'Loader bytes exact', prefix)

            def stored(index=index, want=want):
                _, blobs = raw_blobs(path, index, 'ptr')
                bad = first_mismatch([b for _, b in blobs], want, lambda g, w: g.tobytes() == bytes(w))
                return bad is None, 'sizes and bytes exact' if bad is None else (
                    f'sample {bad}: FFCV finds {blobs[bad][1].size} bytes at ptr {int(blobs[bad][0]["ptr"])}, '
                    f'expected {len(want[bad])}')
            checks.run(name, field, 'Reader + alloc table bytes', stored)
        elif kind == 'JSONField':
            from ffcv.fields import JSONField

            def unpacked(got=got, want=want):
                objects = [JSONField.unpack(g) for g in got]
                bad = first_mismatch(objects, want, lambda a, b: json.dumps(a) == json.dumps(b))
                if bad is not None:
                    return False, f'sample {bad}: {objects[bad]!r}'
                return True, f'{len(objects)} objects equal'
            checks.run(name, field, 'Loader + JSONField.unpack', unpacked)
        elif kind == 'RGBImageField':
            ours = case['ours_decoded'][field]
            if spec.get('varied'):
                def cropped(got=got, ours=ours, spec=spec):
                    worst = 0.0
                    for i, (image, mine) in enumerate(zip(got, ours)):
                        reference = center_crop_reference(mine, case['crop_size'], case['crop_ratio'])
                        error = float(np.abs(image.astype(np.float32) - reference).mean())
                        worst = max(worst, error)
                        if error >= JPEG_TOLERANCE:
                            return False, f'sample {i}: center crop differs by {error:.2f} levels on average'
                    return True, (f'CenterCrop{tuple(case["crop_size"])} vs same crop of our decode: '
                                  f'worst mean diff {worst:.2f}')
                checks.run(name, field, 'Loader CenterCrop decode', cropped)
            else:
                def simple(got=got, ours=ours, spec=spec):
                    jpeg = spec['args'].get('write_mode', 'raw') != 'raw'
                    worst = 0.0
                    for i, (image, mine) in enumerate(zip(got, ours)):
                        if image.shape != mine.shape:
                            return False, f'sample {i}: shape {image.shape}, expected {mine.shape}'
                        error = float(np.abs(image.astype(np.float32) - mine).mean())
                        worst = max(worst, error)
                        if (error >= JPEG_TOLERANCE) if jpeg else error != 0:
                            return False, f'sample {i}: differs by {error:.2f} levels on average'
                    return True, 'exact' if not jpeg else f'vs our decode: worst mean diff {worst:.2f}'
                checks.run(name, field, 'Loader SimpleRGBImageDecoder', simple)
            check_image_bytes(checks, name, path, index, spec, case)


def read_command(workdir: Path) -> None:
    cases = pickle.loads((workdir / 'manifest.pkl').read_bytes())
    checks = Checks()
    for case in cases:
        read_case(checks, workdir, case)
    (workdir / 'ffcv_results.json').write_text(json.dumps(checks.rows, indent=1))


# --- Writing files with FFCV 1.0.2 ---------------------------------------------------------------

def build_field(spec):
    """The Field a case's spec describes, from whichever `ffcv` this interpreter imports (ffcv_compat.py
    uses this function for our side too)."""
    import torch
    from ffcv import fields
    args = dict(spec['args'])
    if spec['type'] == 'NDArrayField':
        return fields.NDArrayField(np.dtype(args['dtype']), tuple(args['shape']))
    if spec['type'] == 'TorchTensorField':
        return fields.TorchTensorField(getattr(torch, args['dtype']), tuple(args['shape']))
    return getattr(fields, spec['type'])(**args)


class ListDataset:
    def __init__(self, columns):
        self.columns = columns

    def __len__(self):
        return len(self.columns[0])

    def __getitem__(self, index):
        return tuple(column[index] for column in self.columns)


def write_command(workdir: Path) -> None:
    import torch
    from ffcv.writer import DatasetWriter
    cases = pickle.loads((workdir / 'reverse_spec.pkl').read_bytes())
    written = []
    for case in cases:
        path = workdir / case['file']
        fields = {spec['name']: build_field(spec) for spec in case['fields']}
        columns = []
        for spec in case['fields']:
            values = case['values'][spec['name']]
            if spec['type'] == 'TorchTensorField':
                values = [torch.from_numpy(np.array(v)) for v in values]
            elif spec['type'] == 'BytesField':
                values = [np.frombuffer(bytes(v), dtype=np.uint8) for v in values]
            columns.append(values)
        DatasetWriter(str(path), fields, num_workers=1).from_indexed_dataset(ListDataset(columns))
        # How FFCV itself sees the images it stored: mode per sample and its own decode of each.
        seen = {}
        for index, spec in enumerate(case['fields']):
            if spec['type'] != 'RGBImageField':
                continue
            _, blobs = raw_blobs(path, index, 'data_ptr')
            modes, decoded = [], []
            for row, blob in blobs:
                height, width = int(row['height']), int(row['width'])
                modes.append(int(row['mode']))
                if int(row['mode']) == 1:
                    decoded.append(blob.reshape(height, width, 3))
                else:
                    decoded.append(cv2.imdecode(blob, cv2.IMREAD_COLOR)[:, :, ::-1].copy())
            max_resolution = spec['args'].get('max_resolution')
            expected = [ffcv_resizer(image, max_resolution) for image in case['values'][spec['name']]]
            seen[spec['name']] = {'modes': modes, 'decoded': decoded, 'resized': expected}
        written.append({'file': case['file'], 'images': seen})
    (workdir / 'ffcv_written.pkl').write_bytes(pickle.dumps(written))


def main() -> None:
    command, workdir = sys.argv[1], Path(sys.argv[2])
    import ffcv
    print(f'FFCV from {ffcv.__file__}', file=sys.stderr)
    if command == 'read':
        read_command(workdir)
    elif command == 'write':
        write_command(workdir)
    else:
        raise SystemExit(f'unknown command {command!r}')


if __name__ == '__main__':
    main()
