"""`area_resize` (the writer's downscale) gives exactly OpenCV's INTER_AREA pixels."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ffcv.imaging import area_resize as area_resize_module
from ffcv.imaging.area_resize import area_resize
from ffcv.fields.rgb_image import resizer


@pytest.mark.parametrize('seed', range(4))
def test_matches_opencv_inter_area_on_random_sizes(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(2, 700, 2))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if seed % 2:  # smooth content: sums land near .5 more often than on noise
            image = cv2.GaussianBlur(image, (0, 0), 3)
        new_width, new_height = (int(rng.integers(1, side + 1)) for side in (width, height))
        expected = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(area_resize(image, new_width, new_height), expected)


@pytest.mark.parametrize('sides, out, blocked', [((161, 320), 160, True), ((330, 500), 256, False)])
def test_both_kernels_match_opencv(sides, out, blocked, rng, monkeypatch):
    """Sources up to BLOCKED_MAX_PIXELS (the loader's crops) take the blocked kernel, larger ones (the writer's
    photos) the whole-plane passes; both give OpenCV's pixels."""
    calls = []
    kernel = area_resize_module._resize_blocked
    monkeypatch.setattr(area_resize_module, '_resize_blocked', lambda *args: calls.append(1) or kernel(*args))
    for _ in range(30):
        height, width = (int(v) for v in rng.integers(*sides, 2, endpoint=True))
        image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 2)
        expected = cv2.resize(image, (out, out - 7), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(area_resize(image, out, out - 7), expected)
        assert len(calls) == int(blocked) * (_ + 1)
        assert (height * width <= area_resize_module.BLOCKED_MAX_PIXELS) == blocked


@pytest.mark.parametrize('shape, size', [((512, 512, 3), (256, 256)),   # integer factor: OpenCV's fast path
                                         ((40, 50, 3), (80, 60)),       # upscaling
                                         ((300, 200), (150, 100)),      # greyscale
                                         ((1, 900, 3), (256, 1))])      # one row
def test_other_cases_are_opencv_too(shape, size, rng):
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    expected = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(area_resize(image, *size), expected)


def test_writer_rule_uses_it(rng):
    image = rng.integers(0, 256, (437, 425, 3), dtype=np.uint8)
    out = resizer(image, 256)
    assert out.shape == (256, 248, 3)
    np.testing.assert_array_equal(out, cv2.resize(image, (248, 256), interpolation=cv2.INTER_AREA))


def test_repeated_calls_do_not_share_results(rng):
    first_image, second_image = (rng.integers(0, 256, (300, 310, 3), dtype=np.uint8) for _ in range(2))
    first = area_resize(first_image, 200, 190)
    kept = first.copy()
    area_resize(second_image, 200, 190)  # reuses the scratch buffers
    np.testing.assert_array_equal(first, kept)


def test_window_views_of_a_larger_image(rng):
    """The loader's crops pass windows (views whose rows are longer than the window) straight in."""
    image = rng.integers(0, 256, (480, 520, 3), dtype=np.uint8)
    for top, left, height, width, size in [(0, 0, 480, 300, (97, 211)), (17, 33, 301, 299, (160, 160)),
                                           (100, 400, 200, 120, (64, 101))]:
        window = image[top:top + height, left:left + width]
        assert not window.flags.c_contiguous
        expected = cv2.resize(np.ascontiguousarray(window), size, interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(area_resize(window, *size), expected)
