"""Fuzz runner: opens and fully iterates corrupted fixture files, one seed after another.

    python tests/fuzz_runner.py FIXTURES_DIR WORK_DIR SEED [SEED ...]

For each seed it prints ``START <seed>``, then ``DONE <seed> <outcome>`` (a clean rejection or a load
whose every value matched the file) or ``BAD <seed> <reason>`` (an exception that is not a clear error,
a value that differs from what the file holds, a leaked thread). A crash or a hang shows as a START
without its DONE; `fuzz_campaign` watches for that. Run it with a single seed to reproduce one case.
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ffcv.imaging import jpeg  # noqa: E402
from ffcv.fields import BytesField, FloatField, IntField, NDArrayField, RGBImageField  # noqa: E402
from ffcv.imaging.crop import center_crop_windows  # noqa: E402
from ffcv.fields.decoders import CenterCropRGBImageDecoder  # noqa: E402
from ffcv.loader import Loader, OrderOption  # noqa: E402
from ffcv.pipeline import PipelineSpec  # noqa: E402
from ffcv.pipeline.pipeline_spec import PipelineError  # noqa: E402
from ffcv.reader import Reader  # noqa: E402
from ffcv.transforms import ToTensor  # noqa: E402
from fuzz_corruptions import corrupt  # noqa: E402

CROP = (24, 24)
CROP_RATIO = 224 / 256


class Bad(Exception):
    """The library did something the promise rules out (the message says what)."""


def plan(reader: Reader, dct_scaling: bool) -> dict:
    """Loader pipelines covering every field with its default decoder, plus a center crop of images."""
    pipelines, sources = {}, {}
    for index, (name, handler) in enumerate(reader.handlers.items()):
        column = reader.column(index)
        if isinstance(handler, RGBImageField):
            crop = CenterCropRGBImageDecoder(CROP, CROP_RATIO, dct_scaling=dct_scaling)
            same_size = column.size and (column['height'] == column['height'][0]).all() and (
                column['width'] == column['width'][0]).all()
            if not same_size:  # the default decoder needs one size: crop only
                pipelines[name] = [crop, ToTensor()]
                sources[name] = (index, 'crop', dct_scaling)
                continue
            pipelines[f'{name}_crop'] = PipelineSpec(name, crop, [ToTensor()])
            sources[f'{name}_crop'] = (index, 'crop', dct_scaling)
        sources[name] = (index, 'default', False)
    return {'pipelines': pipelines, 'sources': sources}


def _image(reader: Reader, entry, min_side=(0, 0)) -> np.ndarray:
    blob = reader.read(int(entry['data_ptr']))
    height, width = int(entry['height']), int(entry['width'])
    if entry['mode'] == 1:
        return blob.reshape(height, width, 3)
    if jpeg.jpeg_size(blob) != (height, width):
        raise jpeg.JPEGDecodeError(f'JPEG header says {jpeg.jpeg_size(blob)}, the metadata {height}x{width}')
    return jpeg.decode_jpeg(blob, min_height=min_side[0], min_width=min_side[1])  # the loader's settings


def _crop(reader: Reader, entry, dct_scaling: bool) -> np.ndarray:
    """Center crop resized to CROP, from a full decode or (dct_scaling) a reduced-scale decode."""
    height, width = int(entry['height']), int(entry['width'])
    top, left, crop_h, crop_w = (int(v) for v in center_crop_windows(np.array([height]), np.array([width]),
                                                                     CROP_RATIO)[0])
    need_h, need_w = -(-CROP[0] * height // crop_h), -(-CROP[1] * width // crop_w)
    scaled = dct_scaling and entry['mode'] == 0 and height >= 2 * need_h and width >= 2 * need_w
    image = _image(reader, entry, (need_h, need_w) if scaled else (0, 0))
    if scaled:  # the window in the reduced image
        scale_y, scale_x = image.shape[0] / height, image.shape[1] / width
        top, left = int(top * scale_y), int(left * scale_x)
        crop_h = max(1, min(round(crop_h * scale_y), image.shape[0] - top))
        crop_w = max(1, min(round(crop_w * scale_x), image.shape[1] - left))
    return cv2.resize(image[top:top + crop_h, left:left + crop_w], CROP[::-1], interpolation=cv2.INTER_AREA)


def expected_value(reader: Reader, source: tuple, row: int, width: int) -> np.ndarray:
    """What the loader must return for sample `row`, computed straight from the file's bytes."""
    field_index, kind, dct_scaling = source
    handler = list(reader.handlers.values())[field_index]
    entry = reader.column(field_index)[row]
    if isinstance(handler, (IntField, FloatField)):
        return np.array([entry])
    if isinstance(handler, NDArrayField):
        return reader.read(int(entry), handler.element_size).view(handler.dtype).reshape(handler.shape)
    if isinstance(handler, BytesField):
        out = np.zeros(width, np.uint8)
        out[:int(entry['size'])] = reader.read(int(entry['ptr']), int(entry['size']))
        return out
    return _image(reader, entry) if kind == 'default' else _crop(reader, entry, dct_scaling)


