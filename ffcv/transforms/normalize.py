"""`NormalizeImage`: uint8 images -> (v - mean) / std per channel in a float dtype, through a lookup table.

Two paths, picked from the input state:

* NumPy (before ToTensor, JIT stage): a compiled per-pixel lookup. numba has no float16, so for float16
  the table holds the float16 *bits* as int16 and the output is int16 (as FFCV does);
  ``ToTorchImage(convert_back_int16=True)`` reinterprets it as float16 at no cost.
* torch (after ToTorchImage, input (B, C, H, W) uint8 on any device): on CUDA, plain torch indexing
  into the table on the GPU (no cupy); on the CPU, the same compiled kernel on the tensor's memory.
  The output is a channels-last (B, C, H, W) tensor of the requested dtype (float16 stays float16).
"""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np
import torch

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from .ops import torch_dtype_of

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401


def ch_dtype_from_numpy(dtype) -> torch.dtype:
    """torch dtype matching a NumPy dtype (FFCV's name for `ffcv.transforms.ops.torch_dtype_of`)."""
    return torch_dtype_of(dtype)


def lookup_table(mean, std, dtype) -> np.ndarray:
    """(256, C) table of (v - mean[c]) / std[c] for v in 0..255, computed in float64, stored in `dtype`
    (float16 stored as its int16 bit pattern)."""
    mean = np.asarray(mean, np.float64).reshape(-1)
    std = np.asarray(std, np.float64).reshape(-1)
    table = ((np.arange(256, dtype=np.float64)[:, None] - mean[None, :]) / std[None, :]).astype(dtype)
    return table.view(np.int16) if np.dtype(dtype) == np.float16 else table


@numba.njit(nogil=True, cache=True)
def normalize_kernel(images, tables, destination):
    """destination[i, p, c] = tables[c, images[i, p, c]] for (B, P, C) uint8 pixels and (C, 256) tables
    (one contiguous table per channel: about 25% faster than indexing a (256, C) table)."""
    channels = images.shape[2]
    for i in range(images.shape[0]):
        if channels == 3:  # unrolled: about twice as fast as the generic loop
            for p in range(images.shape[1]):
                destination[i, p, 0] = tables[0, images[i, p, 0]]
                destination[i, p, 1] = tables[1, images[i, p, 1]]
                destination[i, p, 2] = tables[2, images[i, p, 2]]
        else:
            for p in range(images.shape[1]):
                for c in range(channels):
                    destination[i, p, c] = tables[c, images[i, p, c]]
    return destination


