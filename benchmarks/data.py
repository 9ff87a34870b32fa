"""Deterministic benchmark datasets, the same in our environment and in FFCV 1.0.2's.

Only NumPy, OpenCV and scikit-image's bundled sample photographs are used (no `ffcv` import, no
download), so `benchmarks/bench_writer.py` and `benchmarks/ffcv_compat.py` can load this file by path in
either interpreter and get identical pixels (both environments pin the same numpy / opencv versions;
`dataset_digest` lets a caller confirm it).

Three kinds of data:

* ``photo``: ImageNet-like RGB images, each side drawn in [350, 500] px, made from random crops and
  rescales of scikit-image's sample photographs (colour, or greyscale ones tinted), colour-jittered,
  blended with smooth procedural content and mild sensor noise; about 15% are purely procedural. At
  256 px and JPEG quality 90 they compress to roughly the sizes of real photographs.
* ``skphoto``: photographs only: random crops of scikit-image's sample photographs rescaled to random
  350-500 px sides, with a little sensor noise (so no two are equal) and nothing procedural. Up to
  `SKPHOTO_POOL` distinct images are generated; a larger dataset cycles over them, each pass adding its
  own faint noise pattern to a band of rows (a saturating add of 0-3 grey levels), so that 50,000 images
  need neither 27 GB of memory nor a generation cost that would swamp the writer being measured (an item
  costs one copy).
* ``cifar``: CIFAR-like 32x32 uint8 images (downscaled photo crops) with int labels in [0, 10).

Examples
--------
>>> dataset = make_dataset('photo', 100, seed=0)   # in memory, generation done here
>>> image, label = dataset[3]
"""
from __future__ import annotations

import hashlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

# scikit-image sample images that ship inside the wheel (no pooch download needed, checked on 0.26).
COLOUR_SOURCES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry',
                  'retina', 'motorcycle')
GREY_SOURCES = ('camera', 'coins', 'moon', 'grass', 'gravel', 'brick', 'cell', 'clock')

PHOTO_SIDE = (350, 500)      # inclusive range of each side of a photo-like image, px
PROCEDURAL_SHARE = 0.15      # share of photo-like images that are purely procedural
CIFAR_SIDE = 32
CIFAR_CLASSES = 10

# Writer benchmark cases, shared by bench_writer.py and the FFCV 1.0.2 worker so both write the same
# thing: the dataset kind, its size (full / --quick) and RGBImageField's arguments (plus an IntField label).
WRITER_CASES = {
    'jpeg': {'kind': 'photo', 'count': 2000, 'quick_count': 200,
             'image_args': {'write_mode': 'jpg', 'max_resolution': 256, 'jpeg_quality': 90}},
    'raw': {'kind': 'cifar', 'count': 10000, 'quick_count': 1000, 'image_args': {}},
    'photo': {'kind': 'skphoto', 'count': 1500, 'quick_count': 200,
              'image_args': {'write_mode': 'jpg', 'max_resolution': 256, 'jpeg_quality': 90}},
    'photo50k': {'kind': 'skphoto', 'count': 50000, 'quick_count': 3000,
                 'image_args': {'write_mode': 'jpg', 'max_resolution': 256, 'jpeg_quality': 90}},
}
SKPHOTO_POOL = 1500          # distinct skphoto images; larger datasets cycle over them (see above)

_sources: Dict[str, np.ndarray] = {}


def _load_source(name: str) -> np.ndarray:
    """(H, W, 3) uint8 for a colour source, (H, W) uint8 for a greyscale one (cached per process)."""
    if name not in _sources:
        import skimage.data
        if name == 'motorcycle':
            image = skimage.data.stereo_motorcycle()[0]
        else:
            image = getattr(skimage.data, name)()
        image = np.ascontiguousarray(image[..., :3] if image.ndim == 3 else image, dtype=np.uint8)
        image.setflags(write=False)
        _sources[name] = image
    return _sources[name]


