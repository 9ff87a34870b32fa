"""Decoders of `RGBImageField`: whole images, random resized crops and center crops.

They run as Python over the batch (one worker thread per batch); the heavy work, JPEG decoding
(libjpeg-turbo through simplejpeg) and resizing (INTER_AREA: OpenCV, or the same pixels from the compiled
`area_resize` where OpenCV is slow), happens in C or numba with the GIL released.
Raw images are copied by a compiled kernel. When a crop is at least twice the output size, JPEGs are
decoded at a reduced scale in the DCT domain (M/8), which is several times cheaper; and only the crop's
rows and columns are decoded (`ffcv.imaging.jpeg_window`, libjpeg-turbo's window decoding).
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Tuple

import cv2
import numpy as np

from ..imaging import jpeg, jpeg_window
from ..imaging.area_resize import area_resize
from ..imaging.crop import center_crop_windows, random_resized_crop_windows
from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ._decoding import NO_SIZES, annotate, batch_blobs, copy_blobs
from .._lazy import lazy_attributes

IMAGE_MODES = {'jpg': 0, 'raw': 1}  # how RGBImageField stores each image: its metadata's `mode` byte

JPG, RAW = IMAGE_MODES['jpg'], IMAGE_MODES['raw']


def _size_range(column) -> str:
    heights, widths = column['height'], column['width']
    return f'{int(widths.min())}x{int(heights.min())} to {int(widths.max())}x{int(heights.max())} (WxH)'


def _check_header_size(blob: np.ndarray, height: int, width: int) -> None:
    """Compare the JPEG's own size with the metadata before a DCT-scaled decode, whose output size
    alone cannot tell a JPEG twice as large as the metadata says from the right one."""
    if jpeg.jpeg_size(blob) != (height, width):
        stored_height, stored_width = jpeg.jpeg_size(blob)
        raise jpeg.JPEGDecodeError(f'JPEG is {stored_width}x{stored_height} but the metadata says '
                                    f'{width}x{height}')


def _check_decoded_size(image: np.ndarray, height: int, width: int, scaled: bool) -> None:
    """A JPEG whose header disagrees with the stored metadata is corrupt."""
    if scaled:  # M/8 scaling rounds up: ceil(side * M / 8)
        factor = image.shape[0] / height
        ok = abs(image.shape[1] - width * factor) <= 1 + factor
    else:
        ok = image.shape[:2] == (height, width)
    if not ok:
        raise jpeg.JPEGDecodeError(f'JPEG is {image.shape[1]}x{image.shape[0]} but the metadata says '
                                    f'{width}x{height}')


def _scale_window(window, height: int, width: int, scaled_h: int, scaled_w: int):
    """A window of a height x width image, in the coordinates of its scaled_h x scaled_w DCT-scaled decode."""
    top, left, crop_h, crop_w = window
    scale_y, scale_x = scaled_h / height, scaled_w / width
    top, left = int(top * scale_y), int(left * scale_x)
    return (top, left, max(1, min(round(crop_h * scale_y), scaled_h - top)),
            max(1, min(round(crop_w * scale_x), scaled_w - left)))


def _jpeg_crop(blob, height: int, width: int, window, out_h: int, out_w: int, scratch: np.ndarray,
               dct_scaling: bool, windowed: bool) -> np.ndarray:
    """The crop `window` (top, left, h, w) of a height x width JPEG, decoded into `scratch`: at a reduced
    DCT scale when the crop is at least twice the output, and only its rows and columns when `windowed`."""
    top, left, crop_h, crop_w = window
    need_h, need_w = -(-out_h * height // crop_h), -(-out_w * width // crop_w)
    scaled = dct_scaling and height >= 2 * need_h and width >= 2 * need_w
    if windowed and (crop_h < height or crop_w < width):
        scale = jpeg_window.choose_scale(height, width, need_h, need_w) if scaled else 8
        if scale < 8:
            window = _scale_window(window, height, width, jpeg_window.scaled_side(height, scale),
                                   jpeg_window.scaled_side(width, scale))
        return jpeg_window.decode_window(blob, height, width, window, scale, scratch)
    if scaled:
        _check_header_size(blob, height, width)
    image = jpeg.decode_jpeg(blob, out=scratch, min_height=need_h if scaled else 0,
                              min_width=need_w if scaled else 0)
    _check_decoded_size(image, height, width, scaled)
    if scaled:
        window = _scale_window(window, height, width, *image.shape[:2])
    top, left, crop_h, crop_w = window
    return image[top:top + crop_h, left:left + crop_w]


def resize_area_into(image: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = cv2.resize(image, out size, interpolation=cv2.INTER_AREA)``, the same pixels, faster.

    OpenCV's INTER_AREA is slow (a generic, unvectorised loop) when it shrinks by a non-integer factor,
    which is most random crops; `area_resize` computes the same result about twice as fast there.
    """
    out_h, out_w = out.shape[:2]
    if image.shape[0] > out_h and image.shape[1] > out_w:
        out[...] = area_resize(image, out_w, out_h)
    else:  # enlarging (or same size): OpenCV's own fast path
        cv2.resize(image, (out_w, out_h), dst=out, interpolation=cv2.INTER_AREA)


