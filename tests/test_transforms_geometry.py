"""Flip, translate, cutout and random resized crop: kernels vs NumPy / OpenCV references on the same draws."""
import math

import cv2
import numpy as np
import pytest
import torch
from torchvision.transforms import RandomResizedCrop as RRC

from ffcv.imaging.crop import random_resized_crop_windows
from ffcv.pipeline.seeding import randint, uniform
from ffcv.pipeline.state import State
from ffcv.transforms import Cutout, RandomHorizontalFlip, RandomResizedCrop, RandomTranslate
from ffcv.transforms.cutout import draw_corners
from ffcv.transforms.flip import flip_in_place, flip_kernel
from ffcv.transforms.translate import draw_offsets

from op_helpers import apply_op, many_seeds

SHAPES = [(1, 8, 8, 3), (7, 31, 17, 3), (4, 5, 9, 1), (3, 32, 32, 4)]
FLIP_SHAPES = SHAPES + [(5, 70, 61, 3), (2, 64, 64, 1), (3, 65, 80, 5)]  # the last three: OpenCV / odd paths


def images_of(rng, shape, dtype):
    if np.dtype(dtype).kind == 'f':
        return rng.uniform(-1, 1, shape).astype(dtype)
    return rng.integers(0, 256, shape, dtype=np.uint8)


# --- RandomHorizontalFlip ---

@pytest.mark.parametrize('shape', FLIP_SHAPES)
@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_flip_matches_numpy(shape, dtype, rng):
    images = images_of(rng, shape, dtype)
    count = shape[0]
    # a seed under which the batch has flipped and unflipped images (where it has two or more)
    seed = next(k for k in range(100)
                if count < 2 or 0 < sum(uniform(s, 0) < 0.5 for s in many_seeds(count, k)) < count)
    out, seeds = apply_op(RandomHorizontalFlip(0.5), images.copy(), seed=seed)
    flips = np.array([uniform(s, 0) < 0.5 for s in seeds])
    np.testing.assert_array_equal(out, np.where(flips[:, None, None, None], images[:, :, ::-1], images))


@pytest.mark.parametrize('shape', [(6, 64, 64, 3), (4, 100, 75, 1)])
def test_flip_kernel_equals_opencv_path(shape, rng):
    """Large images take OpenCV's flip; the compiled kernel gives the same pixels on them."""
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    flips = np.arange(shape[0]) % 2 == 0
    np.testing.assert_array_equal(flip_in_place(images.copy(), flips), flip_kernel(images.copy(), flips))


def test_flip_kernel_flips_a_strided_batch_in_place(rng):
    """A batch that is a strided view (the RGB of every other image of an RGBA batch: its rows cannot be seen
    as one flat row without a copy) is flipped where it lies."""
    whole = rng.integers(0, 256, (8, 12, 10, 4), dtype=np.uint8)
    original = whole.copy()
    view = whole[::2, :, :, :3]
    flips = np.array([True, False, True, True])
    assert flip_kernel(view, flips) is view
    expected = original.copy()
    rgb = original[::2, :, :, :3]
    expected[::2, :, :, :3] = np.where(flips[:, None, None, None], rgb[:, :, ::-1], rgb)
    np.testing.assert_array_equal(whole, expected)


def test_flip_works_in_place_but_never_on_read_only_input(rng):
    images = rng.integers(0, 256, (4, 80, 80, 3), dtype=np.uint8)
    original = images.copy()
    images.flags.writeable = False  # as a batch viewed straight from a file mapping would be
    out, seeds = apply_op(RandomHorizontalFlip(1.0), images)
    np.testing.assert_array_equal(images, original)
    np.testing.assert_array_equal(out, original[:, :, ::-1])
    writable_batch = original.copy()
    assert apply_op(RandomHorizontalFlip(1.0), writable_batch)[0] is writable_batch


@pytest.mark.parametrize('prob', [0.0, 0.2, 0.5, 1.0])
def test_flip_rate(prob):
    images = np.arange(2 * 3, dtype=np.uint8).reshape(1, 1, 2, 3).repeat(20000, axis=0)
    out, _ = apply_op(RandomHorizontalFlip(prob), images.copy(), seed=3)
    rate = (out[:, 0, 0, 0] != images[:, 0, 0, 0]).mean()
    assert abs(rate - prob) < 0.015


