"""Write the FFCV-written fixture files of this folder (``*.beton``, ``*.expected.npz``, ``basic.meta.json``,
``manifest.json``) with the original FFCV 1.0.2.

Run it with FFCV 1.0.2's interpreter (built by ``bash scripts/setup_ffcv_anchor.sh``), isolated so that
``import ffcv`` cannot find this repository's package, from the repository root::

    /root/.venvs/ffcv-anchor/bin/python -I tests/data/ffcv_fixtures/make_fixtures.py /tmp/ffcv_fixtures

It writes into the given folder and refuses to write into this one unless ``--overwrite`` is given. What it
writes is what README.md and manifest.json describe: seed 11, pages of 2 MiB, one writer worker, images that
are random crops of scikit-image's sample photographs, labels and values drawn from NumPy's generator. The
files are not byte-identical to the committed ones (those were made by an earlier, unrecorded script), but
they have the same names, fields, field options, sample counts and ``.npz`` keys, dtypes and shapes, and the
same manifest.json; two runs give the same bytes. While FFCV's compiled pipelines are freed, numba may print
``Exception ignored in: <finalize ...> KeyError: ...``: harmless.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 11
PAGE_SIZE = 2 * 1024 * 1024
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket')  # colour photographs inside the scikit-image wheel

# name: (samples, RGBImageField arguments, (min, max) side of the images given to the writer)
IMAGE_FILES = {
    'images_raw': (23, {'write_mode': 'raw'}, (16, 96)),
    'images_jpg': (31, {'write_mode': 'jpg', 'max_resolution': 128, 'jpeg_quality': 90}, (64, 300)),
    'images_proportion': (29, {'write_mode': 'proportion', 'compress_probability': 0.5, 'jpeg_quality': 80},
                          (40, 200)),
    'images_smart': (25, {'write_mode': 'smart', 'smart_threshold': 64 * 64 * 3}, (24, 160)),
    'cifar_like': (64, {'write_mode': 'raw'}, (32, 32)),
}
BASIC_SAMPLES = 97
BASIC_FIELDS = {'label': 'IntField', 'value': 'FloatField', 'array': 'NDArrayField(float32, (3, 4))',
                'blob': 'BytesField', 'meta': 'JSONField', 'tensor': 'TorchTensorField(float32, (2, 3))'}
IMAGE_EXPECTED = ('{name}.expected.npz: labels; modes (0 jpg, 1 raw, as FFCV stores them), heights, widths as '
                  'stored; source_i = array given to the writer; stored_i = the stored image decoded (raw: exact; '
                  'jpg: decoded by OpenCV/libjpeg-turbo, allow a few levels per pixel); center_crop = FFCV 1.0.2 '
                  'CenterCropRGBImageDecoder(({crop}, {crop}), 224/256) output for every sample in order '
                  '(N, {crop}, {crop}, 3) uint8')
BASIC_EXPECTED = ('basic.expected.npz (label, value, array, tensor, blob_lengths + blob_concat) and basic.meta.json '
                  '(the JSON objects, in order)')


def load_photos() -> List[np.ndarray]:
    import skimage.data
    return [np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]) for name in PHOTOS]


def photo_crop(rng: np.random.Generator, photos: List[np.ndarray], height: int, width: int) -> np.ndarray:
    """A (height, width, 3) uint8 crop of a random photograph: a random window up to 2.5 times larger than
    the output, shrunk to size (OpenCV area interpolation), mirrored half of the time."""
    import cv2
    photo = photos[int(rng.integers(len(photos)))]
    scale = rng.uniform(1.0, 2.5)
    crop_h = min(photo.shape[0], int(np.ceil(height * scale)))
    crop_w = min(photo.shape[1], int(np.ceil(width * scale)))
    top = int(rng.integers(photo.shape[0] - crop_h + 1))
    left = int(rng.integers(photo.shape[1] - crop_w + 1))
    image = photo[top:top + crop_h, left:left + crop_w]
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image, dtype=np.uint8)


def write(path: Path, fields: Dict[str, object], samples: List[tuple]) -> None:
    from ffcv.writer import DatasetWriter
    np.random.seed(SEED)  # write_mode='proportion' draws from NumPy's global generator (in the forked worker)
    writer = DatasetWriter(str(path), fields, page_size=PAGE_SIZE, num_workers=1)
    writer.from_indexed_dataset(samples)


def stored_images(path: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, List[np.ndarray]]:
    """Modes, heights, widths and decoded pixels of field 0 (the image), as the file stores them."""
    import cv2
    from ffcv.reader import Reader
    reader = Reader(str(path))
    images = reader.metadata['f0']
    sizes = dict(zip(reader.alloc_table['ptr'].tolist(), reader.alloc_table['size'].tolist()))
    data = np.fromfile(str(path), dtype=np.uint8)
    decoded = []
    for mode, height, width, ptr in zip(images['mode'], images['height'], images['width'], images['data_ptr']):
        raw = data[int(ptr):int(ptr) + sizes[int(ptr)]]
        if mode == 1:  # raw pixels
            decoded.append(raw[:int(height) * int(width) * 3].reshape(int(height), int(width), 3).copy())
        else:  # JPEG, written from RGB by OpenCV
            decoded.append(cv2.cvtColor(cv2.imdecode(raw, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    return (images['mode'].astype(np.uint8), images['height'].astype(np.uint16),
            images['width'].astype(np.uint16), decoded)


def center_crops(path: Path, crop: int, count: int) -> np.ndarray:
    """FFCV's CenterCropRGBImageDecoder((crop, crop), 224/256) output for every sample, in order."""
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder
    from ffcv.loader import Loader, OrderOption
    loader = Loader(str(path), batch_size=16, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={'image': [CenterCropRGBImageDecoder((crop, crop), 224 / 256)], 'label': [IntDecoder()]})
    crops = np.concatenate([np.array(images, copy=True) for images, _ in loader])
    assert crops.shape == (count, crop, crop, 3) and crops.dtype == np.uint8, crops.shape
    return crops


