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

BYTES_METADATA = np.dtype([('ptr', '<u8'), ('size', '<u8')])


def as_byte_array(value) -> np.ndarray:
    """1-D uint8 view of bytes / bytearray / memoryview / 1-D uint8 array; TypeError otherwise."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(value, dtype=np.uint8)
    if isinstance(value, np.ndarray):
        if value.dtype != np.uint8 or value.ndim != 1:
            raise TypeError(f'expected a 1-D uint8 array, got dtype {value.dtype} and shape {value.shape}')
        return value
    raise TypeError(f'expected bytes or a 1-D uint8 numpy array, got {type(value).__name__}')


class BytesField(Field):
    """Arbitrary bytes per sample (each sample may have a different length, zero included).

    Decoded by `BytesDecoder` into rows of the longest length in the file; use the stored size to cut.
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
        return decode