class SimpleRGBImageDecoder(Operation):
    """Decode whole images to (B, H, W, 3) uint8; every image of the field must have the same size."""

    def declare_state_and_memory(self, previous_state):
        column = self.metadata
        if column.size == 0:
            shape = (0, 0, 3)
        else:
            if (column['height'] != column['height'][0]).any() or (column['width'] != column['width'][0]).any():
                raise TypeError(
                    f'SimpleRGBImageDecoder needs images of one size, but this field holds sizes from '
                    f'{_size_range(column)}; use RandomResizedCropRGBImageDecoder(output_size) or '
                    f'CenterCropRGBImageDecoder(output_size, ratio) instead')
            shape = (int(column['height'][0]), int(column['width'][0]), 3)
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=np.dtype('uint8')),
                AllocationQuery(shape, np.dtype('uint8')))

    def generate_code(self):
        def decode(indices, destination, metadata, storage_state):
            entries = metadata[indices]
            jpegs = np.flatnonzero(entries['mode'] == JPG)
            if jpegs.size < indices.shape[0]:  # raw images: one compiled copy for the batch
                flat = destination.reshape(destination.shape[0], -1)
                run_kernel(copy_blobs, indices, metadata['data_ptr'], NO_SIZES, storage_state, flat, False)
            if jpegs.size:
                memory, starts, sizes = batch_blobs(entries['data_ptr'][jpegs], storage_state)
                for k, i in enumerate(jpegs):
                    try:
                        image = jpeg.decode_jpeg(memory[starts[k]:starts[k] + sizes[k]], out=destination[i])
                        _check_decoded_size(image, destination.shape[1], destination.shape[2], False)
                    except Exception as exc:
                        raise annotate(exc, f'while decoding the image of sample {int(indices[i])}')
            return destination
        decode.python_code = True
        return decode


# FFCV's crop functions (`get_crop_generator`), loaded on first use: they load ffcv.libffcv.
__getattr__ = lazy_attributes(__name__, {name: 'ffcv.fields._ffcv_crops'
                                         for name in ('get_random_crop', 'get_center_crop')})