def make_images(out: Path, index: int, name: str, photos: List[np.ndarray]) -> dict:
    from ffcv.fields import IntField, RGBImageField
    count, image_args, (low, high) = IMAGE_FILES[name]
    rng = np.random.default_rng([SEED, index])
    sources = [photo_crop(rng, photos, int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))
               for _ in range(count)]
    labels = rng.integers(0, 1000, size=count).astype(np.int64)
    path = out / f'{name}.beton'
    write(path, {'image': RGBImageField(**image_args), 'label': IntField()},
          [(image, int(label)) for image, label in zip(sources, labels)])
    modes, heights, widths, stored = stored_images(path)
    crop = 32 if name == 'cifar_like' else 64
    arrays = {'labels': labels, 'modes': modes, 'heights': heights, 'widths': widths,
              'center_crop': center_crops(path, crop, count)}
    arrays.update({f'source_{i}': image for i, image in enumerate(sources)})
    arrays.update({f'stored_{i}': image for i, image in enumerate(stored)})
    np.savez_compressed(out / f'{name}.expected.npz', **arrays)
    return {'samples': count, 'fields': {'image': f'RGBImageField({image_args!r})', 'label': 'IntField'},
            'expected': IMAGE_EXPECTED.format(name=name, crop=crop)}


def make_basic(out: Path, index: int) -> dict:
    import torch
    from ffcv.fields import BytesField, FloatField, IntField, JSONField, NDArrayField, TorchTensorField
    rng = np.random.default_rng([SEED, index])
    count = BASIC_SAMPLES
    labels = rng.integers(-2 ** 40, 2 ** 40, size=count).astype(np.int64)
    values = rng.normal(size=count)
    arrays = rng.normal(size=(count, 3, 4)).astype(np.float32)
    tensors = rng.normal(size=(count, 2, 3)).astype(np.float32)
    blobs = [rng.integers(0, 256, size=int(rng.integers(0, 300))).astype(np.uint8) for _ in range(count)]
    metas = [{'id': i, 'name': f'sample-{i}', 'tags': rng.integers(0, 10, size=int(rng.integers(0, 4))).tolist()}
             for i in range(count)]
    fields = {'label': IntField(), 'value': FloatField(), 'array': NDArrayField(np.dtype('float32'), (3, 4)),
              'blob': BytesField(), 'meta': JSONField(), 'tensor': TorchTensorField(torch.float32, (2, 3))}
    samples = [(int(labels[i]), float(values[i]), arrays[i], blobs[i], metas[i], torch.from_numpy(tensors[i]))
               for i in range(count)]
    write(out / 'basic.beton', fields, samples)
    np.savez_compressed(out / 'basic.expected.npz', label=labels, value=values, array=arrays, tensor=tensors,
                        blob_lengths=np.array([blob.size for blob in blobs], dtype=np.int64),
                        blob_concat=np.concatenate(blobs).astype(np.uint8))
    (out / 'basic.meta.json').write_text(json.dumps(metas))
    return {'samples': count, 'fields': dict(BASIC_FIELDS), 'expected': BASIC_EXPECTED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='folder to write the fixture files into (created if missing)')
    parser.add_argument('--overwrite', action='store_true', help='allow writing into the committed fixture folder')
    args = parser.parse_args()
    import ffcv
    if metadata.version('ffcv') != '1.0.2' or HERE.parent.parent.parent in Path(ffcv.__file__).resolve().parents:
        sys.exit(f'needs the original FFCV 1.0.2 (run its interpreter with -I); got {ffcv.__file__}')
    out = Path(args.out).resolve()
    if out == HERE and not args.overwrite:
        sys.exit(f'{out} holds the committed fixtures: pass --overwrite to replace them')
    out.mkdir(parents=True, exist_ok=True)
    photos = load_photos()
    files = {'basic.beton': make_basic(out, 0)}
    for index, name in enumerate(IMAGE_FILES, start=1):
        files[f'{name}.beton'] = make_images(out, index, name, photos)
        print(f'{name}.beton: {files[name + ".beton"]["samples"]} samples')
    manifest = {'written_by': 'ffcv 1.0.2 (PyPI)', 'seed': SEED, 'files': files}
    (out / 'manifest.json').write_text(json.dumps(manifest, indent=1))
    print(f'wrote {len(files)} .beton files and their expected values to {out}')


if __name__ == '__main__':
    main()
