"""`NDArrayField` and `TorchTensorField`: arrays of one dtype per sample, of a fixed shape or with a
variable first dimension (``shape=(None, 4)``: a list of boxes; ``(None,)``: a token sequence)."""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from typing import Optional, Tuple, Type

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

# A variable-length field (first dimension None) stores (pointer, number of rows) per sample. FFCV 1.0.2
# has no such field: its descriptor keeps NDArrayField's type id (4) but the dtype JSON FFCV parses is
# `VARIABLE_MARKER`, which numpy rejects with this very text ("data type '...' not understood"); the real
# dtype follows the ndim byte as `VARIABLE_TAG`, a u8 length and its own JSON descr.
VARIABLE_METADATA = np.dtype([('ptr', '<u8'), ('length', '<u8')])
VARIABLE_MARKER = ('ffcv-fast variable-length NDArrayField (first dimension None): FFCV 1.0.2 cannot read '
                   'this field; open the file with ffcv-fast')
VARIABLE_TAG = b'VARLEN1'


def _dtype_from_descr(descr) -> np.dtype:
    descr = [tuple(item) for item in descr]
    if len(descr) == 1 and descr[0][0] == '':
        return np.dtype(descr[0][1])
    return np.dtype(descr)


class NDArrayField(Field):
    """A numpy array of one `dtype` per sample, stored C-ordered.

    A fixed-shape field takes numpy arrays of exactly that shape and dtype (no silent casting). A
    variable-length one takes numpy arrays of exactly the dtype, or (nested) lists / tuples of numbers,
    converted when nothing is lost (Python floats to a float32 field are rounded, as any float32 cast).

    Parameters
    ----------
    dtype : numpy dtype
    shape : tuple
        Shape of every sample, e.g. ``(3, 32)``; or with ``None`` as first dimension, e.g. ``(None, 4)``, for
        samples with any number of rows (0 included) of shape ``shape[1:]``. A variable-length field is
        decoded by `PaddedNDArrayDecoder` (padded batch + lengths, the default) or `NDArrayListDecoder` (a
        list); FFCV 1.0.2 cannot read a file holding one (it fails naming this field type).
    """

    def __init__(self, dtype: np.dtype, shape: Tuple[Optional[int], ...]):
        self.dtype = np.dtype(dtype)
        shape = tuple(shape)
        self.variable = bool(shape) and shape[0] is None
        if any(s is None for s in shape[1:]):
            raise ValueError(f'only the first dimension may be None (variable), got shape {shape}')
        self.shape = (None, *(int(s) for s in shape[1:])) if self.variable else tuple(int(s) for s in shape)
        if len(self.shape) > MAX_DIMS:
            raise ValueError(f'at most {MAX_DIMS} dimensions, got shape {self.shape}')
        if any(s is not None and s < 0 for s in self.shape):
            raise ValueError(f'negative dimension in shape {self.shape}')
        if self.dtype.hasobject:
            raise ValueError(f'dtype {self.dtype} holds Python objects and cannot be stored')
        if self.dtype == np.uint16:
            warnings.warn('torch has limited uint16 support; ToTensor() on this field may fail',
                          stacklevel=2)
        self.row_shape = self.shape[1:] if self.variable else self.shape  # one row of a variable field
        self.row_size = int(self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64)))
        # bytes per sample (fixed shape); for a variable field, per row
        self.element_size = self.row_size

    @property
    def metadata_type(self) -> np.dtype:
        return VARIABLE_METADATA if self.variable else np.dtype('<u8')

    @staticmethod
    def from_binary(binary) -> Field:
        binary = np.asarray(binary, dtype=np.uint8).reshape(-1)
        header = binary[:NDArrayArgsType.itemsize].view(NDArrayArgsType)[0]
        type_length = int(header['type_length'])
        start = NDArrayArgsType.itemsize
        if type_length <= 0 or start + type_length > binary.size:
            raise ValueError(f'NDArrayField arguments are corrupt (dtype length {type_length})')
        descr = json.loads(binary[start:start + type_length].tobytes().decode('ascii'))
        shape = [int(s) for s in header['shape']]
        extra = start + type_length
        ndim_plus_one = int(binary[extra]) if extra < binary.size else 0
        if ndim_plus_one:
            shape = shape[:ndim_plus_one - 1]
        else:  # written by FFCV: trailing zeros are unused slots
            while shape and shape[-1] == 0:
                shape.pop()
        if descr == [['', VARIABLE_MARKER]]:
            return NDArrayField(_variable_dtype(binary, extra + 1), (None, *shape[1:]))
        return NDArrayField(_dtype_from_descr(descr), tuple(shape))

    def to_binary(self):
        result = np.zeros(1, dtype=ARG_TYPE)[0]
        header = np.zeros(1, dtype=NDArrayArgsType)
        header['shape'][0, :len(self.shape)] = [0 if s is None else s for s in self.shape]
        real = json.dumps(self.dtype.descr).encode('ascii')
        encoded = json.dumps([['', VARIABLE_MARKER]]).encode('ascii') if self.variable else real
        header['type_length'] = len(encoded)
        parts = [header.view(np.uint8), np.frombuffer(encoded, np.uint8), np.array([len(self.shape) + 1], np.uint8)]
        if self.variable:
            parts += [np.frombuffer(VARIABLE_TAG, np.uint8), np.array([len(real)], '<u8').view(np.uint8),
                      np.frombuffer(real, np.uint8)]
        blob = np.concatenate(parts)
        if blob.size > ARG_TYPE.itemsize:
            raise ValueError(f'dtype {self.dtype} is too complex to describe in 1024 bytes')
        result[0][:blob.size] = blob
        return result

    def _check(self, value) -> np.ndarray:
        if self.variable:
            return self._check_variable(value)
        if isinstance(value, np.generic):  # numpy scalar, for shape ()
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            raise TypeError(f'expected a numpy array of shape {self.shape} and dtype {self.dtype}, '
                            f'got {type(value).__name__}')
        if value.shape != self.shape or value.dtype != self.dtype:
            raise ValueError(f'expected shape {self.shape} and dtype {self.dtype}, '
                             f'got shape {value.shape} and dtype {value.dtype}')
        return value

    def _check_variable(self, value) -> np.ndarray:
        """An array of (n, *row_shape) and the field's dtype from an array or (nested) lists."""
        wanted = 'shape ' + str(('n', *self.row_shape)).replace("'", '')
        if isinstance(value, (list, tuple)):
            value = _array_from_list(value, self.dtype, self.row_shape)
        elif not isinstance(value, np.ndarray):
            raise TypeError(f'expected a numpy array or a list of {wanted} and dtype {self.dtype}, '
                            f'got {type(value).__name__}')
        elif value.dtype != self.dtype:
            raise ValueError(f'expected dtype {self.dtype}, got dtype {value.dtype} (no silent casting: '
                             f'pass value.astype(np.{self.dtype.name}) if that is what you mean)')
        if value.ndim != len(self.shape) or value.shape[1:] != self.row_shape:
            raise ValueError(f'expected {wanted}, got shape {value.shape}')
        return value

    def encode(self, destination, field, malloc):
        value = np.ascontiguousarray(self._check(field))
        if self.variable:
            entry = destination[0]
            entry['ptr'], buffer = malloc(value.nbytes)
            entry['length'] = value.shape[0]
            destination[0] = entry
        else:
            destination[0], buffer = malloc(self.element_size)
        buffer[:] = value.reshape(-1).view(np.uint8)

    def get_decoder_class(self) -> Type:
        if self.variable:
            from .ragged import PaddedNDArrayDecoder
            return PaddedNDArrayDecoder
        return NDArrayDecoder

    def read_value(self, metadata, read):
        if self.variable:
            length = int(metadata['length'])
            data = read(int(metadata['ptr']), length * self.row_size)
            return np.array(data.view(self.dtype).reshape(length, *self.row_shape))
        data = read(int(metadata), self.element_size)
        return np.array(data.view(self.dtype).reshape(self.shape))

    def heap_pointers(self, column):
        if self.variable:
            return column['ptr'], column['length'] * np.uint64(self.row_size), None
        return column, np.full(column.shape, self.element_size, dtype=np.uint64), None

    def ragged_layout(self):
        """(pointer column, rows column, row shape, dtype) of a variable-length field, for ragged decoders."""
        if not self.variable:
            raise TypeError(f'{self.describe()} has a fixed shape; decode it with NDArrayDecoder (ragged '
                            'decoders need shape=(None, ...))')
        return 'ptr', 'length', self.row_shape, self.dtype

    def describe(self) -> str:
        return f'{type(self).__name__}({self.dtype}, {self.shape})'


