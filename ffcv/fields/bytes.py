"""`BytesField`: a variable-length byte string per sample."""
from __future__ import annotations

from dataclasses import replace
from typing import Type

import numpy as np

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.operation import Operation
from ..pipeline.compiler import run_kernel
from ._decoding import copy_blobs
from .base import Field, empty_arguments

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401
from .base import ARG_TYPE  # noqa: F401
from .._lazy import lazy_attributes

# FFCV 1.0.2 also exposes `memcpy` here (loaded on first use: it loads ffcv.libffcv).
__getattr__ = lazy_attributes(__name__, {'memcpy': 'ffcv.libffcv'})

BYTES_METADATA = np.dtype([('ptr', '<u8'), ('size', '<u8')])


def as_byte_array(value) -> np.ndarray:
    """1-D uint8 array of bytes / bytearray / memoryview / a 1-D numeric array.

    A numeric array of another dtype is cast, as FFCV does, when that loses nothing (every value an
    integer in 0..255); otherwise ValueError. Anything else: TypeError.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(value, dtype=np.uint8)
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise TypeError(f'expected a 1-D array of bytes, got shape {value.shape}')
        if value.dtype == np.uint8:
            return value
        if value.dtype.kind not in 'biuf':
            raise TypeError(f'expected a 1-D array of bytes, got dtype {value.dtype}')
        with np.errstate(invalid='ignore', over='ignore'):  # NaN, negatives, > 255: found just below
            cast = value.astype(np.uint8)
        lossy = np.flatnonzero(cast != value)
        if lossy.size:
            raise ValueError(f'{value.dtype} array with value {value[lossy[0]].item()!r} at position {lossy[0]}, '
                             'which is not a byte (an integer in 0..255): storing it as bytes would change it')
        return cast
    raise TypeError(f'expected bytes or a 1-D uint8 numpy array, got {type(value).__name__}')


class BytesField(Field):
    """Arbitrary bytes per sample (each sample may have a different length, zero included).

    Decoded by `BytesDecoder` into rows of the longest length in the file; `PaddedBytesDecoder` gives the
    lengths with the rows (and a `max_length` of your choice), `BytesListDecoder` a list of blobs.
    """

    @property
    def metadata_type(self) -> np.dtype:
        return BYTES_METADATA

    @staticmethod
    def from_binary(binary) -> Field:
        return BytesField()

    def to_binary(self) -> np.ndarray:
        return empty_arguments()

    def encode(self, destination, field, malloc):
        data = as_byte_array(field)
        self._store(destination, data, malloc)

    @staticmethod
    def _store(destination, data: np.ndarray, malloc):
        entry = destination[0]
        entry['ptr'], buffer = malloc(data.size)
        entry['size'] = data.size
        buffer[:] = data
        destination[0] = entry

    def get_decoder_class(self) -> Type:
        return BytesDecoder

    def read_value(self, metadata, read):
        return np.array(read(int(metadata['ptr']), int(metadata['size'])))

    def heap_pointers(self, column):
        return column['ptr'], column['size'], None


class BytesDecoder(Operation):
    """Decoder of `BytesField` / `JSONField`: (B, L) uint8 rows, L = the longest blob in the file.

    Each row holds its blob followed by zeros (FFCV leaves stale bytes there); the blob's own length
    is in the metadata (``loader.reader.metadata``) when it matters.
    """

    def declare_state_and_memory(self, previous_state):
        sizes = self.metadata['size']
        max_size = int(sizes.max()) if sizes.size else 0
        return (replace(previous_state, jit_mode=True, shape=(max_size,), dtype=np.dtype('uint8')),
                AllocationQuery((max_size,), np.dtype('uint8')))

    def generate_code(self):
        def decode(indices, destination, metadata, storage_state):
            return run_kernel(copy_blobs, indices, metadata['ptr'], metadata['size'], storage_state, destination,
                              True)
        decode.python_code = True
        decode.per_sample = True
        return decode
