"""RandomGrayscale, RandomSolarization, GaussianBlur, RandomHue, RandomColorJitter vs torchvision's functional
ops on the same uint8 images with the same drawn parameters; the statistics of the draws; argument and
input-state errors."""
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from ffcv.pipeline.seeding import uniform
from ffcv.pipeline.state import State
from ffcv.transforms import (GaussianBlur, RandAugment, RandomColorJitter, RandomGrayscale, RandomHue,
                             RandomSolarization, TrivialAugmentWide)
from ffcv.transforms.blur import draw_blur
from ffcv.transforms.random_color_jitter import draw_color_jitter

from conftest import photo_like
from op_helpers import apply_op, many_seeds

SHAPES = [(3, 9, 7), (6, 40, 31), (2, 96, 128)]  # (batch, height, width), RGB


def batch(rng, count, height, width):
    """Half photo-like images, half uniform noise (every value and hue occurs)."""
    return np.stack([photo_like(rng, height, width) if i % 2 else rng.integers(0, 256, (height, width, 3), np.uint8)
                     for i in range(count)])


def torchvision_on(image, adjust):
    """`adjust` applied by torchvision to one (H, W, 3) uint8 image, as (H, W, 3) uint8."""
    return adjust(torch.from_numpy(image).permute(2, 0, 1)).permute(1, 2, 0).numpy()


def reference(images, seeds, p, adjust_for):
    """Where uniform(seed, 0) < p: torchvision's op with the parameters `adjust_for(seed)` gives."""
    out = images.copy()
    for i, seed in enumerate(seeds):
        if uniform(seed, 0) < p:
            out[i] = torchvision_on(images[i], adjust_for(seed))
    return out