def _variable_dtype(binary: np.ndarray, at: int) -> np.dtype:
    """The real dtype stored after the ndim byte of a variable-length field's arguments."""
    end = at + len(VARIABLE_TAG) + 8
    if binary[at:at + len(VARIABLE_TAG)].tobytes() != VARIABLE_TAG or end > binary.size:
        raise ValueError('variable-length NDArrayField arguments are corrupt (no dtype record)')
    length = int(binary[end - 8:end].view('<u8')[0])
    if end + length > binary.size:
        raise ValueError(f'variable-length NDArrayField arguments are corrupt (dtype length {length})')
    return _dtype_from_descr(json.loads(binary[end:end + length].tobytes().decode('ascii')))


def _array_from_list(value, dtype: np.dtype, row_shape: Tuple[int, ...]) -> np.ndarray:
    """A (nested) list of numbers as an array of `dtype`; ValueError when ragged or when casting loses values."""
    if len(value) == 0:
        return np.zeros((0, *row_shape), dtype)
    try:
        raw = np.asarray(value)
    except ValueError:
        raise ValueError('the nested lists are ragged (rows of different lengths); every row must have shape '
                         f'{row_shape}') from None
    if raw.dtype.kind not in 'biuf' or dtype.kind not in 'biuf':
        raise TypeError(f'a list of {raw.dtype} values cannot be stored as {dtype}')
    with np.errstate(invalid='ignore', over='ignore'):
        cast = raw.astype(dtype)
    if dtype.kind != 'f' or raw.dtype.kind != 'f':  # float -> float rounds; anything else must be exact
        lossy = np.flatnonzero((cast != raw).reshape(-1))
        if lossy.size:
            raise ValueError(f'value {raw.reshape(-1)[lossy[0]].item()!r} cannot be stored as {dtype} without '
                             'changing it')
    return cast


class TorchTensorField(NDArrayField):
    """A torch tensor of one fixed `shape` and `dtype` per sample (stored like `NDArrayField`)."""

    def __init__(self, dtype, shape: Tuple[int, ...]):
        import torch
        self.torch_dtype = dtype
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        if any(s is None for s in shape):
            raise ValueError(f'TorchTensorField needs a fixed shape, got {tuple(shape)}; store variable-length '
                             f'data with NDArrayField({np_dtype}, (None, ...))')
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
        if getattr(self.field, 'variable', False):
            raise TypeError(f'{self.field.describe()} holds samples of different lengths; decode it with '
                            'PaddedNDArrayDecoder() (padded batch + lengths) or NDArrayListDecoder() (a list)')
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
        decode.per_sample = True
        return decode
