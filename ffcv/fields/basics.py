"""Scalar fields stored inline in the metadata row: `IntField` (int64) and `FloatField` (float64)."""
from __future__ import annotations

import numbers
from dataclasses import replace
from typing import Type

import numpy as np

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.operation import Operation
from .base import Field, empty_arguments

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.state import State  # noqa: F401
from .base import ARG_TYPE  # noqa: F401


def _as_scalar(value, kinds: str, what: str):
    """A Python/NumPy/0-d scalar of one of the numpy `kinds`, else TypeError."""
    if hasattr(value, 'item') and getattr(value, 'ndim', 0) == 0 and not isinstance(value, np.ndarray):
        value = value.item()  # torch scalars and numpy scalars
    elif isinstance(value, np.ndarray):
        if value.size != 1:
            raise TypeError(f'expected a single {what}, got an array of shape {value.shape}')
        value = value.reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        raise TypeError(f'expected {what}, got {type(value).__name__} {value!r}')
    if isinstance(value, numbers.Integral) and 'i' in kinds:
        return int(value)  # any size: the field checks its range
    if np.asarray(value).dtype.kind not in kinds:
        raise TypeError(f'expected {what}, got {type(value).__name__} {value!r}')
    return value


class IntField(Field):
    """A signed 64-bit integer per sample (for example a class label), stored in the metadata row."""

    @property
    def metadata_type(self) -> np.dtype:
        return np.dtype('<i8')

    @staticmethod
    def from_binary(binary) -> Field:
        return IntField()

    def to_binary(self) -> np.ndarray:
        return empty_arguments()

    def encode(self, destination, field, malloc):
        value = _as_scalar(field, 'iu', 'an integer')
        if not -2**63 <= value < 2**63:
            raise OverflowError(f'{value} does not fit in int64')
        destination[0] = value

    def get_decoder_class(self) -> Type:
        return IntDecoder

    def read_value(self, metadata, read):
        return int(metadata)


class FloatField(Field):
    """A 64-bit float per sample, stored in the metadata row (NaN and inf are kept)."""

    @property
    def metadata_type(self) -> np.dtype:
        return np.dtype('<f8')

    @staticmethod
    def from_binary(binary) -> Field:
        return FloatField()

    def to_binary(self) -> np.ndarray:
        return empty_arguments()

    def encode(self, destination, field, malloc):
        destination[0] = _as_scalar(field, 'iuf', 'a real number')

    def get_decoder_class(self) -> Type:
        return FloatDecoder

    def read_value(self, metadata, read):
        return float(metadata)


class BasicDecoder(Operation):
    """Copies a scalar stored in the metadata into a (B, 1) array (add `Squeeze()` for shape (B,))."""
    dtype = np.dtype('<i8')

    def declare_state_and_memory(self, previous_state):
        return (replace(previous_state, jit_mode=True, shape=(1,), dtype=self.dtype),
                AllocationQuery((1,), self.dtype))

    def generate_code(self):
        def decode(indices, destination, metadata, storage_state):
            destination[:, 0] = metadata[indices]
            return destination
        decode.python_code = True
        decode.per_sample = True
        decode.reads_heap = False
        return decode


class IntDecoder(BasicDecoder):
    """Decoder of `IntField`: (B, 1) int64."""
    dtype = np.dtype('<i8')


class FloatDecoder(BasicDecoder):
    """Decoder of `FloatField`: (B, 1) float64."""
    dtype = np.dtype('<f8')