def normalize_torch(images: torch.Tensor, table: torch.Tensor, destination: torch.Tensor,
                    chunk_elements: int = 1 << 23) -> torch.Tensor:
    """Lookup with torch ops on the images' device, a few images at a time (the int64 index tensor
    of a chunk is at most `chunk_elements` long, so a 512-image batch needs no gigabyte temporaries).

    images: (B, C, H, W) uint8, any strides; table: (256, C) in the output dtype, same device;
    destination: contiguous buffer of B * C * H * W elements. Returns (B, C, H, W), channels-last memory.
    """
    count, channels, height, width = images.shape
    pixels = images.permute(0, 2, 3, 1)  # (B,C,H,W) -> (B,H,W,C), a view
    out = destination.reshape(-1)[:images.numel()].view(count, height, width, channels)
    flat_table = table.reshape(-1)
    offsets = torch.arange(channels, device=images.device)
    step = max(1, chunk_elements // max(1, channels * height * width))
    for start in range(0, count, step):
        index = pixels[start:start + step].long()
        index.mul_(channels).add_(offsets)  # table row v, column c -> flat position 3 v + c
        torch.index_select(flat_table, 0, index.reshape(-1), out=out[start:start + step].reshape(-1))
    return out.permute(0, 3, 1, 2)  # channels-last (B,C,H,W)


class NormalizeImage(Operation):
    """Normalise uint8 images per channel and convert them to a float dtype.

    Input:  uint8 NumPy batch (B, H, W, C) before ToTensor(), or uint8 torch batch (B, C, H, W) after
            ToTorchImage() (CPU or CUDA), with C == len(mean).
    Output: NumPy input: (B, H, W, C) of `type` (int16 bits for float16, see the module docstring), new buffer.
            torch input: channels-last (B, C, H, W) of the torch dtype matching `type`, new buffer.

    Parameters
    ----------
    mean, std : array of C floats
        On the 0-255 scale (e.g. ImageNet: 255 * [0.485, 0.456, 0.406] and 255 * [0.229, 0.224, 0.225]).
    type : numpy float dtype
        np.float16, np.float32 or np.float64.
    """

    def __init__(self, mean, std, type):
        super().__init__()
        self.mean = np.asarray(mean, np.float64).reshape(-1)
        self.std = np.asarray(std, np.float64).reshape(-1)
        self.original_dtype = np.dtype(type)
        if self.original_dtype.kind != 'f':
            raise ValueError(f'NormalizeImage: type must be a float dtype (np.float16 or np.float32), got {type}')
        if self.mean.shape != self.std.shape or (self.std == 0).any():
            raise ValueError('NormalizeImage: mean and std need one value per channel and std must be non-zero, '
                             f'got mean {self.mean.tolist()} and std {self.std.tolist()}')
        self.lookup_table = lookup_table(self.mean, self.std, self.original_dtype)
        self.dtype = self.lookup_table.dtype  # what the NumPy path emits (int16 for float16)
        self.mode = 'cpu'

    def declare_state_and_memory(self, previous_state):
        channels = self.mean.shape[0]
        shape, dtype = previous_state.shape, previous_state.dtype
        if previous_state.jit_mode:
            self.mode = 'cpu'
            if shape is None or len(shape) != 3 or shape[2] != channels or np.dtype(dtype) != np.uint8:
                raise ValueError(f'NormalizeImage expects uint8 (H, W, {channels}) images before ToTensor(), got '
                                 f'per-sample shape {shape} and dtype {dtype}; place it right after the decoder '
                                 'and the uint8 augmentations')
            return replace(previous_state, dtype=self.dtype), AllocationQuery(shape, self.dtype)
        self.mode = 'torch'
        if shape is None or len(shape) != 3 or shape[0] != channels or dtype != torch.uint8:
            raise ValueError(f'NormalizeImage expects uint8 (C, H, W) torch images with C = {channels}, got '
                             f'per-sample shape {shape} and dtype {dtype}; place it after ToTorchImage() (or '
                             'before ToTensor())')
        self._device = torch.device(previous_state.device)
        output_dtype = torch_dtype_of(self.original_dtype)
        return (replace(previous_state, dtype=output_dtype),
                AllocationQuery(shape, output_dtype, self._device))

    def generate_code(self):
        return self.generate_code_cpu() if self.mode == 'cpu' else self.generate_code_gpu()

    def generate_code_cpu(self):
        """The NumPy path (before ToTensor): the compiled lookup over the batch."""
        tables = np.ascontiguousarray(self.lookup_table.T)  # (C, 256): the compiled kernel's layout

        def normalize(images, destination):
            pixels = images.reshape(images.shape[0], -1, images.shape[-1])
            run_kernel(normalize_kernel, pixels, tables, destination.reshape(pixels.shape))
            return destination
        normalize.python_code = True
        return normalize

    def generate_code_gpu(self):
        """The torch path (after ToTorchImage, FFCV's 'gpu' mode): torch ops on a CUDA device, the compiled
        lookup on a CPU tensor's memory."""
        table = self.lookup_table
        tables = np.ascontiguousarray(table.T)
        if self._device.type == 'cpu':
            def normalize(images, destination):  # the compiled kernel on the tensors' memory
                count, channels, height, width = images.shape
                pixels = images.permute(0, 2, 3, 1).numpy().reshape(count, -1, channels)  # copies if not channels-last
                out = destination.reshape(-1)[:pixels.size].view(count, height, width, channels)
                bits = out.view(torch.int16) if out.dtype == torch.float16 else out
                run_kernel(normalize_kernel, pixels, tables, bits.numpy().reshape(pixels.shape))
                return out.permute(0, 3, 1, 2)  # (B,H,W,C) memory -> channels-last (B,C,H,W)
        else:
            device_table = torch.from_numpy(table).to(self._device).view(torch_dtype_of(self.original_dtype))

            def normalize(images, destination):
                return normalize_torch(images, device_table, destination)
        normalize.python_code = True
        return normalize

    def __repr__(self):
        return f'NormalizeImage(mean={self.mean.tolist()}, std={self.std.tolist()}, type={self.original_dtype})'
