"""Decoders of `RGBImageField`: whole images, random resized crops and center crops.

They run as Python over the batch (one worker thread per batch); the heavy work, JPEG decoding
(libjpeg-turbo through simplejpeg) and resizing (INTER_AREA: OpenCV, or the same pixels from the compiled
`area_resize` where OpenCV is slow), happens in C or numba with the GIL released.
Raw images are copied by a compiled kernel. When a crop is at least twice the output size, JPEGs are
decoded at a reduced scale in the DCT domain (M/8), which is several times cheaper; and only the crop's
rows and columns are decoded (`ffcv.imaging.jpeg_window`, libjpeg-turbo's window decoding).
Several crop decoders of one field (views, e.g. DINO's global and local crops) share one decode per image
(the loader groups them; `ResizedCropRGBImageDecoder.generate_shared_code`). The per-image work is in
`ffcv.imaging.jpeg_crops`.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Sequence, Tuple

import numpy as np

from ..imaging import jpeg, jpeg_window
from ..imaging.area_resize import resize_area_into
from ..imaging.crop import center_crop_windows, random_resized_crop_windows
from ..imaging.jpeg_crops import check_decoded_size, decode_views, jpeg_crop
from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ._decoding import NO_SIZES, BlobReads, annotate, batch_blobs, copy_blobs
from .._lazy import lazy_attributes

IMAGE_MODES = {'jpg': 0, 'raw': 1}  # how RGBImageField stores each image: its metadata's `mode` byte

JPG, RAW = IMAGE_MODES['jpg'], IMAGE_MODES['raw']


def _size_range(column) -> str:
    heights, widths = column['height'], column['width']
    return f'{int(widths.min())}x{int(heights.min())} to {int(widths.max())}x{int(heights.max())} (WxH)'


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
                reads = BlobReads(memory, starts, sizes)
                for k, i in enumerate(jpegs):
                    try:
                        image = jpeg.decode_jpeg(reads.read(int(starts[k]), int(sizes[k])), out=destination[i])
                        check_decoded_size(image, destination.shape[1], destination.shape[2], False)
                    except Exception as exc:
                        raise annotate(exc, f'while decoding the image of sample {int(indices[i])}')
            return destination
        decode.python_code = True
        decode.per_sample = True
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
    Subclasses implement `crop_windows(heights, widths, seeds)` and may check their parameters in
    `check_parameters()` (run when the loader is built).

    Several outputs of one loader may decode the same field with these decoders (views, each with its own
    seeded windows): each image is then decoded once for all of them (`generate_shared_code`).
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
        self.check_parameters()
        column = self.metadata
        self._max_pixels = int((column['height'].astype(np.int64) * column['width']).max()) if column.size else 0
        shape = (height, width, 3)
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=np.dtype('uint8')),
                AllocationQuery(shape, np.dtype('uint8')))

    def crop_windows(self, heights, widths, seeds) -> np.ndarray:
        raise NotImplementedError

    def check_parameters(self) -> None:
        """Raise ValueError if the crop parameters cannot give a window inside the image."""

    def can_share_decode(self) -> bool:
        """Whether this decoder's images may come from a decode shared with other crop decoders of the same
        field: yes unless a subclass replaced the decoding itself (`generate_code`)."""
        return type(self).generate_code is ResizedCropRGBImageDecoder.generate_code

    @staticmethod
    def generate_shared_code(decoders: Sequence['ResizedCropRGBImageDecoder']):
        """One decode function for several crop decoders of one field (views):
        ``decode(indices, destinations, metadata, storage_state, seeds)`` fills ``destinations[v]`` (view v's
        (B, h_v, w_v, 3) buffer) with the crops of ``decoders[v]``, whose windows it draws from ``seeds[v]``
        (that view's per-sample seeds; None for an unseeded decoder), each image decoded once
        (`decode_views`)."""
        decoders = list(decoders)

        def decode(indices, destinations, metadata, storage_state, seeds):
            windowed = all(d.window_decoding for d in decoders) and jpeg_window.available()
            dct_scaling = [d.dct_scaling for d in decoders]
            entries = metadata[indices]
            heights, widths = entries['height'].astype(np.int64), entries['width'].astype(np.int64)
            windows = [d.crop_windows(heights, widths, s).tolist() for d, s in zip(decoders, seeds)]
            memory, starts, sizes = batch_blobs(entries['data_ptr'], storage_state)
            rows = zip(heights.tolist(), widths.tolist(), starts.tolist(), sizes.tolist(),
                       (entries['mode'] == RAW).tolist())
            scratch, reads = None, BlobReads(memory, starts, sizes)
            for i, (height, width, start, size, raw) in enumerate(rows):
                blob = reads.read(start, size)
                sample_windows = [view[i] for view in windows]
                outputs = [destination[i] for destination in destinations]
                try:
                    if raw:
                        image = blob.reshape(height, width, 3)
                        for (top, left, crop_h, crop_w), out in zip(sample_windows, outputs):
                            resize_area_into(image[top:top + crop_h, left:left + crop_w], out)
                    else:
                        if scratch is None:
                            scratch = decoders[0]._scratch_buffer()
                        decode_views(blob, height, width, sample_windows, outputs, dct_scaling, scratch, windowed)
                except Exception as exc:
                    raise annotate(exc, f'while decoding the image of sample {int(indices[i])}')
            return destinations
        decode.per_sample = all(d._windows_per_sample() for d in decoders)
        return decode

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
            scratch, reads = None, BlobReads(memory, starts, sizes)
            for i, (height, width, window, start, size, raw) in enumerate(rows):
                blob = reads.read(start, size)
                try:
                    if raw:
                        top, left, crop_h, crop_w = window
                        crop = blob.reshape(height, width, 3)[top:top + crop_h, left:left + crop_w]
                    else:
                        if scratch is None:
                            scratch = self._scratch_buffer()
                        crop = jpeg_crop(blob, height, width, window, out_h, out_w, scratch, dct_scaling, windowed)
                    resize_area_into(crop, destination[i])
                except Exception as exc:
                    raise annotate(exc, f'while decoding the image of sample {int(indices[i])}')
            return destination
        decode.python_code = True
        decode.with_seeds = self.needs_seeds
        decode.per_sample = self._windows_per_sample()
        return decode

    def _windows_per_sample(self) -> bool:
        """Whether each window depends on its own sample only: ours do; a subclass's may use the whole batch."""
        return type(self).crop_windows.__module__ == __name__


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

    def check_parameters(self) -> None:
        (low, high), (ratio_low, ratio_high) = self.scale, self.ratio
        if not 0 < low <= high <= 1:
            raise ValueError(f'scale={tuple(self.scale)} must satisfy 0 < min <= max <= 1 (fractions of the '
                             'image area: a larger crop would not fit in the image)')
        if not 0 < ratio_low <= ratio_high:
            raise ValueError(f'ratio={tuple(self.ratio)} must satisfy 0 < min <= max (width / height)')

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

    def check_parameters(self) -> None:
        if not 0 < self.ratio <= 1:
            raise ValueError(f'ratio={self.ratio} must be in (0, 1] (the crop side over the shorter image side: '
                             'a larger crop would not fit in the image)')

    def crop_windows(self, heights, widths, seeds):
        return center_crop_windows(heights, widths, self.ratio)
