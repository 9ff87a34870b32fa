"""FFCV's helper functions (`ffcv.libffcv`, `ffcv.transforms.utils.fast_crop`) against NumPy / simplejpeg /
OpenCV references, called from numba code (as FFCV users do after ``Compiler.compile``) and from Python."""
from __future__ import annotations

import ctypes
import math
from functools import lru_cache

import cv2
import numba
import numpy as np
import pytest
import simplejpeg

from ffcv import libffcv
from ffcv.pipeline.compiler import Compiler
from ffcv.transforms.utils import fast_crop

HEIGHT, WIDTH = 45, 61  # not multiples of the 16-pixel JPEG blocks


@numba.njit(nogil=True)
def _call_compiled(function, *args):
    return function(*args)


@lru_cache(maxsize=None)
def compiled(function):
    """`Compiler.compile(function)` with compilation enabled (whatever FFCV_DISABLE_JIT says)."""
    previous = Compiler.is_enabled
    Compiler.set_enabled(True)
    try:
        return Compiler.compile(function)
    finally:
        Compiler.set_enabled(previous)


def call(mode, function, *args):
    """`function(*args)` from numba code (after `Compiler.compile`, as FFCV users call it) or from Python."""
    if mode == 'compiled':
        return _call_compiled(compiled(function), *args)
    return function(*args)


MODES = ['compiled', 'python']


@pytest.fixture(scope='module')
def jpeg():
    """(JPEG bytes as a uint8 array, the reference decode: libjpeg-turbo's fast integer IDCT as FFCV's)."""
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (7, 7), 2)
    data = simplejpeg.encode_jpeg(image, quality=92, colorspace='RGB', colorsubsampling='420')
    return np.frombuffer(data, np.uint8).copy(), simplejpeg.decode_jpeg(data, fastdct=True)


# --- memcpy ---

@pytest.mark.parametrize('mode', MODES)
def test_memcpy_copies_the_bytes_of_source(mode):
    source = np.arange(15, dtype=np.int32).reshape(3, 5)
    dest = np.full((2, 80), 7, np.uint8)
    call(mode, libffcv.memcpy, source, dest[1])
    np.testing.assert_array_equal(dest[1, :60], source.view(np.uint8).ravel())
    assert (dest[1, 60:] == 7).all() and (dest[0] == 7).all()


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('dest', [np.zeros(10, np.uint8), np.zeros(80, np.uint8)[::2]], ids=['small', 'strided'])
def test_memcpy_rejects_what_ffcv_would_overflow(mode, dest):
    with pytest.raises(ValueError, match='memcpy'):
        call(mode, libffcv.memcpy, np.arange(16, dtype=np.uint8), dest)


def test_ctypes_functions_take_ffcvs_arguments():
    source, dest = np.arange(8, dtype=np.uint8), np.zeros(8, np.uint8)
    libffcv.ctypes_memcopy(source.ctypes.data, dest.ctypes.data, 5)  # source first, as FFCV's my_memcpy
    np.testing.assert_array_equal(dest, [0, 1, 2, 3, 4, 0, 0, 0])
    assert libffcv.lib.my_memcpy is libffcv.ctypes_memcopy and libffcv.lib.resize is libffcv.ctypes_resize
    assert libffcv.lib.imdecode is libffcv.ctypes_imdecode
    assert len(libffcv.ctypes_imdecode.argtypes) == 13 and libffcv.ctypes_resize.argtypes == 11 * [ctypes.c_int64]


# --- imdecode ---

@pytest.mark.parametrize('mode', MODES)
def test_imdecode_whole_image_matches_simplejpeg(mode, jpeg):
    data, reference = jpeg
    dst = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    assert call(mode, libffcv.imdecode, data, dst, HEIGHT, WIDTH, HEIGHT, WIDTH, 0, 0, 1, 1, False, False) == 0
    np.testing.assert_array_equal(dst, reference)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('crop, flip, x, y, width, height', [
    (True, False, 16, 8, 24, 16),     # a window
    (True, False, 16, 16, 0, 0),      # 0: up to the right / bottom edge
    (False, True, 0, 0, WIDTH, HEIGHT),  # flip alone: the whole image mirrored
    (True, True, 8, 16, 32, 24),      # window of the flipped image
])
def test_imdecode_window_and_flip_match_numpy(mode, jpeg, crop, flip, x, y, width, height):
    data, reference = jpeg
    expected = (reference[:, ::-1] if flip else reference)[y:y + (height or HEIGHT - y), x:x + (width or WIDTH - x)]
    dst = np.zeros(expected.shape, np.uint8)
    assert call(mode, libffcv.imdecode, data, dst, HEIGHT, WIDTH, height, width, x, y, 1, 1, crop, flip) == 0
    np.testing.assert_array_equal(dst, expected)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('num, denom', [(1, 2), (3, 8), (5, 8)])