def check_file(path: str, os_cache: bool, dct_scaling: bool) -> str:
    """Open and iterate `path`; return the outcome or raise Bad."""
    try:
        reader = Reader(path)
        setup = plan(reader, dct_scaling)
        loader = Loader(path, batch_size=8, num_workers=2, os_cache=os_cache, order=OrderOption.SEQUENTIAL,
                        drop_last=False, seed=0, pipelines=setup['pipelines'])
    except PipelineError as exc:  # names the pipeline and field (e.g. a field whose type was changed)
        return f'rejected at open: {type(exc).__name__}'
    except ValueError as exc:  # CorruptFileError, or a custom field (type id 255) without its class
        if path not in str(exc):
            raise Bad(f'{type(exc).__name__} does not name the file: {exc}')
        return f'rejected at open: {type(exc).__name__}'
    except MemoryError as exc:
        raise Bad(f'MemoryError at open (a size read from the file was trusted): {exc}')
    names = list(setup['pipelines']) + [n for n in setup['sources'] if n not in setup['pipelines']]
    order = [name for name in reader.field_names if name in setup['sources']] + [
        name for name in setup['pipelines'] if name not in reader.field_names]
    assert sorted(order) == sorted(names)
    row = 0
    try:
        for batch in loader:
            for name, values in zip(order, batch):
                values = values.numpy()
                for k in range(values.shape[0]):
                    try:
                        want = expected_value(reader, setup['sources'][name], row + k, values.shape[-1])
                    except jpeg.JPEGDecodeError as exc:
                        raise Bad(f"sample {row + k}: loaded '{name}' although its JPEG is bad ({exc})")
                    if values[k].tobytes() != np.ascontiguousarray(want, values.dtype).tobytes():
                        raise Bad(f"sample {row + k}, output '{name}': loaded value differs from the file's")
            row += batch[0].shape[0]
    except jpeg.JPEGDecodeError as exc:  # must name a sample whose JPEG really is bad
        notes = ' '.join(getattr(exc, '__notes__', []))
        named = [int(w) for w in notes.replace(',', ' ').split() if w.isdigit()]
        if 'sample' not in notes:
            raise Bad(f'JPEG error without the sample: {exc}')
        return f'rejected at load: JPEGDecodeError ({"sample" if named else "?"})'
    if row != reader.num_samples:
        raise Bad(f'{row} samples loaded, the file has {reader.num_samples}')
    return 'loaded, values match the file'


def threads_settle(baseline: int, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while threading.active_count() > baseline and time.time() < deadline:
        gc.collect()
        time.sleep(0.02)
    return threading.active_count() <= baseline


def run_seed(seed: int, fixtures_dir: str, work_dir: str) -> str:
    name, data, description = corrupt(seed, fixtures_dir)
    path = os.path.join(work_dir, f'fuzz_{seed}_{name}.beton')
    with open(path, 'wb') as handle:
        handle.write(data)
    baseline = threading.active_count()
    try:
        outcome = check_file(path, os_cache=seed % 3 != 0, dct_scaling=seed % 2 == 0)
    except Bad as exc:
        raise Bad(f'{name}: {description}: {exc}')
    except Exception as exc:
        detail = ''.join(traceback.format_exception_only(type(exc), exc)).strip().replace('\n', ' | ')
        raise Bad(f'{name}: {description}: unclear exception {detail}')
    finally:
        os.unlink(path)
    if not threads_settle(baseline):
        raise Bad(f'{name}: {description}: {threading.active_count() - baseline} threads left running')
    return f'{name}: {outcome}'


def main(argv) -> int:
    fixtures_dir, work_dir, *seeds = argv
    for seed in seeds:
        print(f'START {seed}', flush=True)
        try:
            print(f'DONE {seed} {run_seed(int(seed), fixtures_dir, work_dir)}', flush=True)
        except Bad as exc:
            print(f'BAD {seed} {exc}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
