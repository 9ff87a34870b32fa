"""`NDArrayField` and `TorchTensorField`: fixed-shape, fixed-dtype arrays per sample."""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from typing import Tuple, Type

import numpy as np

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.operation import Operation
from ..pipeline.compiler import run_kernel
from ._decoding import NO_SIZES, copy_blobs
from .base import ARG_TYPE, Field

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401
from .._lazy import lazy_attributes

# FFCV 1.0.2 also exposes `memcpy` here (loaded on first use: it loads ffcv.libffcv).
__getattr__ = lazy_attributes(__name__, {'memcpy': 'ffcv.libffcv'})

# Argument blob: 32 shape slots (unused trailing ones 0), the length of the dtype JSON, the JSON
# itself (`dtype.descr`), as FFCV writes it. We add one byte after the JSON: ndim + 1, so that shapes
# with zero-sized dimensions survive (FFCV ignores bytes past the JSON and drops trailing zeros).
NDArrayArgsType = np.dtype([('shape', '<u8', 32), ('type_length', '<u8')])
MAX_DIMS = 32


def _dtype_from_descr(descr) -> np.dtype:
    descr = [tuple(item) for item in descr]
    if len(descr) == 1 and descr[0][0] == '':
        return np.dtype(descr[0][1])
    return np.dtype(descr)


class NDArrayField(Field):
    """A numpy array of one fixed `shape` and `dtype` per sample, stored C-ordered.

    Every value must have exactly that shape and dtype (no silent casting).
    """

    def __init__(self, dtype: np.dtype, shape: Tuple[int, ...]):
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) > MAX_DIMS:
            raise ValueError(f'at most {MAX_DIMS} dimensions, got shape {self.shape}')
        if any(s < 0 for s in self.shape):
            raise ValueError(f'negative dimension in shape {self.shape}')
        if self.dtype.hasobject:
            raise ValueError(f'dtype {self.dtype} holds Python objects and cannot be stored')
        if self.dtype == np.uint16:
            warnings.warn('torch has limited uint16 support; ToTensor() on this field may fail',
                          stacklevel=2)
        self.element_size = int(self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64)))

    @property
    def metadata_type(self) -> np.dtype:
        return np.dtype('<u8')

    @staticmethod
    def from_binary(binary) -> Field:
        binary = np.asarray(binary, dtype=np.uint8).reshape(-1)
        header = binary[:NDArrayArgsType.itemsize].view(NDArrayArgsType)[0]
        type_length = int(header['type_length'])
        start = NDArrayArgsType.itemsize
        if type_length <= 0 or start + type_length > binary.size:
            raise ValueError(f'NDArrayField arguments are corrupt (dtype length {type_length})')
        dtype = _dtype_from_descr(json.loads(binary[start:start + type_length].tobytes().decode('ascii')))
        shape = [int(s) for s in header['shape']]
        extra = start + type_length
        ndim_plus_one = int(binary[extra]) if extra < binary.size else 0
        if ndim_plus_one:
            shape = shape[:ndim_plus_one - 1]
        else:  # written by FFCV: trailing zeros are unused slots
            while shape and shape[-1] == 0:
                shape.pop()
        return NDArrayField(dtype, tuple(shape))

    def to_binary(self):
        result = np.zeros(1, dtype=ARG_TYPE)[0]
        header = np.zeros(1, dtype=NDArrayArgsType)
        header['shape'][0, :len(self.shape)] = self.shape
        encoded = json.dumps(self.dtype.descr).encode('ascii')
        header['type_length'] = len(encoded)
        blob = np.concatenate([header.view(np.uint8), np.frombuffer(encoded, np.uint8),
                               np.array([len(self.shape) + 1], np.uint8)])
        if blob.size > ARG_TYPE.itemsize:
            raise ValueError(f'dtype {self.dtype} is too complex to describe in 1024 bytes')
        result[0][:blob.size] = blob
        return result

    def _check(self, value) -> np.ndarray:
        if isinstance(value, np.generic):  # numpy scalar, for shape ()
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            raise TypeError(f'expected a numpy array of shape {self.shape} and dtype {self.dtype}, '
                            f'got {type(value).__name__}')
        if value.shape != self.shape or value.dtype != self.dtype:
            raise ValueError(f'expected shape {self.shape} and dtype {self.dtype}, '
                             f'got shape {value.shape} and dtype {value.dtype}')
        return value

    def encode(self, destination, field, malloc):
        value = np.ascontiguousarray(self._check(field))
        destination[0], buffer = malloc(self.element_size)
        buffer[:] = value.reshape(-1).view(np.uint8)

    def get_decoder_class(self) -> Type:
        return NDArrayDecoder

    def read_value(self, metadata, read):
        data = read(int(metadata), self.element_size)
        return np.array(data.view(self.dtype).reshape(self.shape))

    def heap_pointers(self, column):
        return column, np.full(column.shape, self.element_size, dtype=np.uint64), None

    def describe(self) -> str:
        return f'{type(self).__name__}({self.dtype}, {self.shape})'


class TorchTensorField(NDArrayField):
    """A torch tensor of one fixed `shape` and `dtype` per sample (stored like `NDArrayField`)."""

    def __init__(self, dtype, shape: Tuple[int, ...]):
        import torch
        self.torch_dtype = dtype
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        super().__init__(np_dtype, shape)

    def _check(self, value) -> np.ndarray:
        import torch
        if not isinstance(value, torch.Tensor):
            raise TypeError(f'expected a torch tensor of shape {self.shape} and dtype {self.torch_dtype}, '
                            f'got {type(value).__name__}')
        if tuple(value.shape) != self.shape or value.dtype != self.torch_dtype:
            raise ValueError(f'expected shape {self.shape} and dtype {self.torch_dtype}, '
                             f'got shape {tuple(value.shape)} and dtype {value.dtype}')
        return value.detach().cpu().numpy()


class NDArrayDecoder(Operation):
    """Decoder of `NDArrayField` / `TorchTensorField`: (B, *shape) arrays of the field's dtype."""

    def declare_state_and_memory(self, previous_state):
        return (replace(previous_state, jit_mode=True, shape=self.field.shape, dtype=self.field.dtype),
                AllocationQuery(self.field.shape, self.field.dtype))

    def generate_code(self):
        element_size = self.field.element_size

        def decode(indices, destination, metadata, storage_state):
            if element_size:
                flat = destination.reshape(destination.shape[0], -1).view(np.uint8)
                run_kernel(copy_blobs, indices, metadata, NO_SIZES, storage_state, flat, False)
            return destination
        decode.python_code = True
        return decode
