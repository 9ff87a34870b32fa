"""RGBImageField: raw/jpg/smart/proportion modes, resizing rule, odd and extreme sizes, input checks."""
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.rgb_image import resizer
from ffcv.writer import DatasetWriteError

from conftest import photo_like
from helpers import write_and_read

SIZES = [(1, 1), (1, 7), (31, 17), (33, 64), (480, 353)]


def test_raw_round_trip_exact(tmp_beton, rng):
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    reader = write_and_read(tmp_beton(), {'image': RGBImageField(), 'label': IntField()},
                            [(im, i) for i, im in enumerate(images)])
    column = reader.metadata['f0']
    assert list(column['mode']) == [1] * len(images)
    assert [(int(h), int(w)) for h, w in zip(column['height'], column['width'])] == SIZES
    for i, image in enumerate(images):
        np.testing.assert_array_equal(reader.read_sample(i)['image'], image)


def test_jpg_round_trip_against_pil(tmp_beton, rng):
    images = [photo_like(rng, h, w) for h, w in [(8, 8), (31, 17), (240, 320), (257, 129)]]
    reader = write_and_read(tmp_beton(), {'image': RGBImageField(write_mode='jpg', jpeg_quality=90)},
                            [(im,) for im in images])
    assert list(reader.metadata['f0']['mode']) == [0] * len(images)
    for i, image in enumerate(images):
        got = reader.read_sample(i)['image'].astype(int)
        stored = reader.read(int(reader.metadata['f0'][i]['data_ptr']))
        pil_decoded = np.asarray(Image.open(io.BytesIO(stored.tobytes())).convert('RGB')).astype(int)
        assert got.shape == image.shape
        assert np.abs(got - pil_decoded).mean() < 1.0   # same bytes, another decoder (fast IDCT differs)
        if min(image.shape[:2]) >= 64:  # tiny images are dominated by 4:2:0 chroma subsampling
            assert np.abs(got - image).mean() < 4       # quality-90 JPEG stays close to the source


@pytest.mark.parametrize('height, width, max_res', [(500, 375, 256), (375, 500, 256), (333, 1000, 128),
                                                    (100, 90, 256), (4000, 3000, 512), (257, 3, 256)])
def test_max_resolution_rule(height, width, max_res):
    image = np.zeros((height, width, 3), np.uint8)
    out = resizer(image, max_res)
    ratio = max_res / max(height, width)
    if ratio >= 1:
        assert out.shape == image.shape
    else:
        assert out.shape[:2] == (max(int(height * ratio), 1), max(int(width * ratio), 1))
        assert max(out.shape[:2]) <= max_res


def test_resize_matches_opencv_inter_area(rng):
    image = photo_like(rng, 300, 451)
    out = resizer(image, 128)
    np.testing.assert_array_equal(out, cv2.resize(image, (128, 85), interpolation=cv2.INTER_AREA))


def test_4000px_image_jpg_and_raw(tmp_beton, rng):
    image = photo_like(rng, 3000, 4000)
    reader = write_and_read(tmp_beton(), {'image': RGBImageField(write_mode='jpg', jpeg_quality=95)}, [(image,)])
    assert np.abs(reader.read_sample(0)['image'].astype(int) - image).mean() < 3
    reader = write_and_read(tmp_beton(), {'image': RGBImageField()}, [(image,)], page_size=1 << 26)
    np.testing.assert_array_equal(reader.read_sample(0)['image'], image)


def test_smart_mode_threshold_on_bytes(tmp_beton, rng):
    images = [photo_like(rng, 20, 20), photo_like(rng, 64, 64), photo_like(rng, 64, 65)]
    reader = write_and_read(tmp_beton(), {'image': RGBImageField(write_mode='smart', smart_threshold=64 * 64 * 3)},
                            [(im,) for im in images])
    assert list(reader.metadata['f0']['mode']) == [1, 1, 0]
    reader = write_and_read(tmp_beton(), {'image': RGBImageField(write_mode='smart')}, [(im,) for im in images])
    assert list(reader.metadata['f0']['mode']) == [1, 1, 1]  # no threshold: raw


def test_proportion_mode_is_seeded_by_row(tmp_beton, rng):
    images = [(photo_like(rng, 16, 16),) for _ in range(400)]
    field = {'image': RGBImageField(write_mode='proportion', compress_probability=0.25)}
    first = write_and_read(tmp_beton(), field, images).metadata['f0']['mode']
    again = write_and_read(tmp_beton(), field, images, num_workers=2, chunksize=7).metadata['f0']['mode']
    np.testing.assert_array_equal(first, again)
    assert 0.18 < (first == 0).mean() < 0.32


def test_pil_and_grayscale_inputs(tmp_beton, rng):
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    samples = [(Image.fromarray(rgb),), (Image.fromarray(gray),), (gray,), (gray[:, :, None],),
               (Image.fromarray(np.dstack([rgb, gray])),)]  # RGBA PIL image: PIL's convert('RGB')
    reader = write_and_read(tmp_beton(), {'image': RGBImageField()}, samples)
    np.testing.assert_array_equal(reader.read_sample(0)['image'], rgb)
    for i in (1, 2, 3):
        np.testing.assert_array_equal(reader.read_sample(i)['image'], np.dstack([gray] * 3))
    np.testing.assert_array_equal(reader.read_sample(4)['image'], rgb)


@pytest.mark.parametrize('image, message', [
    (np.zeros((4, 4, 3), np.float32), 'uint8'), (np.zeros((4, 4, 4), np.uint8), r'\(H, W, 3\)'),
    (np.zeros((0, 4, 3), np.uint8), 'empty'), ('not an image', 'numpy array'),
])
def test_bad_images_rejected(tmp_beton, image, message):
    with pytest.raises(DatasetWriteError, match=f"sample 1 .*field 'image'.*{message}"):
        write_and_read(tmp_beton(), {'image': RGBImageField()}, [(np.zeros((4, 4, 3), np.uint8),), (image,)])


@pytest.mark.parametrize('kwargs', [{'write_mode': 'png'}, {'max_resolution': (256, 256)}, {'jpeg_quality': 101},
                                    {'compress_probability': 2}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RGBImageField(**kwargs)
