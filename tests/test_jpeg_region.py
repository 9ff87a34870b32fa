"""Window decoding of JPEGs (ffcv.imaging.jpeg_window) against simplejpeg's full decode, and its error handling."""
import gc
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import skimage.data

from ffcv.imaging import jpeg_window
from ffcv.imaging import jpeg
from ffcv.fields.decoders import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.fields import RGBImageField
from ffcv.loader import Loader, OrderOption
from ffcv.writer import DatasetWriter


@pytest.fixture(scope='module')
def photos():
    """Real photographs as JPEG (4:2:0, quality 90), with odd sizes."""
    images = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()[:397, :517],
              skimage.data.rocket()[5:, 3:]]
    return [(np.frombuffer(jpeg.encode_jpeg(np.ascontiguousarray(im), 90), np.uint8), im.shape[:2])
            for im in images]


def test_available_here():
    assert jpeg_window.available(), jpeg_window._unavailable_reason


def test_importing_the_compiled_bodies_first_is_an_error_not_an_abort():
    """jpeg_window_calls links against symbols jpeg_window registers; imported before them, LLVM would abort
    the process. It raises ImportError instead, and the module imports normally once they are registered."""
    code = 'import ffcv.imaging.jpeg_window_calls'
    early = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert early.returncode == 1 and 'ImportError' in early.stderr and 'available() first' in early.stderr, early
    late = subprocess.run([sys.executable, '-c', 'from ffcv.imaging import jpeg_window\n'
                           'assert jpeg_window.available()\n' + code], capture_output=True, text=True, timeout=300)
    assert late.returncode == 0, late.stderr[-2000:]


