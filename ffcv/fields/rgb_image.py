"""`RGBImageField`: RGB images stored raw or as JPEG, optionally downscaled at write time."""
from __future__ import annotations

from typing import Optional, Type

import numpy as np

from ..imaging import jpeg
from ..imaging.area_resize import area_resize, warm_up
from .base import Field, empty_arguments
# The decoders live beside the field; FFCV users import them from here too.
from .image_decoders import (IMAGE_MODES, CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder,  # noqa: F401
                             ResizedCropRGBImageDecoder, SimpleRGBImageDecoder)

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.allocation_query import AllocationQuery  # noqa: F401
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.operation import Operation  # noqa: F401
from ..pipeline.state import State  # noqa: F401
from .base import ARG_TYPE  # noqa: F401
from .._lazy import lazy_attributes

# FFCV 1.0.2 also exposes these here (loaded on first use: they load ffcv.libffcv).
__getattr__ = lazy_attributes(__name__, {**{name: 'ffcv.libffcv' for name in ('imdecode', 'memcpy', 'resize_crop')},
                                         **{name: 'ffcv.fields._ffcv_crops'
                                            for name in ('get_center_crop', 'get_random_crop')}})

WRITE_MODES = ('raw', 'jpg', 'smart', 'proportion')

# Packed (unaligned) metadata of one image: 13 bytes, as FFCV stores it.
RGB_METADATA = np.dtype([
    ('mode', '<u1'),
    ('width', '<u2'),
    ('height', '<u2'),
    ('data_ptr', '<u8'),
])


def as_rgb_array(image) -> np.ndarray:
    """A C-contiguous (H, W, 3) uint8 array from a PIL image or an array.

    PIL images of any mode are converted with ``.convert('RGB')``; 2-D (H, W) and (H, W, 1) uint8 arrays
    are treated as grayscale and replicated to 3 channels. Other shapes and non-uint8 dtypes are rejected
    (convert RGBA arrays yourself: dropping or blending alpha is a choice only the caller can make).
    """
    if hasattr(image, 'convert') and hasattr(image, 'mode'):  # PIL.Image
        image = np.asarray(image.convert('RGB'))
    if hasattr(image, 'numpy') and not isinstance(image, np.ndarray):  # torch tensor
        raise TypeError('expected an (H, W, 3) uint8 numpy array or a PIL image, got a torch tensor; '
                        'pass tensor.permute(1, 2, 0).numpy() for a (3, H, W) uint8 tensor')
    if not isinstance(image, np.ndarray):
        raise TypeError(f'expected an (H, W, 3) uint8 numpy array or a PIL image, got {type(image).__name__}')
    if image.dtype != np.uint8:
        raise ValueError(f'image must be uint8, got dtype {image.dtype}')
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'image must have shape (H, W, 3), got {image.shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'image is empty: shape {image.shape}')
    if image.shape[0] > 65535 or image.shape[1] > 65535:
        raise ValueError(f'image sides must be at most 65535 px (stored as uint16), got {image.shape[:2]}')
    return np.ascontiguousarray(image)


