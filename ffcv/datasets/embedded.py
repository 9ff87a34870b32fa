"""A small, learnable 10-class 32x32 dataset built from photographs that ship with scikit-image.

No download is involved: each class is one of ten sample photographs (or textures) bundled in the
scikit-image wheel, and each sample is a random crop of it (random scale, position and mirror), resized
to 32x32 and jittered in brightness, contrast and colour (textures get a random tint, so colour alone does
not give the class away), plus mild noise. A classifier must recognise content at varied scales; chance is
10%. Everything is a pure function of (seed, split, sample index), so the files are reproducible.

`embedded_cifar()` writes train/test `.beton` files (CIFAR-10's layout: RGBImageField raw 32x32 + IntField)
into a cache folder once and reuses them afterwards.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

CLASSES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'retina',
           'brick', 'grass', 'gravel')
TEXTURES = {'brick', 'grass', 'gravel'}  # grayscale in scikit-image: tinted at random
VERSION = 1
_SPLITS = {'train': 0, 'test': 1}


def _photos() -> list:
    import skimage.data
    photos = []
    for name in CLASSES:
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        photos.append(np.ascontiguousarray(image[:, :, :3], dtype=np.uint8))
    return photos


def _sample(photo: np.ndarray, textured: bool, rng: np.random.Generator, size: int) -> np.ndarray:
    height, width = photo.shape[:2]
    side = int(rng.uniform(0.12, 0.5) * min(height, width))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = cv2.resize(photo[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    image = crop.astype(np.float32)
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.7, 1.3)
    gains = rng.uniform(0.4, 1.3, size=3) if textured else rng.uniform(0.85, 1.15, size=3)
    image = image * gains + rng.normal(0, 3, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_arrays(split: str, num_samples: int, seed: int = 0, size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """(images (N, size, size, 3) uint8, labels (N,) int64) of a split; classes are balanced (label = i % 10)."""
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    photos = _photos()
    images = np.empty((num_samples, size, size, 3), np.uint8)
    labels = np.arange(num_samples, dtype=np.int64) % len(CLASSES)
    for i in range(num_samples):
        rng = np.random.default_rng([seed, _SPLITS[split], i])
        images[i] = _sample(photos[labels[i]], CLASSES[labels[i]] in TEXTURES, rng, size)
    return images, labels


def default_cache_dir() -> Path:
    """$FFCV_CACHE_DIR, else $XDG_CACHE_HOME/ffcv, else ~/.cache/ffcv."""
    if os.environ.get('FFCV_CACHE_DIR'):
        return Path(os.environ['FFCV_CACHE_DIR'])
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'ffcv'


def embedded_cifar(cache_dir: Optional[os.PathLike] = None, train_size: int = 5000, test_size: int = 1000,
                   seed: int = 0) -> Tuple[str, str]:
    """Paths of the embedded train/test `.beton` files, writing them first if they are not cached."""
    from ..fields import IntField, RGBImageField
    from ..writer import DatasetWriter
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, count in (('train', train_size), ('test', test_size)):
        path = folder / f'embedded_v{VERSION}_s{seed}_{split}_{count}.beton'
        if not path.exists():
            images, labels = make_arrays(split, count, seed)
            writer = DatasetWriter(str(path), {'image': RGBImageField(), 'label': IntField()}, num_workers=1)
            writer.from_indexed_dataset(list(zip(images, labels)), progress=False)
        paths.append(str(path))
    return paths[0], paths[1]