@pytest.mark.parametrize('scale', [8, 7, 5, 4, 3, 2, 1])
def test_windows_equal_the_full_decode(photos, scale, rng):
    out = np.empty(600 * 600 * 3, np.uint8)
    for data, (height, width) in photos:
        full = jpeg.decode_jpeg(data, min_height=jpeg_window.scaled_side(height, scale),
                                 min_width=jpeg_window.scaled_side(width, scale))
        h, w = full.shape[:2]
        windows = [(0, 0, h, w), (0, 0, 1, 1), (h - 1, w - 1, 1, 1), (0, w - 7, h, 7), (h // 3, 0, h // 2, w)]
        for _ in range(25):
            crop_h, crop_w = rng.integers(1, h + 1), rng.integers(1, w + 1)
            windows.append((rng.integers(0, h - crop_h + 1), rng.integers(0, w - crop_w + 1), crop_h, crop_w))
        for top, left, crop_h, crop_w in windows:
            got = jpeg_window.decode_window(data, height, width, (top, left, crop_h, crop_w), scale, out)
            np.testing.assert_array_equal(got, full[top:top + crop_h, left:left + crop_w],
                                          err_msg=f'window {(top, left, crop_h, crop_w)} at {scale}/8')


def test_choose_scale_is_simplejpegs_choice(photos, rng):
    data, (height, width) = photos[0]
    for _ in range(40):
        min_h, min_w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        scale = jpeg_window.choose_scale(height, width, min_h, min_w)
        decoded = jpeg.decode_jpeg(data, min_height=min_h, min_width=min_w)
        assert decoded.shape[:2] == (jpeg_window.scaled_side(height, scale), jpeg_window.scaled_side(width, scale))


def test_corrupt_data_raises_and_the_decoder_stays_usable(photos, rng):
    data, (height, width) = photos[1]
    out = np.empty(height * width * 3 + 4096, np.uint8)
    expected = jpeg_window.decode_window(data, height, width, (10, 20, 100, 150), 8, out).copy()
    cases = [data[:len(data) // 3], data[:40], np.zeros(500, np.uint8), rng.integers(0, 256, 3000, dtype=np.uint8)]
    for _ in range(30):  # random byte errors after the headers
        broken = data.copy()
        spots = rng.integers(600, len(data), 8)
        broken[spots] = rng.integers(0, 256, 8, dtype=np.uint8)
        cases.append(broken)
    raised = 0
    for case in cases:
        try:
            jpeg_window.decode_window(np.ascontiguousarray(case), height, width, (10, 20, 100, 150), 8, out)
        except jpeg.JPEGDecodeError:
            raised += 1
    assert raised >= 4  # the truncated and garbage inputs at least; byte errors may still decode
    np.testing.assert_array_equal(jpeg_window.decode_window(data, height, width, (10, 20, 100, 150), 8, out), expected)


def test_size_disagreeing_with_metadata_and_bad_windows_raise(photos):
    data, (height, width) = photos[1]
    out = np.empty(height * width * 3, np.uint8)
    with pytest.raises(jpeg.JPEGDecodeError, match=f'is {width}x{height} but the metadata says {width}x{height + 1}'):
        jpeg_window.decode_window(data, height + 1, width, (0, 0, 10, 10), 8, out)
    with pytest.raises(jpeg.JPEGDecodeError, match='outside'):
        jpeg_window.decode_window(data, height, width, (height - 5, 0, 10, 10), 8, out)
    with pytest.raises(jpeg.JPEGDecodeError, match='too small'):
        jpeg_window.decode_window(data, height, width, (0, 0, height, width), 8, out[:1000])


def test_threads_decode_concurrently_with_their_own_state(photos):
    data, (height, width) = photos[0]
    reference = jpeg.decode_jpeg(data)[50:300, 70:400]
    results, errors = [], []

    def work():
        out = np.empty(height * width * 3, np.uint8)
        try:
            for _ in range(20):
                results.append(np.array_equal(jpeg_window.decode_window(data, height, width, (50, 70, 250, 330), 8,
                                                                   out), reference))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 80 and all(results)


def test_thread_state_is_destroyed_with_its_owner():
    state = jpeg_window._ThreadState(jpeg_window._library)
    finalizer = state.finalizer
    assert finalizer.alive
    del state
    gc.collect()
    assert not finalizer.alive


def test_can_be_disabled_by_environment():
    code = 'from ffcv.imaging import jpeg_window as r; print(r.available(), r._unavailable_reason)'
    env = dict(os.environ, FFCV_REGION_DECODE='0')
    done = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split()[0] == 'False' and 'FFCV_REGION_DECODE=0' in done.stdout


@pytest.mark.parametrize('make', [
    lambda **kw: RandomResizedCropRGBImageDecoder((64, 64), **kw),
    lambda **kw: RandomResizedCropRGBImageDecoder((24, 24), scale=(0.5, 1.0), **kw),  # DCT-scaled windows
    lambda **kw: CenterCropRGBImageDecoder((96, 96), 224 / 256, **kw),
])
def test_decoders_give_the_same_batches_with_and_without_window_decoding(tmp_path, make, monkeypatch):
    photos_list = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    samples = [(np.ascontiguousarray(photos_list[i % 4][i:, 2 * i:]),) for i in range(12)]
    path = tmp_path / 'photos.beton'
    DatasetWriter(str(path), {'image': RGBImageField(write_mode='jpg', max_resolution=300)},
                  num_workers=1).from_indexed_dataset(samples)
    calls = []
    real = jpeg_window.decode_window
    monkeypatch.setattr(jpeg_window, 'decode_window', lambda *args: calls.append(1) or real(*args))
    batches = []
    for window_decoding in (True, False):
        loader = Loader(str(path), batch_size=5, num_workers=2, order=OrderOption.RANDOM, seed=3,
                        pipelines={'image': [make(window_decoding=window_decoding)]})
        batches.append([np.array(b[0]) for b in loader])
    assert len(calls) >= 6  # crops smaller than the image went through window decoding
    for windowed, whole in zip(*batches):
        np.testing.assert_array_equal(windowed, whole)
