"""The `Field` interface: how one column of a dataset is stored in a `.beton` file.

A field owns three things:

* ``metadata_type``: the numpy dtype of its fixed-size slot in every metadata row;
* ``encode(destination, value, malloc)``: writes one sample: scalars go into ``destination`` (a
  one-element view of the field's metadata column), variable-size data into heap memory obtained with
  ``ptr, buffer = malloc(nbytes)``; ``ptr`` is the absolute file offset to record in the metadata;
* ``get_decoder_class()``: the default decoder `Operation` used by the `Loader`.

Fields are rebuilt when a file is read through ``from_binary(arguments)`` from the 1024-byte argument blob
that ``to_binary()`` produced at write time.

Registering a custom field
--------------------------
Subclass `Field`, implement the five members above, write with it as with any other field (it is stored
with type id 255) and read it back with ``Loader(..., custom_fields={'name': MyField})`` or
``Reader(fname, custom_handlers={'name': MyField})``. Optionally implement ``read_value`` (used by
``ffcv verify`` and ``Reader.read_sample``) and ``heap_pointers`` (used to validate the file at open).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Optional, Tuple, Type

import numpy as np

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.operation import Operation  # noqa: F401

ARG_TYPE = np.dtype([('', '<u1', 1024)])

# Reads `size` bytes at absolute file offset `ptr` and returns them as a read-only uint8 array.
ReadFn = Callable[[int, Optional[int]], np.ndarray]  # size None: look it up


def empty_arguments():
    """An all-zero argument blob (what fields without constructor arguments store).

    Like every ``to_binary`` result it is an `ARG_TYPE` record: ``blob[0]`` is the (1024,) uint8 array.
    """
    return np.zeros(1, dtype=ARG_TYPE)[0]


class Field(ABC):
    """One column of a dataset: its metadata slot, its encoder and its default decoder."""

    @property
    @abstractmethod
    def metadata_type(self) -> np.dtype:
        """dtype of this field's slot in a metadata row."""

    @staticmethod
    @abstractmethod
    def from_binary(binary: np.ndarray) -> 'Field':
        """Rebuild the field from the 1024-byte argument blob of its descriptor."""

    @abstractmethod
    def to_binary(self) -> np.ndarray:
        """Argument blob: ``result[0]`` is assigned to the descriptor's 1024 argument bytes."""

    @abstractmethod
    def encode(self, destination, field, malloc):
        """Write one value: ``destination`` is a 1-element view of the metadata column."""

    def encode_row(self, destination, field, malloc, row: int):
        """What the writer calls for the sample stored at `row` of the file.

        Fields whose encoding makes a random choice (RGBImageField's 'proportion' mode) override it to
        seed the choice with the row, so a file is the same whatever the number of writer processes;
        every other field just encodes.
        """
        return self.encode(destination, field, malloc)

    @abstractmethod
    def get_decoder_class(self) -> Type:
        """Default decoder (an `Operation` subclass) for this field."""

    # ---- optional, used by Reader.read_sample / `ffcv verify` / file validation ----

    def read_value(self, metadata, read: ReadFn):
        """Decode one sample to a Python/NumPy value from its metadata entry."""
        raise NotImplementedError(f'{type(self).__name__} does not implement read_value')

    def heap_pointers(self, column: np.ndarray) -> Optional[Tuple[np.ndarray, Optional[np.ndarray],
                                                                   Optional[np.ndarray]]]:
        """Heap pointers stored in a metadata column, for validation at open.

        Returns ``(pointers, sizes, known)``: the absolute offsets, the byte size each must have (or
        None if unknown) and a boolean mask of the rows whose size is known (None: all rows). Return None
        when the field stores no heap pointers (or they cannot be located).
        """
        return None

    def check_column(self, column: np.ndarray) -> Optional[Tuple[int, str]]:
        """First (row, reason) whose metadata is impossible for this field, or None."""
        return None

    def describe(self) -> str:
        """Short human description for `ffcv inspect`."""
        return type(self).__name__ + '()'