def test_imdecode_scales_like_libjpeg_turbo(mode, jpeg, num, denom):
    data, _ = jpeg
    height, width = math.ceil(HEIGHT * num / denom), math.ceil(WIDTH * num / denom)
    expected = simplejpeg.decode_jpeg(data.tobytes(), fastdct=True, min_height=height, min_width=width)
    assert expected.shape == (height, width, 3)
    dst = np.zeros((height, width, 3), np.uint8)
    assert call(mode, libffcv.imdecode, data, dst, HEIGHT, WIDTH, HEIGHT, WIDTH, 0, 0, num, denom, False, False) == 0
    np.testing.assert_array_equal(dst, expected)


@pytest.mark.parametrize('mode', MODES)
def test_imdecode_defaults_decode_the_whole_image(mode, jpeg):
    data, reference = jpeg
    dst = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    assert call(mode, libffcv.imdecode, data, dst, HEIGHT, WIDTH) == 0
    np.testing.assert_array_equal(dst, reference)


@pytest.mark.parametrize('mode', MODES)
def test_imdecode_failures_return_minus_one_and_log(mode, jpeg, caplog):
    data, _ = jpeg
    dst = np.full((HEIGHT, WIDTH, 3), 9, np.uint8)
    small = np.full((HEIGHT - 1, WIDTH, 3), 9, np.uint8)
    assert call(mode, libffcv.imdecode, data, small, HEIGHT, WIDTH, HEIGHT, WIDTH, 0, 0, 1, 1, False, False) == -1
    assert call(mode, libffcv.imdecode, data[:40], dst, HEIGHT, WIDTH, HEIGHT, WIDTH, 0, 0, 1, 1, False, False) == -1
    assert call(mode, libffcv.imdecode, data, dst, HEIGHT, WIDTH, 10, 10, WIDTH - 5, 0, 1, 1, True, False) == -1
    assert (small == 9).all()
    assert [r.message.split(':')[0] for r in caplog.records] == ['imdecode failed'] * 3


# --- resize_crop ---

@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('function', [libffcv.resize_crop, fast_crop.resize_crop.py_func], ids=['libffcv', 'fast_crop'])
@pytest.mark.parametrize('window, size', [((3, 40, 5, 58), (16, 20)), ((0, 45, 0, 61), (45, 61)),
                                          ((10, 20, 10, 30), (25, 31))])
def test_resize_crop_matches_opencv_inter_area(mode, function, window, size, jpeg):
    source = np.ascontiguousarray(jpeg[1])
    start_row, end_row, start_col, end_col = window
    destination = np.zeros((*size, 3), np.uint8)
    call(mode, function, source, start_row, end_row, start_col, end_col, destination)
    expected = cv2.resize(source[start_row:end_row, start_col:end_col], size[::-1], interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(destination, expected)


@pytest.mark.parametrize('mode', MODES)
def test_resize_crop_rejects_windows_outside_the_image(mode):
    source, destination = np.zeros((10, 10, 3), np.uint8), np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match='window'):
        call(mode, libffcv.resize_crop, source, 2, 11, 0, 5, destination)


# --- read ---

@pytest.mark.parametrize('mode', MODES)
def test_read_reads_at_the_offset(mode, tmp_path):
    content = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8)
    (tmp_path / 'data.bin').write_bytes(content.tobytes())
    with open(tmp_path / 'data.bin', 'rb') as handle:
        destination = np.zeros(300, np.uint8)
        assert call(mode, libffcv.read, handle.fileno(), destination, np.uint64(123)) == 300
        np.testing.assert_array_equal(destination, content[123:423])
        assert call(mode, libffcv.read, handle.fileno(), destination, 900) == 100  # short read at the end
        np.testing.assert_array_equal(destination[:100], content[900:])


# --- fast_crop ---

