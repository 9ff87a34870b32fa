"""Boundary and torch-side operations: ToTensor, ToDevice, ToTorchImage, Convert, View."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.operation import Operation
from ..pipeline.state import State


def _python(fn):
    fn.python_code = True
    return fn


def numpy_dtype_of(dtype) -> np.dtype:
    """NumPy dtype matching a torch (or NumPy) dtype."""
    if isinstance(dtype, torch.dtype):
        return torch.empty(0, dtype=dtype).numpy().dtype
    return np.dtype(dtype)


def torch_dtype_of(dtype) -> torch.dtype:
    """torch dtype matching a NumPy (or torch) dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.from_numpy(np.zeros(0, dtype=np.dtype(dtype))).dtype


class ToTensor(Operation):
    """NumPy batch -> torch tensor sharing its memory (zero copy; pinned buffers stay pinned).

    Input: a NumPy batch (JIT stage). Output: a CPU torch tensor; only torch operations may follow.
    """

    def declare_state_and_memory(self, previous_state: State):
        if not previous_state.jit_mode:
            raise ValueError('receives a torch tensor already; ToTensor() is needed only once, after the '
                             'NumPy operations')
        return replace(previous_state, jit_mode=False, dtype=torch_dtype_of(previous_state.dtype)), None

    def generate_code(self):
        return _python(lambda batch, destination: torch.from_numpy(batch))


class ToDevice(Operation):
    """Copy the batch to `device` into a buffer reused every few batches (asynchronous from pinned memory).

    Parameters
    ----------
    device : torch.device, str or int
    non_blocking : bool
        Use an asynchronous copy (the loader orders it before the consumer's use of the batch).
    """

    def __init__(self, device, non_blocking: bool = True):
        super().__init__()
        self.device = torch.device(f'cuda:{device}' if isinstance(device, int) else device)
        self.non_blocking = non_blocking

    def declare_state_and_memory(self, previous_state: State):
        if previous_state.jit_mode:
            raise ValueError('receives a NumPy array; insert ToTensor() before ToDevice()')
        if previous_state.shape is None:
            raise ValueError('receives data of unknown shape')
        return (replace(previous_state, device=self.device),
                AllocationQuery(previous_state.shape, previous_state.dtype, self.device))

    def generate_code(self):
        non_blocking = self.non_blocking

        def to_device(batch, destination):
            destination = destination[:batch.shape[0]]
            if batch.dim() == 4 and not batch.is_contiguous() and batch.is_contiguous(
                    memory_format=torch.channels_last):
                # keep the channels-last layout: copy into the same strides
                destination = destination.view(batch.shape[0], batch.shape[2], batch.shape[3],
                                               batch.shape[1]).permute(0, 3, 1, 2)
            destination.copy_(batch, non_blocking=non_blocking)
            return destination
        return _python(to_device)

    def __repr__(self):
        return f'ToDevice({self.device})'


class ToTorchImage(Operation):
    """(B, H, W, C) tensor -> (B, C, H, W).

    With ``channels_last=True`` (default) this is a free permuted view whose memory is channels-last
    (what convolutions on GPU prefer); otherwise a contiguous copy. With ``convert_back_int16``, int16
    data (what the CPU `NormalizeImage` emits for float16) is reinterpreted as float16.
    """

    def __init__(self, channels_last: bool = True, convert_back_int16: bool = True):
        super().__init__()
        self.channels_last = channels_last
        self.convert_back_int16 = convert_back_int16

    def declare_state_and_memory(self, previous_state: State):
        if previous_state.jit_mode:
            raise ValueError('receives a NumPy array; insert ToTensor() before ToTorchImage()')
        if previous_state.shape is None or len(previous_state.shape) != 3:
            raise ValueError(f'expects images of shape (H, W, C), got per-sample shape {previous_state.shape}')
        height, width, channels = previous_state.shape
        dtype = previous_state.dtype
        if self.convert_back_int16 and dtype == torch.int16:
            dtype = torch.float16
        state = replace(previous_state, shape=(channels, height, width), dtype=dtype)
        if self.channels_last:
            return state, None
        return state, AllocationQuery((channels, height, width), dtype, previous_state.device)

    def generate_code(self):
        channels_last, convert = self.channels_last, self.convert_back_int16

        def to_torch_image(batch, destination):
            if convert and batch.dtype == torch.int16:
                batch = batch.view(torch.float16)
            batch = batch.permute(0, 3, 1, 2)  # (B,H,W,C) -> (B,C,H,W), a view
            if channels_last:
                return batch
            destination = destination[:batch.shape[0]]
            destination.copy_(batch)
            return destination
        return _python(to_torch_image)


class Convert(Operation):
    """Cast the batch to `target_dtype` (torch tensors, or NumPy arrays before ToTensor)."""

    def __init__(self, target_dtype):
        super().__init__()
        self.target_dtype = target_dtype

    def declare_state_and_memory(self, previous_state: State):
        if previous_state.jit_mode and isinstance(self.target_dtype, torch.dtype):
            raise ValueError(f'receives a NumPy array but converts to torch dtype {self.target_dtype}; '
                             'insert ToTensor() before it or pass a NumPy dtype')
        dtype = np.dtype(self.target_dtype) if previous_state.jit_mode else torch_dtype_of(self.target_dtype)
        return replace(previous_state, dtype=dtype), None

    def generate_code(self):
        target = self.target_dtype
        if not isinstance(target, torch.dtype):
            target_torch = torch_dtype_of(target)

        else:
            target_torch = target

        def convert(batch, destination):
            if isinstance(batch, torch.Tensor):
                return batch.to(target_torch)
            return batch.astype(target)
        return _python(convert)

    def __repr__(self):
        return f'Convert({self.target_dtype})'


class View(Operation):
    """Reinterpret the bits of the batch as `target_dtype` (same item size), without a copy.

    A NumPy batch stays a NumPy array (``ndarray.view``: e.g. the int16 bits of the CPU `NormalizeImage`
    as float16, before ToTensor()); a torch batch stays a tensor (``Tensor.view``). `target_dtype` may be
    a NumPy or a torch dtype either way.
    """

    def __init__(self, target_dtype):
        super().__init__()
        self.target_dtype = target_dtype

    def declare_state_and_memory(self, previous_state: State):
        if previous_state.jit_mode:
            return replace(previous_state, dtype=numpy_dtype_of(self.target_dtype)), None
        return replace(previous_state, dtype=torch_dtype_of(self.target_dtype)), None

    def generate_code(self):
        numpy_target, torch_target = numpy_dtype_of(self.target_dtype), torch_dtype_of(self.target_dtype)

        def view(batch, destination):
            if isinstance(batch, np.ndarray):
                return batch.view(numpy_target)
            return batch.view(torch_target)
        return _python(view)