def encode_jpeg(numpy_image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG bytes (uint8 array) of an RGB image at `quality` (libjpeg-turbo through simplejpeg)."""
    return np.frombuffer(jpeg.encode_jpeg(numpy_image, quality), dtype=np.uint8)


def resizer(image: np.ndarray, target_resolution: Optional[int]) -> np.ndarray:
    """Downscale (never upscale) so the longer side is at most `target_resolution`, keeping the aspect ratio.

    FFCV's rule: ratio = target_resolution / max(H, W); new (W, H) = floor(ratio * (W, H)), INTER_AREA.
    """
    if target_resolution is None:
        return image
    height, width = image.shape[:2]
    ratio = target_resolution / max(height, width)
    if ratio >= 1:
        return image
    new_width, new_height = (int(v) for v in (ratio * np.array([width, height])).astype(int))
    return area_resize(image, max(new_width, 1), max(new_height, 1))  # = cv2 INTER_AREA, faster


class RGBImageField(Field):
    """RGB images of any size, stored raw (exact pixels) or JPEG-compressed.

    Parameters
    ----------
    write_mode : str
        ``'raw'`` (pixels as is), ``'jpg'`` (JPEG at `jpeg_quality`), ``'smart'`` (JPEG only when the raw
        image, H*W*3 bytes, is larger than `smart_threshold`; raw when the threshold is None) or
        ``'proportion'`` (JPEG with probability `compress_probability`, drawn from a generator seeded by
        the sample's row, so files are reproducible).
    max_resolution : int, optional
        Downscale images whose longer side exceeds this (aspect ratio kept, OpenCV INTER_AREA).
    smart_threshold : int, optional
        Byte threshold of ``'smart'`` mode.
    jpeg_quality : int
        JPEG quality, 0-100.
    compress_probability : float
        Probability of JPEG in ``'proportion'`` mode.
    """

    def __init__(self, write_mode: str = 'raw', max_resolution: Optional[int] = None,
                 smart_threshold: Optional[int] = None, jpeg_quality: int = 90,
                 compress_probability: float = 0.5):
        if write_mode not in WRITE_MODES:
            raise ValueError(f"write_mode must be one of {WRITE_MODES}, got {write_mode!r}")
        if max_resolution is not None and (not isinstance(max_resolution, (int, np.integer))
                                           or max_resolution < 1):
            raise ValueError(f'max_resolution must be a positive int (the longer side), got {max_resolution!r}')
        if not 0 <= jpeg_quality <= 100:
            raise ValueError(f'jpeg_quality must be in [0, 100], got {jpeg_quality}')
        if not 0 <= compress_probability <= 1:
            raise ValueError(f'compress_probability must be in [0, 1], got {compress_probability}')
        self.write_mode = write_mode
        self.max_resolution = max_resolution
        self.smart_threshold = smart_threshold
        self.jpeg_quality = int(jpeg_quality)
        self.compress_probability = compress_probability

    @property
    def metadata_type(self) -> np.dtype:
        return RGB_METADATA

    @staticmethod
    def from_binary(binary) -> Field:
        return RGBImageField()

    def to_binary(self) -> np.ndarray:
        return empty_arguments()

    def _use_jpeg(self, image: np.ndarray, rng_seed: int) -> bool:
        if self.write_mode == 'jpg':
            return True
        if self.write_mode == 'smart':
            return self.smart_threshold is not None and image.nbytes > self.smart_threshold
        if self.write_mode == 'proportion':
            return bool(np.random.default_rng([0x5EED, rng_seed]).random() < self.compress_probability)
        return False

    def encode(self, destination, image, malloc):
        return self.encode_row(destination, image, malloc, row=0)

    def encode_row(self, destination, image, malloc, row: int):
        image = resizer(as_rgb_array(image), self.max_resolution)
        height, width = image.shape[:2]
        if self._use_jpeg(image, row):  # the row being written seeds 'proportion'
            data = encode_jpeg(image, self.jpeg_quality)
            mode = IMAGE_MODES['jpg']
        else:
            data = image.reshape(-1)
            mode = IMAGE_MODES['raw']
        entry = destination[0]
        entry['mode'] = mode
        entry['width'] = width
        entry['height'] = height
        entry['data_ptr'], buffer = malloc(data.size)
        buffer[:] = data
        destination[0] = entry

    def _warm_up(self) -> None:
        """Called by the writer before it forks: compile the resize kernel once, in the parent."""
        if self.max_resolution is not None:
            warm_up()

    def get_decoder_class(self) -> Type:
        return SimpleRGBImageDecoder

    def read_value(self, metadata, read):
        height, width = int(metadata['height']), int(metadata['width'])
        mode = int(metadata['mode'])
        data = read(int(metadata['data_ptr']), None)
        if mode == IMAGE_MODES['raw']:
            return np.array(data.reshape(height, width, 3))
        image = jpeg.decode_jpeg(data, fastdct=False)  # accurate IDCT for tools and checks
        if image.shape != (height, width, 3):
            raise ValueError(f'JPEG decodes to {image.shape[1]}x{image.shape[0]} but the metadata says '
                             f'{width}x{height}')
        return image

    def heap_pointers(self, column):
        raw = column['mode'] == IMAGE_MODES['raw']
        sizes = column['height'].astype(np.uint64) * column['width'].astype(np.uint64) * np.uint64(3)
        return column['data_ptr'], np.where(raw, sizes, np.uint64(0)), raw

    def check_column(self, column):
        bad = np.flatnonzero(~np.isin(column['mode'], list(IMAGE_MODES.values())))
        if bad.size:
            return int(bad[0]), f"unknown image mode {int(column['mode'][bad[0]])} (0 jpg, 1 raw)"
        bad = np.flatnonzero((column['height'] == 0) | (column['width'] == 0))
        if bad.size:
            return int(bad[0]), 'image with a zero side'
        return None

    def describe(self) -> str:
        return 'RGBImageField()'
