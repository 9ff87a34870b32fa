"""Decoders through the Loader, against the FFCV-written fixtures and NumPy/OpenCV references."""
import json

import cv2
import numpy as np
import pytest
import torch

from ffcv.fields import JSONField, RGBImageField
from ffcv.fields.decoders import (BytesDecoder, CenterCropRGBImageDecoder, FloatDecoder, IntDecoder,
                                  NDArrayDecoder, RandomResizedCropRGBImageDecoder, SimpleRGBImageDecoder)
from ffcv.loader import Loader
from ffcv.transforms import Squeeze, ToTensor

from conftest import photo_like
from helpers import write_and_read

IMAGE_FILES = ['images_raw', 'images_jpg', 'images_proportion', 'images_smart', 'cifar_like']


def load_all(path, pipelines, batch_size=8, **kwargs):
    loader = Loader(path, batch_size=batch_size, drop_last=False, pipelines=pipelines, **kwargs)
    batches = [[t.clone() for t in batch] for batch in loader]  # buffers are reused: copy
    return [torch.cat([b[k] for b in batches]) for k in range(len(batches[0]))]


def test_basic_fixture_through_loader(fixtures_dir):
    path = fixtures_dir / 'basic.beton'
    expected = np.load(fixtures_dir / 'basic.expected.npz')
    meta = json.loads((fixtures_dir / 'basic.meta.json').read_text())
    label, value, array, blob, meta_rows, tensor = load_all(path, {
        'label': [IntDecoder(), ToTensor(), Squeeze()], 'value': [FloatDecoder(), ToTensor()],
        'array': [NDArrayDecoder(), ToTensor()], 'blob': [BytesDecoder(), ToTensor()],
        'meta': [BytesDecoder(), ToTensor()], 'tensor': [NDArrayDecoder(), ToTensor()]}, batch_size=10)
    np.testing.assert_array_equal(label.numpy(), expected['label'])
    np.testing.assert_array_equal(value.numpy()[:, 0], expected['value'])
    np.testing.assert_array_equal(array.numpy(), expected['array'])
    np.testing.assert_array_equal(tensor.numpy(), expected['tensor'])
    offsets = np.concatenate([[0], np.cumsum(expected['blob_lengths'])])
    assert blob.shape[1] == expected['blob_lengths'].max()
    for i, length in enumerate(expected['blob_lengths']):
        np.testing.assert_array_equal(blob[i, :length].numpy(), expected['blob_concat'][offsets[i]:offsets[i + 1]])
        assert not blob[i, length:].any()  # tail cleared (FFCV leaves stale bytes)
    assert JSONField.unpack(meta_rows) == meta


@pytest.mark.parametrize('name', IMAGE_FILES)
def test_center_crop_matches_ffcv(fixtures_dir, name):
    """Same crop window and INTER_AREA resize as FFCV 1.0.2 (full-size decode, as FFCV does)."""
    expected = np.load(fixtures_dir / f'{name}.expected.npz')
    size = expected['center_crop'].shape[1]
    decoder = CenterCropRGBImageDecoder((size, size), 224 / 256, dct_scaling=False)
    (images,) = load_all(fixtures_dir / f'{name}.beton', {'image': [decoder, ToTensor()], 'label': None})
    diff = np.abs(images.numpy().astype(int) - expected['center_crop'].astype(int))
    raw = expected['modes'] == 1
    assert diff[raw].max(initial=0) == 0                  # raw: bit-exact
    if (~raw).any():                                      # JPEG: IDCT rounding of two decoders only
        assert diff[~raw].mean() < 0.5 and diff[~raw].max() <= 16


def test_simple_decoder_on_fixture(fixtures_dir):
    expected = np.load(fixtures_dir / 'cifar_like.expected.npz')
    images, labels = load_all(fixtures_dir / 'cifar_like.beton', {'image': [SimpleRGBImageDecoder(), ToTensor()]})
    np.testing.assert_array_equal(images.numpy(), np.stack([expected[f'source_{i}'] for i in range(64)]))
    np.testing.assert_array_equal(labels.numpy()[:, 0], expected['labels'])


def test_simple_decoder_jpeg_matches_reader(tmp_beton, rng):
    images = [photo_like(rng, 40, 56) for _ in range(20)]
    reader = write_and_read(tmp_beton(), {'image': RGBImageField(write_mode='jpg')}, [(im,) for im in images])
    (decoded,) = load_all(reader.file_name, {'image': [SimpleRGBImageDecoder(), ToTensor()]})
    for i in range(20):
        reference = reader.read_sample(i)['image'].astype(int)  # accurate IDCT; loader uses the fast one
        assert np.abs(decoded[i].numpy().astype(int) - reference).mean() < 1.5


