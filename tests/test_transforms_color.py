"""NormalizeImage, brightness / contrast / saturation, Poison, ReplaceLabel vs NumPy / torchvision references."""
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from ffcv.pipeline.seeding import uniform
from ffcv.pipeline.state import State
from ffcv.transforms import (NormalizeImage, Poison, RandomBrightness, RandomContrast, RandomSaturation,
                             ReplaceLabel, ToTorchImage)
from ffcv.transforms.normalize import lookup_table, normalize_torch

from op_helpers import apply_op

MEAN, STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
SHAPES = [(1, 8, 8, 3), (5, 31, 17, 3), (2, 160, 160, 3)]


def normalized(images, mean, std, dtype):
    """Reference: (v - mean) / std in float64, cast to `dtype`."""
    return ((images.astype(np.float64) - mean) / std).astype(dtype)


# --- NormalizeImage ---

@pytest.mark.parametrize('shape', SHAPES + [(3, 7, 5, 1)])
@pytest.mark.parametrize('dtype', [np.float16, np.float32])
def test_normalize_numpy_path(shape, dtype, rng):
    mean, std = (MEAN, STD) if shape[3] == 3 else (MEAN[:1], STD[:1])
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    out, _ = apply_op(NormalizeImage(mean, std, dtype), images)
    expected = normalized(images, mean, std, dtype)
    if dtype == np.float16:  # FFCV's convention: float16 bits in an int16 array
        assert out.dtype == np.int16
        out = out.view(np.float16)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('dtype', [np.float16, np.float32])
@pytest.mark.parametrize('channels_last', [True, False])
def test_normalize_torch_path_after_to_torch_image(shape, dtype, channels_last, rng):
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    chw, _ = apply_op(ToTorchImage(channels_last=channels_last), torch.from_numpy(images))
    out, _ = apply_op(NormalizeImage(MEAN, STD, dtype), chw)
    assert out.dtype == torch.from_numpy(np.zeros(0, dtype)).dtype and out.shape == chw.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(out.permute(0, 2, 3, 1).numpy(), normalized(images, MEAN, STD, dtype))


@pytest.mark.parametrize('dtype', [np.float16, np.float32])
@pytest.mark.parametrize('chunk', [1, 2000, 1 << 23])
def test_normalize_torch_ops_kernel(dtype, chunk, rng):
    """The GPU path's torch code, run on the CPU (also in chunks of one and of a few images)."""
    images = rng.integers(0, 256, (5, 19, 23, 3), dtype=np.uint8)
    chw = torch.from_numpy(images).permute(0, 3, 1, 2)
    torch_dtype = torch.from_numpy(np.zeros(0, dtype)).dtype
    table = torch.from_numpy(lookup_table(MEAN, STD, dtype)).view(torch_dtype)
    out = normalize_torch(chw, table, torch.empty(chw.shape, dtype=torch_dtype), chunk_elements=chunk)
    np.testing.assert_array_equal(out.permute(0, 2, 3, 1).numpy(), normalized(images, MEAN, STD, dtype))


@pytest.mark.cuda
def test_normalize_on_cuda(rng):
    images = rng.integers(0, 256, (4, 33, 35, 3), dtype=np.uint8)
    chw = torch.from_numpy(images).cuda().permute(0, 3, 1, 2)
    out, _ = apply_op(NormalizeImage(MEAN, STD, np.float16), chw)
    assert out.device.type == 'cuda' and out.dtype == torch.float16
    np.testing.assert_array_equal(out.permute(0, 2, 3, 1).cpu().numpy(), normalized(images, MEAN, STD, np.float16))


@pytest.mark.parametrize('state', [State(True, torch.device('cpu'), (8, 8, 3), np.dtype('float32')),
                                   State(True, torch.device('cpu'), (8, 8, 4), np.dtype('uint8')),
                                   State(False, torch.device('cpu'), (8, 8, 3), torch.uint8)])
def test_normalize_rejects_what_it_cannot_read(state):
    with pytest.raises(ValueError, match='NormalizeImage expects uint8'):
        NormalizeImage(MEAN, STD, np.float16).declare_state_and_memory(state)


# --- RandomBrightness / RandomContrast / RandomSaturation vs torchvision on uint8 tensors ---

JITTER = [(RandomBrightness, TF.adjust_brightness), (RandomContrast, TF.adjust_contrast),
          (RandomSaturation, TF.adjust_saturation)]