def _smooth_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 around [0, 255]: low-frequency sinusoids plus a few soft blobs.

    Drawn on a grid 8x coarser and upscaled (it is smooth, so nothing is lost and it is 64x cheaper).
    """
    small_h, small_w = max(2, height // 8), max(2, width // 8)
    ys = np.linspace(0, 1, small_h, dtype=np.float32)[:, None, None]
    xs = np.linspace(0, 1, small_w, dtype=np.float32)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(2, 1, 1, 3)).astype(np.float32)
    freq = rng.uniform(2, 9, size=(2, 1, 1, 3)).astype(np.float32)
    image = 127 + 70 * np.sin(freq[0] * ys + phase[0]) * np.cos(freq[1] * xs + phase[1])
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rng.uniform(0, 1, size=2).astype(np.float32)
        radius = np.float32(rng.uniform(0.05, 0.3))
        colour = rng.uniform(-90, 90, size=3).astype(np.float32)
        blob = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius * radius))
        image = image + blob * colour
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


def _crop_of_source(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32: a random crop of a random sample photo, rescaled to (height, width)."""
    names = COLOUR_SOURCES + GREY_SOURCES
    name = names[int(rng.integers(len(names)))]
    source = _load_source(name)
    src_h, src_w = source.shape[:2]
    # Crop with the target's aspect ratio and 25-100% of the largest such crop's area.
    aspect = width / height
    max_h = min(src_h, src_w / aspect)
    crop_h = max(8, int(max_h * np.sqrt(rng.uniform(0.25, 1.0))))
    crop_w = max(8, min(src_w, int(round(crop_h * aspect))))
    top = int(rng.integers(0, src_h - crop_h + 1))
    left = int(rng.integers(0, src_w - crop_w + 1))
    crop = source[top:top + crop_h, left:left + crop_w]
    interpolation = cv2.INTER_AREA if crop_h > height else cv2.INTER_CUBIC
    crop = cv2.resize(crop, (width, height), interpolation=interpolation).astype(np.float32)
    if crop.ndim == 2:  # greyscale photo: tint it
        tint = rng.uniform(0.6, 1.2, size=3).astype(np.float32)
        crop = crop[:, :, None] * tint + rng.uniform(-20, 20, size=3).astype(np.float32)
    else:
        crop = crop * rng.uniform(0.8, 1.2, size=3).astype(np.float32)  # per-channel gain
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop


def photo_image(index: int, seed: int = 0) -> np.ndarray:
    """Photo-like image number `index`: (H, W, 3) uint8 with H, W in `PHOTO_SIDE` (a pure function)."""
    rng = np.random.default_rng([seed, index, 0x9407])
    height, width = (int(v) for v in rng.integers(PHOTO_SIDE[0], PHOTO_SIDE[1] + 1, size=2))
    smooth = _smooth_field(rng, height, width)
    if rng.random() < PROCEDURAL_SHARE:
        image = smooth
    else:
        alpha = np.float32(rng.uniform(0.0, 0.35))
        image = (1 - alpha) * _crop_of_source(rng, height, width) + alpha * smooth
        image = image + np.float32(rng.uniform(-25, 25))  # brightness
    sigma = np.float32(rng.uniform(0.0, 4.0))  # sensor noise, grey levels
    if sigma > 0.5:
        image = image + sigma * rng.standard_normal(size=image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def skphoto_image(index: int, seed: int = 0) -> np.ndarray:
    """Photograph number `index`: a crop of a scikit-image sample photo at random 350-500 px sides, plus
    Gaussian noise of 1-3 grey levels. (H, W, 3) uint8, a pure function of (index, seed)."""
    rng = np.random.default_rng([seed, index, 0x5C1])
    height, width = (int(v) for v in rng.integers(PHOTO_SIDE[0], PHOTO_SIDE[1] + 1, size=2))
    image = _crop_of_source(rng, height, width)
    image = image + np.float32(rng.uniform(1.0, 3.0)) * rng.standard_normal(size=image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


class PooledPhotoDataset:
    """``skphoto`` images: the first `SKPHOTO_POOL` generated up front, later ones copies of them with a
    faint noise pattern per pass over the pool on `NOISE_BAND` rows (item i = pool[i % P], rows
    [b, b + NOISE_BAND) + noise[i // P], saturating, b drawn per pass).

    ``dataset[i] -> (image, label)``; `digest()` hashes what the items are a pure function of.
    """

    NOISE_BAND = 32

    def __init__(self, count: int, seed: int = 0, progress: Optional[Callable[[int], None]] = None):
        self.count, self.seed = int(count), int(seed)
        self.pool = []
        for i in range(min(self.count, SKPHOTO_POOL)):
            self.pool.append(skphoto_image(i, seed))
            if progress is not None:
                progress(i + 1)
        passes = -(-self.count // max(len(self.pool), 1))
        rng = np.random.default_rng([seed, 0x0153])
        size = self.NOISE_BAND * PHOTO_SIDE[1] * 3  # noise[0] is all zero: the first pass is the pool itself
        self.noise = np.zeros((passes, size), np.uint8)
        self.noise[1:] = rng.integers(0, 4, size=(passes - 1, size), dtype=np.uint8)
        self.band_start = rng.integers(0, PHOTO_SIDE[0] - self.NOISE_BAND, size=passes)
        self.labels = np.array([photo_label(i, seed) for i in range(self.count)], dtype=np.int64)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Tuple[np.ndarray, int]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        base = self.pool[index % len(self.pool)]
        passes = index // len(self.pool)
        if passes == 0:
            return base, int(self.labels[index])
        image = base.copy()
        band = image[self.band_start[passes]:self.band_start[passes] + self.NOISE_BAND]
        cv2.add(band, self.noise[passes, :band.size].reshape(band.shape), dst=band)
        return image, int(self.labels[index])

    def digest(self) -> str:
        digest = hashlib.sha256(f'skphoto {self.count} {self.seed}'.encode())
        for image in self.pool:
            digest.update(np.asarray(image.shape, dtype=np.int64).tobytes())
            digest.update(image.tobytes())
        digest.update(self.noise.tobytes())
        digest.update(self.band_start.astype(np.int64).tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()


def cifar_images(count: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(count, 32, 32, 3) uint8 images (downscaled photo crops) and (count,) int64 labels in [0, 10)."""
    rng = np.random.default_rng([seed, 0xC1FA])
    images = np.empty((count, CIFAR_SIDE, CIFAR_SIDE, 3), dtype=np.uint8)
    for i in range(count):
        side = int(rng.integers(48, 257))
        crop = _crop_of_source(rng, side, side)
        small = cv2.resize(crop, (CIFAR_SIDE, CIFAR_SIDE), interpolation=cv2.INTER_AREA)
        images[i] = np.clip(small, 0, 255).astype(np.uint8)
    labels = rng.integers(0, CIFAR_CLASSES, size=count).astype(np.int64)
    return images, labels


class InMemoryDataset:
    """Indexed dataset over pre-generated samples: ``dataset[i] -> (image, label)``.

    `images` is a list of (H, W, 3) uint8 arrays or one (N, H, W, 3) array; labels are returned as int.
    """

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[int]):
        if len(images) != len(labels):
            raise ValueError(f'{len(images)} images but {len(labels)} labels')
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])


class LazyPhotoDataset:
    """Photo-like dataset generated on access (no memory held; generation cost is paid per item)."""

    def __init__(self, count: int, seed: int = 0):
        self.count = int(count)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Tuple[np.ndarray, int]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return photo_image(index, self.seed), photo_label(index, self.seed)


def photo_label(index: int, seed: int = 0) -> int:
    """Label of photo-like image `index` (1000 classes, ImageNet-like)."""
    return int(np.random.default_rng([seed, index, 0x1AB]).integers(0, 1000))


def make_dataset(kind: str, count: int, seed: int = 0, progress: Optional[Callable[[int], None]] = None):
    """Generate `count` samples of `kind` ('photo', 'skphoto' or 'cifar') into memory."""
    if kind == 'photo':
        images: List[np.ndarray] = []
        for i in range(count):
            images.append(photo_image(i, seed))
            if progress is not None:
                progress(i + 1)
        return InMemoryDataset(images, [photo_label(i, seed) for i in range(count)])
    if kind == 'skphoto':
        return PooledPhotoDataset(count, seed, progress)
    if kind == 'cifar':
        images_array, labels = cifar_images(count, seed)
        return InMemoryDataset(images_array, labels)
    raise ValueError(f"kind must be 'photo', 'skphoto' or 'cifar', got {kind!r}")


def dataset_digest(dataset) -> str:
    """SHA-256 over every sample's shape, pixels and label (to check both interpreters agree); a dataset
    with a `digest()` method hashes what its samples are a pure function of instead."""
    if hasattr(dataset, 'digest'):
        return dataset.digest()
    digest = hashlib.sha256()
    for i in range(len(dataset)):
        image, label = dataset[i]
        digest.update(np.asarray(image.shape, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(image).tobytes())
        digest.update(int(label).to_bytes(8, 'little', signed=True))
    return digest.hexdigest()