@pytest.mark.parametrize('shape', SHAPES)
def test_grayscale_and_solarization_match_torchvision(shape, rng):
    images = batch(rng, *shape)
    out, seeds = apply_op(RandomGrayscale(p=0.5), images.copy())
    np.testing.assert_array_equal(out, reference(images, seeds, 0.5, lambda s: lambda t: TF.rgb_to_grayscale(t, 3)))
    out, seeds = apply_op(RandomSolarization(threshold=100.5, p=0.7), images.copy())
    np.testing.assert_array_equal(out, reference(images, seeds, 0.7, lambda s: lambda t: TF.solarize(t, 100.5)))


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('kernel_size', [3, (7, 5)])
def test_gaussian_blur_matches_torchvision(shape, kernel_size, rng):
    """Exact but for float32 summation order: at most 1 grey level on under 0.1% of the values."""
    images = batch(rng, *shape)
    sizes = [kernel_size] * 2 if np.ndim(kernel_size) == 0 else list(kernel_size)
    out, seeds = apply_op(GaussianBlur(kernel_size, sigma=(0.1, 3.0), p=0.8), images.copy())
    sigma = lambda s: 0.1 + 2.9 * uniform(s, 1)  # noqa: E731
    expected = reference(images, seeds, 0.8, lambda s: lambda t: TF.gaussian_blur(t, sizes, [sigma(s)] * 2))
    difference = np.abs(out.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


@pytest.mark.parametrize('shape', SHAPES)
def test_hue_matches_torchvision(shape, rng):
    """Same float32 HSV arithmetic as adjust_hue: at most 1 grey level on under 0.1% of the values
    (measured: none differ)."""
    images = batch(rng, *shape)
    out, seeds = apply_op(RandomHue(0.5, p=0.9), images.copy())
    expected = reference(images, seeds, 0.9, lambda s: lambda t: TF.adjust_hue(t, -0.5 + uniform(s, 1)))
    difference = np.abs(out.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


ADJUST = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('settings', [dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.4),
                                      dict(brightness=(0.5, 0.9), contrast=0, saturation=(1.0, 2.5), hue=0)])
def test_color_jitter_matches_torchvision_in_drawn_order(shape, settings, rng):
    """ColorJitter's four adjustments in the drawn order: contrast's mean is exact here (torch's float32
    mean can differ in its last bit), so at most 2 grey levels differ, on under 1% of the values."""
    images = batch(rng, *shape)
    op = RandomColorJitter(**settings, p=0.8)
    out, seeds = apply_op(op, images.copy())
    apply, factors, order = draw_color_jitter(seeds, 0.8, op.ranges)
    expected = images.copy()
    for i in np.flatnonzero(apply):
        chw = torch.from_numpy(images[i]).permute(2, 0, 1)
        for which in order[i]:
            if op.enabled[which]:
                chw = ADJUST[which](chw, float(factors[i, which]))
        expected[i] = chw.permute(1, 2, 0).numpy()
    difference = np.abs(out.astype(int) - expected)
    assert difference.max() <= 2 and (difference > 0).mean() < 0.01


def test_color_jitter_draws_every_order_and_torchvision_ranges():
    seeds = many_seeds(24000, seed=3)
    op = RandomColorJitter(brightness=0.4, contrast=(0.2, 0.5), saturation=0.0, hue=0.1, p=0.8)
    assert op.enabled.tolist() == [True, True, False, True]
    np.testing.assert_allclose(op.ranges, [[0.6, 1.4], [0.2, 0.5], [1.0, 1.0], [-0.1, 0.1]])
    apply, factors, order = draw_color_jitter(seeds, 0.8, op.ranges)
    assert abs(apply.mean() - 0.8) < 4 * np.sqrt(0.8 * 0.2 / seeds.size)
    assert (np.sort(order, axis=1) == np.arange(4)).all()
    codes = order @ np.array([64, 16, 4, 1])
    counts = np.unique(codes, return_counts=True)[1]
    assert counts.size == 24 and np.abs(counts - 1000).max() < 4.5 * np.sqrt(1000)  # uniform over 24 orders
    for j, (low, high) in enumerate(op.ranges):
        assert low <= factors[:, j].min() and factors[:, j].max() <= high
        if high > low:  # uniform: mean and quartiles
            unit = (factors[:, j] - low) / (high - low)
            np.testing.assert_allclose(np.quantile(unit, [0.25, 0.5, 0.75]), [0.25, 0.5, 0.75], atol=0.02)


def test_blur_sigma_and_gate_statistics():
    apply, sigmas = draw_blur(many_seeds(20000, seed=4), 0.3, 0.1, 2.0)
    assert abs(apply.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 20000)
    assert 0.1 <= sigmas.min() and sigmas.max() < 2.0
    np.testing.assert_allclose(np.quantile(sigmas, [0.25, 0.5, 0.75]), [0.575, 1.05, 1.525], atol=0.04)


@pytest.mark.parametrize('make', [lambda: RandomGrayscale(0.25), lambda: RandomSolarization(0, p=0.25),
                                  lambda: RandomHue(0.5, p=0.25), lambda: GaussianBlur(3, 1.0, p=0.25)])
def test_rate_of_application(make, rng):
    images = rng.integers(0, 256, (3000, 3, 3, 3), dtype=np.uint8)
    out, _ = apply_op(make(), images.copy(), seed=11)
    changed = (out != images).any(axis=(1, 2, 3)).mean()
    assert 0.22 < changed <= 0.28  # p = 0.25 (noise images: nearly every applied op changes something)


@pytest.mark.parametrize('make, message', [
    (lambda: RandomGrayscale(p=1.5), r'RandomGrayscale: p must be .* got p=1.5'),
    (lambda: RandomGrayscale(p='x'), r"RandomGrayscale: p must be .* got p='x'"),
    (lambda: RandomSolarization(threshold=300), r'RandomSolarization: threshold must be in \[0, 255\], got .*=300'),
    (lambda: RandomHue(0.7), r'RandomHue: magnitude must be in \[0.0, 0.5\], got magnitude=0.7'),
    (lambda: GaussianBlur(4), r'GaussianBlur: kernel_size must be an odd .* got kernel_size=4'),
    (lambda: GaussianBlur((3, 3, 3)), r'GaussianBlur: kernel_size .* got kernel_size=\(3, 3, 3\)'),
    (lambda: GaussianBlur(3, sigma=(2.0, 1.0)), r'GaussianBlur: sigma must be .* got sigma=\(2.0, 1.0\)'),
    (lambda: GaussianBlur(3, sigma=0), r'GaussianBlur: sigma must be .* got sigma=0'),
    (lambda: RandomColorJitter(brightness=-1), r'RandomColorJitter: brightness must be .* got brightness=-1'),
    (lambda: RandomColorJitter(hue=0.6), r'RandomColorJitter: hue must be .* got hue=0.6'),
    (lambda: RandomColorJitter(contrast=(2, 1)), r'RandomColorJitter: contrast as a pair .* got contrast=\(2, 1\)'),
    (lambda: RandomColorJitter(p=-0.1), r'RandomColorJitter: p must be .* got p=-0.1'),
    (lambda: RandAugment(magnitude=31), r'RandAugment: magnitude must be an int in \[0, 30\], got magnitude=31'),
    (lambda: RandAugment(num_ops=-1), r'RandAugment: num_ops must be an int .* got num_ops=-1'),
    (lambda: RandAugment(fill=(1, 2)), r'RandAugment: fill has 2 values'),
    (lambda: TrivialAugmentWide(num_magnitude_bins=1.5), r'TrivialAugmentWide: num_magnitude_bins .* got .*=1.5'),
])
def test_bad_arguments_name_the_op_and_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


CPU = torch.device('cpu')
ALL_OPS = [lambda: RandomGrayscale(), lambda: RandomSolarization(), lambda: GaussianBlur(3), lambda: RandomHue(0.1),
           lambda: RandomColorJitter(), lambda: RandAugment(), lambda: TrivialAugmentWide()]


@pytest.mark.parametrize('make', ALL_OPS)
@pytest.mark.parametrize('state, message', [
    (State(False, CPU, (8, 8, 3), torch.uint8), 'works on NumPy arrays but receives a torch tensor'),
    (State(True, CPU, (8, 8, 3), np.dtype('float32')), 'expects uint8 images, got dtype float32'),
    (State(True, CPU, (8, 8, 1), np.dtype('uint8')), 'expects 3-channel'),
])
def test_wrong_input_state_is_a_clear_error(make, state, message):
    op = make()
    with pytest.raises(ValueError, match=f'{type(op).__name__} {message}'):
        op.declare_state_and_memory(state)


def test_blur_kernel_larger_than_the_image_is_refused():
    with pytest.raises(ValueError, match=r'GaussianBlur: kernel_size \(23, 23\) .* too large for 8x30 images'):
        GaussianBlur(23).declare_state_and_memory(State(True, CPU, (8, 30, 3), np.dtype('uint8')))
