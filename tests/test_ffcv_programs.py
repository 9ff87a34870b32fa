"""Every API use of FFCV's example programs, as they make it, with the CUDA device swapped for the CPU.

The programs: FFCV's examples/cifar (write_datasets.py, train_cifar.py) and ffcv-imagenet (write_imagenet.py,
train_imagenet.py). Their datasets come from torchvision (PIL images, int or tensor labels); their loaders
use the import paths, operations and arguments below; ffcv-imagenet changes the train decoder's
`output_size` between epochs (progressive resizing) and reads the JPEG quality/`proportion` options at write.
"""
from typing import List

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import Subset

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.basics import IntDecoder
from ffcv.fields.decoders import IntDecoder as IntDecoderFromDecoders, SimpleRGBImageDecoder
from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline.operation import Operation
from ffcv.transforms import (Convert, Cutout, NormalizeImage, RandomHorizontalFlip, RandomTranslate, Squeeze,
                             ToDevice, ToTensor, ToTorchImage)
from ffcv.transforms.common import Squeeze as SqueezeFromCommon
from ffcv.writer import DatasetWriter

CIFAR_MEAN = [125.307, 122.961, 113.8575]
CIFAR_STD = [51.5865, 50.847, 51.255]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255
DEVICE = torch.device('cpu')  # the programs' 'cuda:0' / f'cuda:{gpu}'


def test_same_classes_from_every_path_the_programs_use():
    assert IntDecoder is IntDecoderFromDecoders and Squeeze is SqueezeFromCommon


@pytest.fixture(scope='module')
def cifar_files(tmp_path_factory):
    """write_datasets.py: DatasetWriter(path, {'image': RGBImageField(), 'label': IntField()}) over a
    torchvision dataset of PIL images (FakeData stands in for CIFAR10: same item types)."""
    folder = tmp_path_factory.mktemp('cifar')
    paths = {}
    for name, size in (('train', 64), ('test', 32)):
        dataset = torchvision.datasets.FakeData(size=size, image_size=(3, 32, 32), num_classes=10,
                                                random_offset=0 if name == 'train' else 1000)
        paths[name] = str(folder / f'{name}.beton')
        writer = DatasetWriter(paths[name], {'image': RGBImageField(), 'label': IntField()})
        writer.from_indexed_dataset(dataset)
        first_image, first_label = dataset[0]
        assert isinstance(first_image, Image.Image)
    return paths, dataset


