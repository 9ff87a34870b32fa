"""ImageMixup, LabelMixup, MixupToOneHot: the Beta draws, the blend vs NumPy, agreement, the one-hot fix."""
import numpy as np
import pytest
import torch

from ffcv.pipeline.state import State
from ffcv.transforms import ImageMixup, LabelMixup, MixupToOneHot
from ffcv.transforms.mixup import beta_draw, draw_lambdas, mixup_images_kernel

from op_helpers import apply_op, many_seeds


@pytest.mark.parametrize('alpha', [0.05, 0.2, 1.0, 4.0])
def test_lambdas_follow_beta(alpha):
    draws = draw_lambdas(many_seeds(40000, seed=alpha * 100), alpha, False).astype(np.float64)
    assert 0 <= draws.min() and draws.max() <= 1
    variance = 1 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert abs(draws.mean() - 0.5) < 4 * np.sqrt(variance / len(draws))
    assert abs(draws.var() / variance - 1) < 0.03
    reference = np.random.default_rng(0).beta(alpha, alpha, 200000)
    points = np.array([0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98])  # empirical CDFs agree (standard error < 0.003)
    cdf = (draws[:, None] <= points).mean(axis=0)
    np.testing.assert_allclose(cdf, (reference[:, None] <= points).mean(axis=0), atol=0.012)


def test_same_lambda_uses_the_first_sample_stream():
    seeds = many_seeds(16)
    lambdas = draw_lambdas(seeds, 0.4, True)
    assert (lambdas == np.float32(beta_draw(seeds[0], 0.4))).all()
    per_sample = draw_lambdas(seeds, 0.4, False)
    assert per_sample[0] == lambdas[0] and len(set(per_sample.tolist())) == 16


def mixup_reference(images, lambdas):
    """b + lam * (a - b) in float32 with b the previous image of the batch, rounded half up."""
    first = images.astype(np.float32)
    second = np.roll(first, 1, axis=0)
    lam = lambdas.astype(np.float32)[:, None, None, None]
    return np.floor(second + lam * (first - second) + np.float32(0.5)).astype(np.uint8)


@pytest.mark.parametrize('shape', [(1, 8, 8, 3), (6, 31, 17, 3), (3, 32, 32, 1)])
@pytest.mark.parametrize('same_lambda', [False, True])
def test_image_mixup_matches_numpy(shape, same_lambda, rng):
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    out, seeds = apply_op(ImageMixup(0.5, same_lambda), images)
    lambdas = np.array([beta_draw(seeds[0 if same_lambda else i], 0.5) for i in range(shape[0])], np.float32)
    np.testing.assert_array_equal(out, mixup_reference(images, lambdas))
    exact = lambdas[:, None, None, None] * images + (1 - lambdas[:, None, None, None]) * np.roll(images, 1, 0)
    assert np.abs(out - exact).max() <= 0.5 + 1e-4  # rounded, not truncated (FFCV truncates)


def test_mixing_equal_pixels_keeps_them():
    images = np.full((64, 4, 4, 3), 201, np.uint8)
    lambdas = draw_lambdas(many_seeds(64), 0.2, False)
    out = mixup_images_kernel(images.reshape(64, -1), np.empty((64, 48), np.uint8), lambdas)
    assert (out == 201).all()  # FFCV's float-to-uint8 truncation can turn these into 200


@pytest.mark.parametrize('same_lambda', [False, True])
def test_label_mixup_agrees_with_image_mixup(same_lambda, rng):
    count = 9
    indices = rng.permutation(100)[:count]
    labels = rng.integers(0, 10, (count, 1))
    images = (labels * 20).astype(np.uint8).reshape(count, 1, 1, 1).repeat(3, axis=3)  # image encodes its label
    mixed_images, _ = apply_op(ImageMixup(0.3, same_lambda), images, indices=indices, seed=4)
    mixed_labels, _ = apply_op(LabelMixup(0.3, same_lambda), labels, indices=indices, seed=4)
    assert mixed_labels.dtype == np.float32 and mixed_labels.shape == (count, 3)
    np.testing.assert_array_equal(mixed_labels[:, 0], labels[:, 0])
    np.testing.assert_array_equal(mixed_labels[:, 1], np.roll(labels[:, 0], 1))
    first, second, lam = (mixed_labels[:, k] for k in range(3))
    expected = np.floor(20 * second + lam * (20 * first - 20 * second) + np.float32(0.5))
    np.testing.assert_array_equal(mixed_images[:, 0, 0, 0], expected)
    other_epoch, _ = apply_op(LabelMixup(0.3, same_lambda), labels, indices=indices, seed=4, epoch=1)
    assert not np.array_equal(other_epoch[:, 2], lam)  # lambdas change with the epoch


def test_mixup_to_one_hot(rng):
    labels = np.array([[3, 1, 0.25], [2, 2, 0.7], [0, 4, 1.0], [4, 0, 0.0]], np.float32)
    mixed = torch.from_numpy(labels.copy())
    out, _ = apply_op(MixupToOneHot(5), mixed)
    expected = np.zeros((4, 5), np.float32)
    for row, (first, second, lam) in enumerate(labels):
        expected[row, int(first)] += lam
        expected[row, int(second)] += 1 - lam
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-7)
    assert out[1, 2] == 1.0  # equal labels: lam + (1 - lam), not FFCV's 1 - lam
    np.testing.assert_allclose(out.sum(dim=1).numpy(), 1, atol=1e-6)
    assert torch.equal(mixed, torch.from_numpy(labels))  # the input is not modified


@pytest.mark.parametrize('op, state, words', [
    (MixupToOneHot(10), State(True, torch.device('cpu'), (3,), np.dtype('float32')), 'insert ToTensor()'),
    (MixupToOneHot(10), State(False, torch.device('cpu'), (1,), torch.int64), 'LabelMixup()'),
    (LabelMixup(0.2, False), State(True, torch.device('cpu'), (8, 8, 3), np.dtype('uint8')), 'one label'),
    (ImageMixup(0.2, False), State(True, torch.device('cpu'), (8, 8, 3), np.dtype('float32')), 'uint8'),
])
def test_mixup_input_checks(op, state, words):
    with pytest.raises(ValueError, match=type(op).__name__) as info:
        op.declare_state_and_memory(state)
    assert words in str(info.value)


def test_alpha_must_be_positive():
    for make in (lambda: ImageMixup(0, False), lambda: LabelMixup(-1, True), lambda: MixupToOneHot(0)):
        with pytest.raises(ValueError):
            make()