class ResizedCropRGBImageDecoder(SimpleRGBImageDecoder):
    """Base of the decoders that crop a window of each image and resize it to `output_size` (h, w).

    Works with images of any size. `output_size` may be changed between epochs (progressive resizing).
    With `dct_scaling` (default), a JPEG whose crop is at least twice the output size is decoded at a
    reduced scale; the result differs from a full-size decode by resampling detail only (the window
    moves by at most one source pixel). With `window_decoding` (default, where `ffcv.imaging.jpeg_window` works),
    only the crop's rows and columns of a JPEG are decoded: the same pixels as a full decode, cheaper.
    Subclasses implement `crop_windows(heights, widths, seeds)`.
    """
    needs_seeds = False

    def __init__(self, output_size: Tuple[int, int], *, dct_scaling: bool = True, window_decoding: bool = True):
        super().__init__()
        self.output_size = output_size
        self.dct_scaling = dct_scaling
        self.window_decoding = window_decoding
        self._scratch = threading.local()

    @property
    def get_crop_generator(self):
        """FFCV's crop function of this decoder (`get_random_crop` or `get_center_crop`), for FFCV code that
        asks for it; the decoder itself draws seeded windows (`crop_windows`)."""
        raise NotImplementedError(f'{type(self).__name__} has no crop function of its own')

    def declare_state_and_memory(self, previous_state):
        height, width = (int(s) for s in self.output_size)
        if height < 1 or width < 1:
            raise ValueError(f'output_size must be positive, got {self.output_size}')
        column = self.metadata
        self._max_pixels = int((column['height'].astype(np.int64) * column['width']).max()) if column.size else 0
        shape = (height, width, 3)
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=np.dtype('uint8')),
                AllocationQuery(shape, np.dtype('uint8')))

    def crop_windows(self, heights, widths, seeds) -> np.ndarray:
        raise NotImplementedError

    def _scratch_buffer(self) -> np.ndarray:
        buffer = getattr(self._scratch, 'buffer', None)
        if buffer is None or buffer.size < self._max_pixels * 3:
            buffer = self._scratch.buffer = np.empty(self._max_pixels * 3, np.uint8)
        return buffer

    def generate_code(self):
        dct_scaling, window_decoding = self.dct_scaling, self.window_decoding

        def decode(indices, destination, metadata, storage_state, seeds=None):
            windowed = window_decoding and jpeg_window.available()
            entries = metadata[indices]
            heights, widths = entries['height'].astype(np.int64), entries['width'].astype(np.int64)
            windows = self.crop_windows(heights, widths, seeds)
            memory, starts, sizes = batch_blobs(entries['data_ptr'], storage_state)
            out_h, out_w = destination.shape[1:3]
            # Python ints from here on: indexing NumPy scalars costs more than the arithmetic per image
            rows = zip(heights.tolist(), widths.tolist(), windows.tolist(), starts.tolist(), sizes.tolist(),
                       (entries['mode'] == RAW).tolist())
            scratch = None
            for i, (height, width, window, start, size, raw) in enumerate(rows):
                blob = memory[start:start + size]
                try:
                    if raw:
                        top, left, crop_h, crop_w = window
                        crop = blob.reshape(height, width, 3)[top:top + crop_h, left:left + crop_w]
                    else:
                        if scratch is None:
                            scratch = self._scratch_buffer()
                        crop = _jpeg_crop(blob, height, width, window, out_h, out_w, scratch, dct_scaling, windowed)
                    resize_area_into(crop, destination[i])
                except Exception as exc:
                    raise annotate(exc, f'while decoding the image of sample {int(indices[i])}')
            return destination
        decode.python_code = True
        decode.with_seeds = self.needs_seeds
        return decode


class RandomResizedCropRGBImageDecoder(ResizedCropRGBImageDecoder):
    """Decode a random crop of each image (torchvision's RandomResizedCrop rule) resized to `output_size`.

    Parameters
    ----------
    output_size : (int, int)
        Output (height, width).
    scale : (float, float)
        Range of the crop's area as a fraction of the image's.
    ratio : (float, float)
        Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    """
    needs_seeds = True

    def __init__(self, output_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), *, dct_scaling: bool = True,
                 window_decoding: bool = True):
        super().__init__(output_size, dct_scaling=dct_scaling, window_decoding=window_decoding)
        self.scale = scale
        self.ratio = ratio

    @property
    def get_crop_generator(self):
        from ._ffcv_crops import get_random_crop
        return get_random_crop

    def crop_windows(self, heights, widths, seeds):
        out = np.empty((heights.shape[0], 4), np.int64)
        return run_kernel(random_resized_crop_windows, heights, widths, seeds, float(self.scale[0]),
                          float(self.scale[1]), float(np.log(self.ratio[0])), float(np.log(self.ratio[1])), out)


class CenterCropRGBImageDecoder(ResizedCropRGBImageDecoder):
    """Decode the central square of side ``ratio * min(H, W)`` of each image, resized to `output_size`.

    ``ratio=224/256`` is the usual ImageNet validation crop.
    """

    def __init__(self, output_size, ratio: float, *, dct_scaling: bool = True, window_decoding: bool = True):
        super().__init__(output_size, dct_scaling=dct_scaling, window_decoding=window_decoding)
        self.ratio = ratio

    @property
    def get_crop_generator(self):
        from ._ffcv_crops import get_center_crop
        return get_center_crop

    def crop_windows(self, heights, widths, seeds):
        return center_crop_windows(heights, widths, self.ratio)