def test_cifar_training_program(cifar_files):
    """train_cifar.py's make_dataloaders and one optimisation step."""
    paths, _ = cifar_files
    loaders = {}
    for name in ('train', 'test'):
        label_pipeline: List[Operation] = [IntDecoder(), ToTensor(), ToDevice(DEVICE), Squeeze()]
        image_pipeline: List[Operation] = [SimpleRGBImageDecoder()]
        if name == 'train':
            image_pipeline.extend([RandomHorizontalFlip(), RandomTranslate(padding=2, fill=tuple(map(int, CIFAR_MEAN))),
                                   Cutout(4, tuple(map(int, CIFAR_MEAN)))])
        image_pipeline.extend([ToTensor(), ToDevice(DEVICE, non_blocking=True), ToTorchImage(),
                               Convert(torch.float16), torchvision.transforms.Normalize(CIFAR_MEAN, CIFAR_STD)])
        ordering = OrderOption.RANDOM if name == 'train' else OrderOption.SEQUENTIAL
        loaders[name] = Loader(paths[name], batch_size=16, num_workers=2, order=ordering,
                               drop_last=(name == 'train'), pipelines={'image': image_pipeline,
                                                                       'label': label_pipeline})
    assert len(loaders['train']) == 4 and len(loaders['test']) == 2
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for images, labels in loaders['train']:
        assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float16
        assert labels.shape == (16,) and labels.dtype == torch.int64
        loss = torch.nn.functional.cross_entropy(model(images.float()), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_images = torch.cat([images for images, _ in loaders['test']])
    assert test_images.shape == (32, 3, 32, 32)


def test_cifar_test_split_decodes_to_the_written_pixels(cifar_files):
    paths, dataset = cifar_files
    pipelines = {'image': [SimpleRGBImageDecoder(), ToTensor()], 'label': [IntDecoder(), ToTensor(), Squeeze()]}
    images, labels = next(iter(Loader(paths['test'], batch_size=32, order=OrderOption.SEQUENTIAL,
                                      pipelines=pipelines)))
    for i in range(32):
        image, label = dataset[i]
        assert np.array_equal(images[i].numpy(), np.asarray(image)) and int(labels[i]) == int(label)


@pytest.fixture(scope='module')
def imagenet_files(tmp_path_factory):
    """write_imagenet.py: ImageFolder (PIL) through Subset, RGBImageField with write_mode / max_resolution /
    compress_probability / jpeg_quality, num_workers and chunksize."""
    root = tmp_path_factory.mktemp('folder')
    rng = np.random.default_rng(0)
    for label in range(3):
        (root / f'class{label}').mkdir()
        for k in range(12):
            height, width = rng.integers(60, 120, 2)
            y, x = np.mgrid[0:height, 0:width]
            pixels = np.stack([(x * (3 + label)) % 256, (y * 2) % 256, (x + y + 40 * k) % 256], -1).astype(np.uint8)
            Image.fromarray(pixels).save(root / f'class{label}' / f'{k}.jpg', quality=95)
    dataset = Subset(torchvision.datasets.ImageFolder(root=str(root)), range(30))
    path = str(tmp_path_factory.mktemp('beton') / 'train.beton')
    writer = DatasetWriter(path, {'image': RGBImageField(write_mode='proportion', max_resolution=80,
                                                         compress_probability=0.5, jpeg_quality=90),
                                  'label': IntField()}, num_workers=2)
    writer.from_indexed_dataset(dataset, chunksize=8)
    return path


def test_imagenet_training_program(imagenet_files):
    """train_imagenet.py's create_train_loader / create_val_loader, and progressive resizing."""
    decoder = RandomResizedCropRGBImageDecoder((32, 32))
    image_pipeline = [decoder, RandomHorizontalFlip(), ToTensor(), ToDevice(DEVICE, non_blocking=True),
                      ToTorchImage(), NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float16)]
    label_pipeline = [IntDecoder(), ToTensor(), Squeeze(), ToDevice(DEVICE, non_blocking=True)]
    for distributed, in_memory in ((0, 1), (0, 0)):
        order = OrderOption.RANDOM if distributed else OrderOption.QUASI_RANDOM
        train = Loader(imagenet_files, batch_size=8, num_workers=2, order=order, os_cache=in_memory, drop_last=True,
                       pipelines={'image': image_pipeline, 'label': label_pipeline}, distributed=distributed)
        for resolution in (32, 48):  # self.decoder.output_size = (res, res) at each epoch
            decoder.output_size = (resolution, resolution)
            batches = list(train)
            assert len(batches) == 3
            images, labels = batches[0]
            assert images.shape == (8, 3, resolution, resolution) and images.dtype == torch.float16
            assert labels.shape == (8,) and set(labels.tolist()) <= {0, 1, 2}
    cropper = CenterCropRGBImageDecoder((40, 40), ratio=224 / 256)
    val = Loader(imagenet_files, batch_size=16, num_workers=2, order=OrderOption.SEQUENTIAL, drop_last=False,
                 pipelines={'image': [cropper, ToTensor(), ToDevice(DEVICE, non_blocking=True), ToTorchImage(),
                                      NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float16)],
                            'label': [IntDecoder(), ToTensor(), Squeeze(), ToDevice(DEVICE, non_blocking=True)]},
                 distributed=0)
    sizes = [images.shape[0] for images, _ in val]
    assert sizes == [16, 14]