def test_simple_decoder_rejects_mixed_sizes(fixtures_dir):
    with pytest.raises(ValueError, match="pipeline 'image', decoder .*one size.*RandomResizedCrop"):
        Loader(fixtures_dir / 'images_raw.beton', batch_size=4, pipelines={'image': [SimpleRGBImageDecoder()]})


def test_random_resized_crop_against_opencv_reference(tmp_beton, rng):
    images = [rng.integers(0, 256, (int(rng.integers(20, 80)), int(rng.integers(20, 80)), 3), np.uint8)
              for _ in range(30)]
    reader = write_and_read(tmp_beton(), {'image': RGBImageField()}, [(im,) for im in images])
    decoder = RandomResizedCropRGBImageDecoder((24, 16), scale=(0.2, 1.0))
    (out,) = load_all(reader.file_name, {'image': [decoder, ToTensor()]}, seed=5)
    # recompute the windows the decoder drew, then apply the reference crop + INTER_AREA resize
    from ffcv.imaging.crop import random_resized_crop_windows
    from ffcv.pipeline.seeding import batch_seeds, op_key
    indices = np.arange(30, dtype=np.int64)
    seeds = batch_seeds(np.uint64(5), np.uint64(0), indices, np.uint64(op_key('image', 0)))
    windows = random_resized_crop_windows(np.array([im.shape[0] for im in images]),
                                          np.array([im.shape[1] for im in images]), seeds, 0.2, 1.0,
                                          np.log(3 / 4), np.log(4 / 3), np.zeros((30, 4), np.int64))
    for i, (top, left, height, width) in enumerate(windows):
        assert 0.2 * 0.99 <= height * width / images[i].shape[0] / images[i].shape[1] <= 1.0
        reference = cv2.resize(images[i][top:top + height, left:left + width], (16, 24), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(out[i].numpy(), reference)


def test_dct_scaled_decoding_stays_close(tmp_beton, rng):
    """Crops >= 2x the output are decoded at reduced scale; on photo-like content the result stays close."""
    images = [photo_like(rng, 400, 480) for _ in range(6)]
    reader = write_and_read(tmp_beton(), {'image': RGBImageField(write_mode='jpg', jpeg_quality=95)},
                            [(im,) for im in images])
    full = CenterCropRGBImageDecoder((64, 64), 1.0, dct_scaling=False)
    (scaled_out,) = load_all(reader.file_name, {'image': [CenterCropRGBImageDecoder((64, 64), 1.0), ToTensor()]})
    (full_out,) = load_all(reader.file_name, {'image': [full, ToTensor()]})
    diff = np.abs(scaled_out.numpy().astype(int) - full_out.numpy().astype(int))
    assert 0 < diff.mean() < 2.0  # not identical: the reduced-scale path was taken


def test_output_size_can_change_between_epochs(fixtures_dir):
    decoder = RandomResizedCropRGBImageDecoder((32, 32))
    loader = Loader(fixtures_dir / 'images_jpg.beton', batch_size=8, pipelines={'image': [decoder, ToTensor()]})
    assert next(iter(loader))[0].shape == (8, 32, 32, 3)
    decoder.output_size = (48, 40)
    assert next(iter(loader))[0].shape == (8, 48, 40, 3)


@pytest.mark.parametrize('os_cache', [True, False])
def test_empty_blobs_decode_empty(tmp_beton, rng, os_cache):
    """A zero-size blob shares its offset with the next blob: the decoder must trust the stored size."""
    from ffcv.fields import BytesField
    blobs = [b'', rng.integers(0, 256, 40, dtype=np.uint8), b'', b'', rng.integers(0, 256, 7, dtype=np.uint8)]
    reader = write_and_read(tmp_beton(), {'blob': BytesField()}, [(b,) for b in blobs])
    (rows,) = load_all(reader.file_name, {'blob': [BytesDecoder(), ToTensor()]}, os_cache=os_cache)
    for i, blob in enumerate(blobs):
        expected = np.frombuffer(bytes(blob), np.uint8)
        np.testing.assert_array_equal(rows[i, :len(expected)].numpy(), expected)
        assert not rows[i, len(expected):].any()