# --- RandomTranslate ---

def translate_reference(images, seeds, padding, fill):
    height, width = images.shape[1:3]
    padded = np.empty((images.shape[0], height + 2 * padding, width + 2 * padding, images.shape[3]), images.dtype)
    padded[:] = np.asarray(fill, images.dtype)
    padded[:, padding:padding + height, padding:padding + width] = images
    out = np.empty_like(images)
    for i, seed in enumerate(seeds):
        y, x = randint(seed, 0, 0, 2 * padding + 1), randint(seed, 1, 0, 2 * padding + 1)
        out[i] = padded[i, y:y + height, x:x + width]
    return out


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('padding', [0, 2, 5, 40])
@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_translate_matches_padded_window(shape, padding, dtype, rng):
    images = images_of(rng, shape, dtype)
    fill = tuple(range(7, 7 + shape[3]))
    out, seeds = apply_op(RandomTranslate(padding, fill=fill), images.copy())
    np.testing.assert_array_equal(out, translate_reference(images, seeds, padding, fill))


def test_translate_offsets_uniform_and_independent():
    offsets = draw_offsets(many_seeds(50000), 2)
    assert offsets.min() == 0 and offsets.max() == 4
    joint = np.bincount(offsets[:, 0] * 5 + offsets[:, 1], minlength=25) / len(offsets)
    assert np.abs(joint - 1 / 25).max() < 0.006  # 25 cells of 4%: uniform and independent


def test_translate_fill_is_truncated_like_ffcv(rng):
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    out, _ = apply_op(RandomTranslate(3, fill=(125.307, 122.961, 113.8575)), images)
    border = out[:, 0, 0][(out[:, 0, 0] == (125, 122, 113)).all(axis=1)]
    assert len(border) > 10  # corners that show padding hold the truncated fill


# --- Cutout ---

@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('crop', [1, 4, 5])
@pytest.mark.parametrize('dtype', [np.uint8, np.float32])
def test_cutout_matches_numpy(shape, crop, dtype, rng):
    images = images_of(rng, shape, dtype)
    fill = tuple(range(200, 200 + shape[3]))
    out, seeds = apply_op(Cutout(crop, fill=fill), images.copy())
    expected = images.copy()
    for i, seed in enumerate(seeds):
        top, left = randint(seed, 0, 0, shape[1] - crop + 1), randint(seed, 1, 0, shape[2] - crop + 1)
        expected[i, top:top + crop, left:left + crop] = np.asarray(fill, dtype)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('size, crop', [((32, 32), 4), ((17, 9), 9), ((5, 7), 5)])
def test_cutout_square_always_inside_and_full_size(size, crop):
    images = np.zeros((3000, *size, 3), np.uint8)
    out, _ = apply_op(Cutout(crop, fill=(255, 255, 255)), images, seed=5)
    painted = out[..., 0] == 255
    assert (painted.sum(axis=(1, 2)) == crop * crop).all()
    rows, cols = painted.any(axis=2), painted.any(axis=1)
    assert (rows.sum(axis=1) == crop).all() and (cols.sum(axis=1) == crop).all()
    tops = rows.argmax(axis=1)
    assert tops.min() == 0 and tops.max() == size[0] - crop  # every position is reachable
    corners = draw_corners(many_seeds(40000), size[0], size[1], crop)
    counts = np.bincount(corners[:, 0], minlength=size[0] - crop + 1) / len(corners)
    assert np.abs(counts - 1 / (size[0] - crop + 1)).max() < 0.01


# --- RandomResizedCrop ---

def torchvision_window(seed, height, width, scale, ratio):
    """torchvision's RandomResizedCrop.get_params, with uniform(seed, k) in place of torch.rand."""
    area, log_ratio = height * width, (math.log(ratio[0]), math.log(ratio[1]))
    for attempt in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * uniform(seed, 4 * attempt))
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * uniform(seed, 4 * attempt + 1))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return (int(uniform(seed, 4 * attempt + 2) * (height - h + 1)),
                    int(uniform(seed, 4 * attempt + 3) * (width - w + 1)), h, w)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize('shape, size', [((5, 32, 32, 3), 32), ((4, 41, 27, 3), 19), ((3, 160, 120, 3), (64, 80))])