@numba.njit
def _seed_numba(seed):
    np.random.seed(seed)


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('height, width', [(100, 200), (300, 300), (64, 50)])
def test_get_random_crop_windows_lie_inside_with_area_and_ratio_in_range(mode, height, width):
    np.random.seed(1)
    _seed_numba(1)
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    function = fast_crop.get_random_crop if mode == 'compiled' else fast_crop.get_random_crop.py_func
    windows = np.array([function(height, width, scale, ratio) for _ in range(2000)])
    top, left, crop_h, crop_w = windows.T
    assert (top >= 0).all() and (left >= 0).all() and (crop_h > 0).all() and (crop_w > 0).all()
    assert (top + crop_h <= height).all() and (left + crop_w <= width).all()
    tolerance = 1.5 / np.minimum(crop_h, crop_w)  # rounding each side to whole pixels
    area = crop_h * crop_w / (height * width)
    assert (area >= scale[0] * (1 - 2 * tolerance)).all() and (area <= scale[1] * (1 + 2 * tolerance)).all()
    aspect = crop_w / crop_h
    assert (aspect >= ratio[0] * (1 - tolerance)).all() and (aspect <= ratio[1] * (1 + tolerance)).all()
    assert len(set(map(tuple, windows))) > 1000  # really random


@pytest.mark.parametrize('mode', MODES)
def test_get_random_crop_falls_back_to_a_centred_window(mode):
    function = fast_crop.get_random_crop if mode == 'compiled' else fast_crop.get_random_crop.py_func
    # No window of 99% of a 10 x 1000 image has an aspect ratio within [3/4, 4/3]: centred, ratio 4/3.
    assert function(10, 1000, (0.99, 1.0), (3 / 4, 4 / 3)) == (0, (1000 - 13) // 2, 10, 13)
    assert function(1000, 10, (0.99, 1.0), np.array([3 / 4, 4 / 3])) == ((1000 - 13) // 2, 0, 13, 10)


@pytest.mark.parametrize('height, width, ratio, expected', [
    (256, 320, 224 / 256, (16, 48, 224, 224)),
    (300, 200, 0.5, (100, 50, 100, 100)),
    (17, 17, 1.0, (0, 0, 17, 17)),
])
def test_get_center_crop_is_ffcvs_formula(height, width, ratio, expected):
    assert fast_crop.get_center_crop(height, width, ratio) == expected
    assert fast_crop.get_center_crop.py_func(height, width, ratio) == expected
    side = int(ratio * min(height, width))
    assert expected == ((height - side) // 2, (width - side) // 2, side, side)


def test_importing_ffcv_does_not_load_the_ffcv_helper_modules_until_asked():
    """`import ffcv` (and its fields, transforms, loader) leaves ffcv.libffcv unloaded (~0.2 s of ctypes and
    OpenCV set-up per process); the FFCV names that re-export it still resolve, to the same objects."""
    import subprocess
    import sys
    code = ('import sys, ffcv, ffcv.fields, ffcv.transforms, ffcv.loader, ffcv.fields.decoders\n'
            'loaded = sorted(m for m in sys.modules if m.endswith(("libffcv", "fast_crop", "page_reader")))\n'
            'assert not loaded, loaded\n'
            'from ffcv.fields.rgb_image import memcpy, imdecode, resize_crop, get_center_crop, get_random_crop\n'
            'from ffcv.fields.bytes import memcpy as m2\n'
            'from ffcv.fields.ndarray import memcpy as m3\n'
            'from ffcv.transforms.random_resized_crop import fast_crop\n'
            'from ffcv.memory_managers.process_cache.schedule import PageReader\n'
            'from ffcv.fields.image_decoders import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder\n'
            'import ffcv.libffcv as lib, ffcv.fields._ffcv_crops as crops\n'
            'assert memcpy is m2 is m3 is lib.memcpy and imdecode is lib.imdecode\n'
            'center = CenterCropRGBImageDecoder((8, 8), 1.0).get_crop_generator\n'
            'assert center is get_center_crop is crops.get_center_crop\n'
            'assert RandomResizedCropRGBImageDecoder((8, 8)).get_crop_generator is get_random_crop\n'
            'assert fast_crop.__name__ == "ffcv.transforms.utils.fast_crop" and PageReader.__name__ == "PageReader"\n')
    subprocess.run([sys.executable, '-c', code], check=True)
