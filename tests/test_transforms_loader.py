"""Transforms inside the Loader: CIFAR and ImageNet pipelines end to end, thread-count independence,
the compile switch, mixup agreement across pipelines, and build-time errors."""
import numpy as np
import pytest
import torch
import torchvision

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline.pipeline_spec import PipelineError
from ffcv.transforms import (Convert, Cutout, ImageMixup, LabelMixup, MixupToOneHot, NormalizeImage, Poison,
                             RandomBrightness, RandomContrast, RandomHorizontalFlip, RandomResizedCrop,
                             RandomSaturation, RandomTranslate, ReplaceLabel, Squeeze, ToTensor, ToTorchImage)
from ffcv.transforms.common import Squeeze as CommonSqueeze

from conftest import photo_like
from helpers import collect, compiled_and_python, same_batches, write_and_read

CIFAR_MEAN = [125.307, 122.961, 113.8575]
CIFAR_STD = [51.5865, 50.847, 51.255]
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255


@pytest.fixture(scope='module')
def cifar(tmp_path_factory):
    """48 raw 32x32 images whose labels are their index."""
    path = str(tmp_path_factory.mktemp('cifar') / 'cifar.beton')
    rng = np.random.default_rng(5)
    write_and_read(path, {'image': RGBImageField(), 'label': IntField()},
                   [(photo_like(rng, 32, 32), i) for i in range(48)])
    return path


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    """24 JPEG / raw images of assorted sizes."""
    path = str(tmp_path_factory.mktemp('imagenet') / 'imagenet.beton')
    rng = np.random.default_rng(6)
    samples = [(photo_like(rng, int(rng.integers(60, 140)), int(rng.integers(60, 140))), i % 10) for i in range(24)]
    write_and_read(path, {'image': RGBImageField(write_mode='proportion'), 'label': IntField()}, samples)
    return path


def cifar_train(path, workers, seed, batch_size=16):
    image = [SimpleRGBImageDecoder(), RandomHorizontalFlip(), RandomTranslate(padding=2, fill=tuple(CIFAR_MEAN)),
             Cutout(4, fill=tuple(CIFAR_MEAN)), ToTensor(), ToTorchImage(), Convert(torch.float16),
             torchvision.transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
    return Loader(path, batch_size=batch_size, num_workers=workers, order=OrderOption.RANDOM, seed=seed,
                  pipelines={'image': image, 'label': [IntDecoder(), ToTensor(), Squeeze()]})


def test_cifar_pipeline_end_to_end(cifar):
    batches = collect(cifar_train(cifar, workers=2, seed=0))
    assert len(batches) == 3
    images, labels = batches[0]
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float16 and labels.shape == (16,)
    assert torch.isfinite(images).all() and images.abs().max() < 3
    fill = (np.trunc(CIFAR_MEAN) - CIFAR_MEAN) / CIFAR_STD  # cutout/translate fill, after normalisation
    values = images.permute(0, 2, 3, 1).reshape(-1, 3).float().numpy()
    assert (np.abs(values - fill).max(axis=1) < 1e-2).sum() >= 16 * 16  # at least one 4x4 cutout per image
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(48))


def test_same_seed_same_batches_with_1_and_8_threads(cifar):
    def run(workers, seed):
        loader = cifar_train(cifar, workers, seed, batch_size=8)
        return collect(loader) + collect(loader)  # two epochs

    reference = run(1, 3)
    assert same_batches(reference, run(8, 3))
    assert not same_batches(reference, run(1, 4))
    assert not torch.equal(reference[0][0], reference[6][0])  # epochs differ


def every_op_loader(path, workers, seed, indices=None):
    mask = np.full((24, 24, 3), 255, np.uint8)
    image = [SimpleRGBImageDecoder(), RandomResizedCrop((0.3, 1.0), (3 / 4, 4 / 3), 24), RandomHorizontalFlip(),
             RandomTranslate(3), Cutout(6), RandomBrightness(0.3), RandomContrast(0.3), RandomSaturation(0.3),
             Poison(mask, 0.5, range(0, 48, 5)), ImageMixup(0.4, False), ToTensor(), ToTorchImage(),
             NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float32)]
    label = [IntDecoder(), ReplaceLabel(range(0, 48, 7), 47), LabelMixup(0.4, False), ToTensor(), MixupToOneHot(48)]
    return Loader(path, batch_size=12, num_workers=workers, order=OrderOption.RANDOM, seed=seed, indices=indices,
                  pipelines={'image': image, 'label': label})


def test_every_op_is_thread_count_independent(cifar):
    reference = collect(every_op_loader(cifar, 1, 10))
    images, targets = reference[0]
    assert images.shape == (12, 3, 24, 24) and images.dtype == torch.float32
    assert targets.shape == (12, 48) and torch.allclose(targets.sum(dim=1), torch.ones(12))
    assert same_batches(reference, collect(every_op_loader(cifar, 8, 10)))
    assert not same_batches(reference, collect(every_op_loader(cifar, 8, 11)))


