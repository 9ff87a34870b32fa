"""Images of different sizes in one batch: PackedRGBImageDecoder + ToImageList, against simplejpeg / PIL."""
from __future__ import annotations

import io

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image

from conftest import photo_like
from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import CenterCropRGBImageDecoder, PackedRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.pipeline_spec import PipelineError
from ffcv.reader import Reader
from ffcv.transforms import ToTensor
from ffcv.transforms.ragged import ToImageList, unpack_images
from ffcv.writer import DatasetWriter

SIZES = [(17, 40), (64, 33), (5, 5), (48, 48), (31, 90), (72, 16), (9, 120)]


@pytest.fixture(scope='module')
def varied(tmp_path_factory):
    """(path, images, stored JPEG bytes or None per sample): raw and JPEG images of different sizes."""
    rng = np.random.default_rng(7)
    images = [photo_like(rng, h, w) for h, w in SIZES]
    path = str(tmp_path_factory.mktemp('varied') / 'varied.beton')
    fields = {'image': RGBImageField(write_mode='proportion', compress_probability=0.6), 'label': IntField()}
    samples = [(image, i) for i, image in enumerate(images)]
    DatasetWriter(path, fields, num_workers=1).from_indexed_dataset(samples, progress=False)
    reader = Reader(path)
    column = reader.column(0)
    stored = [None if int(entry['mode']) == 1 else reader.read(int(entry['data_ptr'])).tobytes()
              for entry in column]
    assert any(s is None for s in stored) and any(s is not None for s in stored)  # both kinds present
    return path, images, stored


def expected_pixels(image, jpeg_bytes):
    """Raw: the image itself; JPEG: simplejpeg's decode of the stored bytes (the decoder's settings)."""
    if jpeg_bytes is None:
        return image
    return simplejpeg.decode_jpeg(jpeg_bytes, colorspace='RGB', fastdct=True, fastupsample=False)


def load(path, pipeline, batch_size=3, workers=2, os_cache=True):
    loader = Loader(path, batch_size=batch_size, num_workers=workers, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines={'image': pipeline}, os_cache=os_cache)
    out = []
    for images, labels in loader:
        copied = [x.clone() for x in images] if isinstance(images, list) else tuple(x.clone() for x in images)
        out.append((copied, labels[:, 0].clone()))
    return out


@pytest.mark.parametrize('os_cache, jit', [(True, True), (False, False)])
def test_packed_output_is_every_image_back_to_back(varied, os_cache, jit):
    path, images, stored = varied
    previous = Compiler.is_enabled
    Compiler.set_enabled(jit)
    try:
        batches = load(path, [PackedRGBImageDecoder()], os_cache=os_cache)
    finally:
        Compiler.set_enabled(previous)
    for (packed, shapes), labels in batches:
        want = [expected_pixels(images[i], stored[i]) for i in labels.tolist()]
        np.testing.assert_array_equal(shapes.numpy(), [w.shape[:2] for w in want])
        np.testing.assert_array_equal(packed.numpy(), np.concatenate([w.reshape(-1) for w in want]))


@pytest.mark.parametrize('to_float', [False, True])
def test_image_list_matches_reference_decodes(varied, to_float):
    path, images, stored = varied
    seen = 0
    for batch, labels in load(path, [PackedRGBImageDecoder(), ToImageList(to_float=to_float)], workers=1):
        assert isinstance(batch, list) and len(batch) == len(labels)
        for image, i in zip(batch, labels.tolist()):
            want = expected_pixels(images[i], stored[i]).transpose(2, 0, 1)  # (H,W,3)->(3,H,W)
            if to_float:
                assert image.dtype == torch.float32
                np.testing.assert_array_equal(image.numpy(), want.astype(np.float32) / np.float32(255))
            else:
                assert image.dtype == torch.uint8
                np.testing.assert_array_equal(image.numpy(), want)
            if stored[i] is not None:  # an independent decoder (libjpeg's slow IDCT): close, not exact
                pil = np.asarray(Image.open(io.BytesIO(stored[i])).convert('RGB')).transpose(2, 0, 1)
                got = image.numpy() * (255 if to_float else 1)
                assert np.abs(got.astype(np.float32) - pil).mean() < 2.0
            seen += 1
    assert seen == len(images)


def test_unpack_images_gives_views_and_checks_the_shapes():
    packed = torch.arange(2 * 3 * 3 + 1 * 2 * 3, dtype=torch.uint8)
    shapes = torch.tensor([[2, 3], [1, 2]])
    first, second = unpack_images(packed, shapes)
    assert torch.equal(first, packed[:18].view(2, 3, 3).permute(2, 0, 1))
    assert torch.equal(second, packed[18:].view(1, 2, 3).permute(2, 0, 1))
    with pytest.raises(ValueError, match='describe 12 bytes of images, the packed batch holds 24'):
        unpack_images(packed, torch.tensor([[2, 2]]))


def test_misplaced_steps_fail_at_loader(varied):
    path, _, _ = varied
    with pytest.raises(PipelineError, match='ToTensor'):
        Loader(path, batch_size=2, pipelines={'image': [PackedRGBImageDecoder(), ToTensor()]})
    with pytest.raises(PipelineError, match='PackedRGBImageDecoder'):
        Loader(path, batch_size=2, pipelines={'image': [CenterCropRGBImageDecoder((8, 8), 1.0), ToTensor(),
                                                        ToImageList()]})


def test_corrupt_jpeg_names_the_sample(tmp_path):
    rng = np.random.default_rng(3)
    path = str(tmp_path / 'bad.beton')
    images = [photo_like(rng, 20 + 3 * i, 30) for i in range(4)]
    DatasetWriter(path, {'image': RGBImageField(write_mode='jpg')}, num_workers=1).from_indexed_dataset(
        [(im,) for im in images], progress=False)
    reader = Reader(path)
    ptr = int(reader.column(0)[2]['data_ptr'])
    with open(path, 'r+b') as f:  # overwrite the middle of sample 2's JPEG with zeros
        f.seek(ptr + 20)
        f.write(bytes(200))
    loader = Loader(path, batch_size=4, num_workers=1, pipelines={'image': [PackedRGBImageDecoder()]})
    with pytest.raises(Exception) as info:
        list(loader)
    notes = ' '.join(getattr(info.value, '__notes__', []))
    assert 'sample 2' in str(info.value) + notes and "pipeline 'image'" in notes