def jitter_reference(adjust, images, seeds, magnitude, p):
    out = images.copy()
    low, high = max(0.0, 1 - magnitude), 1 + magnitude
    for i, seed in enumerate(seeds):
        if uniform(seed, 0) < p:
            factor = low + (high - low) * uniform(seed, 1)
            chw = torch.from_numpy(images[i]).permute(2, 0, 1)
            out[i] = adjust(chw, factor).permute(1, 2, 0).numpy()
    return out


@pytest.mark.parametrize('op_class, adjust', JITTER)
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('magnitude, p', [(0.4, 0.5), (1.5, 1.0)])
def test_color_jitter_matches_torchvision(op_class, adjust, shape, magnitude, p, rng):
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    out, seeds = apply_op(op_class(magnitude, p=p), images.copy())
    expected = jitter_reference(adjust, images, seeds, magnitude, p)
    difference = np.abs(out.astype(int) - expected)
    if op_class is RandomContrast:  # torch averages the gray image in float32 (its summation order); we sum exactly
        assert difference.max() <= 1 and (difference == 0).mean() > 0.99
    else:
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('op_class', [RandomBrightness, RandomContrast, RandomSaturation])
def test_color_jitter_rate_and_identity(op_class, rng):
    images = rng.integers(0, 256, (4000, 2, 2, 3), dtype=np.uint8)
    out, _ = apply_op(op_class(0.8, p=0.3), images.copy(), seed=9)
    changed = (out != images).any(axis=(1, 2, 3)).mean()
    assert 0.25 < changed < 0.31  # p = 0.3 (a few applied factors leave an image unchanged)
    unchanged, _ = apply_op(op_class(0.0, p=1.0), images.copy())
    np.testing.assert_array_equal(unchanged, images)  # factor 1 is the identity


def test_contrast_needs_rgb():
    with pytest.raises(ValueError, match='RandomContrast expects 3-channel'):
        RandomContrast(0.5).declare_state_and_memory(State(True, torch.device('cpu'), (8, 8, 1), np.dtype('uint8')))


# --- Poison / ReplaceLabel ---

@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('alpha_kind', ['map', 'scalar'])
def test_poison_matches_numpy(shape, alpha_kind, rng):
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    mask = rng.integers(0, 256, shape[1:], dtype=np.uint8)
    alpha = rng.uniform(0, 1, shape[1:3]) if alpha_kind == 'map' else 0.3
    indices = np.arange(10, 10 + shape[0])
    targets = indices[::2]
    out, _ = apply_op(Poison(mask, alpha, list(targets[::-1]), clamp=(20, 230)), images.copy(), indices=indices)
    alpha3 = np.broadcast_to(np.asarray(alpha, np.float64).reshape(np.shape(alpha) + (1,) * (3 - np.ndim(alpha))),
                             shape[1:])
    blended = images.astype(np.float32) * (1 - alpha3).astype(np.float32) + (mask * alpha3).astype(np.float32)
    expected = np.where(np.isin(indices, targets)[:, None, None, None],
                        np.clip(blended, 20, 230).astype(np.uint8), images)
    np.testing.assert_array_equal(out, expected)
    exact = np.clip(images * (1 - alpha3) + mask * alpha3, 20, 230)  # float64 maths: within the truncation
    assert np.abs(out[::2] - exact[::2]).max() < 1.0001


def test_poison_checks_mask_shape():
    with pytest.raises(ValueError, match='Poison: mask has shape'):
        Poison(np.zeros((4, 4, 3)), 0.5, [0]).declare_state_and_memory(
            State(True, torch.device('cpu'), (8, 8, 3), np.dtype('uint8')))


@pytest.mark.parametrize('dtype', [np.int64, np.int32])
def test_replace_label(dtype, rng):
    labels = rng.integers(0, 10, (9, 1)).astype(dtype)
    indices = np.array([5, 1, 8, 3, 2**27 + 1, 100, 2**27, 0, 4])  # huge indices use the sorted fallback
    out, _ = apply_op(ReplaceLabel([3, 100, 4, 999, 2**27], 42), labels.copy(), indices=indices)
    expected = np.where(np.isin(indices, [3, 100, 4, 2**27])[:, None], 42, labels)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == dtype
    with pytest.raises(ValueError, match='non-negative'):
        ReplaceLabel([-1], 0)


def test_replace_label_needs_one_label_per_sample():
    with pytest.raises(ValueError, match='ReplaceLabel expects one label per sample'):
        ReplaceLabel([1], 0).declare_state_and_memory(State(True, torch.device('cpu'), (8, 8, 3), np.dtype('uint8')))