def test_compile_switch_gives_identical_batches(cifar):
    def run():  # two batches keep the Python-only run short
        return collect(every_op_loader(cifar, 2, 12, indices=range(24)))

    compiled, python = compiled_and_python(run)
    assert same_batches(compiled, python)


def test_mixup_pairs_agree_through_the_loader(cifar):
    labels = [IntDecoder(), LabelMixup(0.5, False)]
    loader = Loader(cifar, batch_size=16, num_workers=3, order=OrderOption.RANDOM, seed=1,
                    pipelines={'image': [SimpleRGBImageDecoder(), ImageMixup(0.5, False), ToTensor()],
                               'label': labels + [ToTensor()]})
    plain = Loader(cifar, batch_size=48, pipelines={'label': None})
    originals = next(iter(plain))[0].numpy().astype(np.float32)  # labels are sample indices
    for mixed, rows in loader:
        first, second = originals[rows[:, 0].long()], originals[rows[:, 1].long()]
        lam = rows[:, 2].numpy()[:, None, None, None]
        expected = np.floor(second + lam * (first - second) + np.float32(0.5))
        np.testing.assert_array_equal(mixed.numpy(), expected)


def test_imagenet_train_pipeline_normalises_on_cpu(imagenet):
    def run(tail):
        decoder = RandomResizedCropRGBImageDecoder((160, 160))
        return collect(Loader(imagenet, batch_size=8, num_workers=2, order=OrderOption.RANDOM, seed=7,
                              pipelines={'image': [decoder, RandomHorizontalFlip(), *tail],
                                         'label': [IntDecoder(), ToTensor(), CommonSqueeze()]}))

    raw = run([ToTensor(), ToTorchImage()])
    torch_path = run([ToTensor(), ToTorchImage(), NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float16)])
    numpy_path = run([NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float16), ToTensor(), ToTorchImage()])
    assert len(raw) == len(torch_path) == 3
    for (images, _), (fast, labels), (ffcv_style, _) in zip(raw, torch_path, numpy_path):
        assert fast.shape == (8, 3, 160, 160) and fast.dtype == torch.float16 and labels.shape == (8,)
        expected = ((images.double() - torch.tensor(IMAGENET_MEAN)[:, None, None])
                    / torch.tensor(IMAGENET_STD)[:, None, None]).half()
        assert torch.equal(fast, expected) and torch.equal(ffcv_style, expected)


@pytest.mark.parametrize('image_pipeline, words', [
    ([SimpleRGBImageDecoder(), ToTensor(), Cutout(4)], 'Cutout works on NumPy arrays'),
    ([SimpleRGBImageDecoder(), Convert(np.float32), RandomBrightness(0.2)], 'RandomBrightness expects uint8'),
    ([SimpleRGBImageDecoder(), ToTensor(), NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float16)],
     'after ToTorchImage()'),
    ([SimpleRGBImageDecoder(), MixupToOneHot(10)], 'insert ToTensor()'),
])
def test_misplaced_ops_fail_when_the_loader_is_built(cifar, image_pipeline, words):
    with pytest.raises(PipelineError, match="pipeline 'image'") as info:
        Loader(cifar, batch_size=8, pipelines={'image': image_pipeline})
    assert words in str(info.value)


def test_ffcv_import_paths():
    import ffcv.transforms as transforms
    ffcv_names = ['Convert', 'Cutout', 'ImageMixup', 'LabelMixup', 'MixupToOneHot', 'ModuleWrapper', 'NormalizeImage',
                  'Poison', 'RandomBrightness', 'RandomContrast', 'RandomHorizontalFlip', 'RandomResizedCrop',
                  'RandomSaturation', 'RandomTranslate', 'ReplaceLabel', 'Squeeze', 'ToDevice', 'ToTensor',
                  'ToTorchImage', 'View']  # FFCV 1.0.2's ffcv.transforms.__all__
    ours = ['GaussianBlur', 'RandAugment', 'RandomColorJitter', 'RandomGrayscale', 'RandomHue', 'RandomSolarization',
            'ToImageList', 'TrivialAugmentWide']  # what this package adds (`import *` brings them too)
    assert sorted(transforms.__all__) == sorted(ffcv_names + ours)
    from ffcv.transforms.color_jitter import RandomBrightness as from_module  # FFCV's module names
    from ffcv.transforms.mixup import MixupToOneHot as one_hot
    from ffcv.transforms.poisoning import Poison as poison
    assert from_module is RandomBrightness and one_hot is MixupToOneHot and poison is Poison