@pytest.mark.parametrize('scale, ratio', [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.9, 1.0), (3.0, 4.0))])
def test_rrc_matches_torchvision_windows_and_opencv(shape, size, scale, ratio, rng):
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    out, seeds = apply_op(RandomResizedCrop(scale, ratio, size), images)
    out_h, out_w = (size, size) if np.ndim(size) == 0 else size
    assert out.shape == (shape[0], out_h, out_w, 3)
    for i, seed in enumerate(seeds):
        top, left, h, w = torchvision_window(seed, shape[1], shape[2], scale, ratio)
        expected = cv2.resize(images[i, top:top + h, left:left + w], (out_w, out_h), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(out[i], expected)


def test_rrc_windows_follow_scale_and_ratio():
    seeds = many_seeds(5000)
    sides = np.full(5000, 400, np.int64)
    windows = random_resized_crop_windows(sides, sides, seeds, 0.08, 1.0, math.log(3 / 4), math.log(4 / 3),
                                          np.empty((5000, 4), np.int64))
    area = windows[:, 2] * windows[:, 3] / 400 ** 2
    aspect = windows[:, 3] / windows[:, 2]
    torch.manual_seed(0)
    image = torch.zeros(1, 400, 400)
    theirs = np.array([RRC.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])[2:] for _ in range(5000)])
    assert area.min() > 0.07 and area.max() <= 1
    assert abs(area.mean() - (theirs[:, 0] * theirs[:, 1]).mean() / 400 ** 2) < 0.015  # same law as torchvision
    assert aspect.min() > 0.74 and aspect.max() < 1.35
    assert (windows[:, :2] >= 0).all() and (windows[:, 0] + windows[:, 2] <= 400).all()


def test_rrc_integer_downscale_is_a_box_average(rng):
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out, _ = apply_op(RandomResizedCrop((1.0, 1.0), (1.0, 1.0), 16), images)
    boxes = images.reshape(2, 16, 2, 16, 2, 3).astype(np.float64).mean(axis=(2, 4))
    assert np.abs(out - boxes).max() <= 0.5 + 1e-9  # INTER_AREA on a 2x2 grid: the mean, rounded


# --- Input checks (raised by declare_state_and_memory, i.e. when the Loader is built) ---

@pytest.mark.parametrize('op, state, words', [
    (Cutout(40), State(True, torch.device('cpu'), (32, 32, 3), np.dtype('uint8')), 'crop_size 40'),
    (Cutout(4), State(False, torch.device('cpu'), (3, 32, 32), torch.uint8), 'before ToTensor()'),
    (RandomTranslate(2, fill=(1, 2)), State(True, torch.device('cpu'), (8, 8, 3), np.dtype('uint8')), '3 channels'),
    (RandomTranslate(2, fill=(300, 0, 0)), State(True, torch.device('cpu'), (8, 8, 3), np.dtype('uint8')), 'range'),
    (RandomResizedCrop((0.08, 1), (0.75, 1.33), 8), State(True, torch.device('cpu'), (8, 8, 3), np.dtype('float32')),
     'uint8'),
    (RandomHorizontalFlip(), State(True, torch.device('cpu'), (1,), np.dtype('int64')), '(H, W, C)'),
])
def test_bad_inputs_are_explained(op, state, words):
    with pytest.raises(ValueError, match=type(op).__name__) as info:
        op.declare_state_and_memory(state)
    assert words in str(info.value)


def test_bad_arguments_fail_at_construction():
    for make in (lambda: Cutout(0), lambda: RandomTranslate(-1), lambda: RandomResizedCrop((0.5, 0.1), (1, 1), 8),
                 lambda: RandomResizedCrop((0.1, 1), (1, 1), 0)):
        with pytest.raises(ValueError):
            make()
