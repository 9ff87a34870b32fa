"""`PackedRGBImageDecoder`: a batch of images of different sizes, whole, without resizing.

For detection and segmentation, where each image keeps its own size. The batch's images are decoded back
to back into one flat uint8 buffer (no padding) and come with their (height, width); the torch-side step
`ffcv.transforms.ragged.ToImageList` turns that pair into the list of (3, H, W) tensors that torchvision's
detection models take (optionally on the GPU, in one copy, and as float in [0, 1]).
"""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np
import torch

from ..imaging import jpeg
from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ._decoding import BlobReads, annotate, batch_blobs
from .image_decoders import IMAGE_MODES, SimpleRGBImageDecoder

RAW = IMAGE_MODES['raw']


@numba.njit(nogil=True, cache=True)
def copy_raw_images(memory, starts, offsets, sizes, raw, packed):
    """packed[offsets[i]:offsets[i] + sizes[i]] = memory[starts[i]:...] for each raw image i."""
    for i in range(starts.shape[0]):
        if raw[i]:
            packed[offsets[i]:offsets[i] + sizes[i]] = memory[starts[i]:starts[i] + sizes[i]]
    return packed


class PackedRGBImageDecoder(SimpleRGBImageDecoder):
    """Decoder of `RGBImageField` for images of any sizes: every image whole, packed back to back.

    Output (torch tensors on the CPU; no ``ToTensor()`` needed): ``(packed, shapes)``, packed a 1-D uint8
    tensor holding image i, (H_i, W_i, 3) C-ordered, at offset ``sum_{j<i} 3 * H_j * W_j``; shapes a (B, 2)
    int64 tensor of (H_i, W_i). Follow it with ``ToImageList()`` for a list of (3, H, W) tensors.

    Pixels are those of `SimpleRGBImageDecoder`: raw images exact, JPEGs decoded by libjpeg-turbo (fast
    integer IDCT, smooth chroma upsampling). The buffer is sized for a batch of the file's largest image.
    """

    def declare_state_and_memory(self, previous_state):
        column = self.metadata
        largest = int((column['height'].astype(np.int64) * column['width'].astype(np.int64)).max()) if column.size \
            else 0
        state = replace(previous_state, jit_mode=False, device=torch.device('cpu'), shape=None, dtype=torch.uint8)
        return state, (AllocationQuery((3 * largest,), np.dtype('uint8')), AllocationQuery((2,), np.dtype('int64')))

    def generate_code(self):
        def decode(indices, destination, metadata, storage_state):
            data, shapes = destination
            packed = data.reshape(-1)
            entries = metadata[indices]
            shapes[:, 0] = entries['height']
            shapes[:, 1] = entries['width']
            sizes = 3 * shapes[:, 0] * shapes[:, 1]
            offsets = np.zeros_like(sizes)
            np.cumsum(sizes[:-1], out=offsets[1:])
            memory, starts, blob_sizes = batch_blobs(entries['data_ptr'], storage_state)
            raw = entries['mode'] == RAW
            if raw.any():
                run_kernel(copy_raw_images, memory, starts, offsets, sizes, raw, packed)
            jpegs = np.flatnonzero(~raw)
            reads = BlobReads(memory, starts[jpegs], blob_sizes[jpegs])
            for i in jpegs.tolist():
                height, width, offset = int(shapes[i, 0]), int(shapes[i, 1]), int(offsets[i])
                out = packed[offset:offset + 3 * height * width].reshape(height, width, 3)
                start = int(starts[i])
                try:
                    image = jpeg.decode_jpeg(reads.read(start, int(blob_sizes[i])), out=out)
                    if image.shape[:2] != (height, width):
                        raise jpeg.JPEGDecodeError(f'JPEG is {image.shape[1]}x{image.shape[0]} but the metadata '
                                                   f'says {width}x{height}')
                except Exception as exc:
                    raise annotate(exc, f'while decoding the image of sample {int(indices[i])}')
            total = int(offsets[-1] + sizes[-1]) if sizes.size else 0
            return torch.from_numpy(packed[:total]), torch.from_numpy(shapes)
        decode.python_code = True
        return decode

    def __repr__(self) -> str:
        return 'PackedRGBImageDecoder()'
