"""The `.beton` file format, version 2 (bit-compatible with FFCV 1.0.2).

Layout, all little-endian::

    offset 0                 header (24 bytes, `HeaderType`)
    offset 24                num_fields x field descriptor (1041 bytes each, `FieldDescType`)
    offset 24 + 1041*F       metadata table: num_samples rows of `get_metadata_type(handlers)`
    (zero padding)           up to the next multiple of page_size
    data start               pages, page k at file offset k * page_size
    alloc_table_ptr          allocation table, 24-byte `ALLOC_TABLE_TYPE` entries up to end of file

Every pointer stored in the file is an absolute file offset.
"""
from __future__ import annotations

from typing import Mapping, Type

import numpy as np

from .fields import BytesField, FloatField, IntField, JSONField, NDArrayField, RGBImageField, TorchTensorField
from .utils import is_power_of_2

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from .fields import Field  # noqa: F401

CURRENT_VERSION = 2
MIN_PAGE_SIZE = 1 << 21  # 2 MiB
MAX_PAGE_SIZE = 1 << 32  # exclusive
DEFAULT_PAGE_SIZE = 4 * MIN_PAGE_SIZE  # 8 MiB
CUSTOM_TYPE_ID = 255
FIELD_NAME_BYTES = 16
ARGUMENTS_BYTES = 1024

HeaderType = np.dtype([
    ('version', '<u2'),
    ('num_fields', '<u2'),
    ('page_size', '<u4'),
    ('num_samples', '<u8'),
    ('alloc_table_ptr', '<u8'),
], align=True)

FieldDescType = np.dtype([
    ('type_id', '<u1'),
    ('name', ('<u1', FIELD_NAME_BYTES)),
    ('arguments', ('<u1', ARGUMENTS_BYTES)),
], align=True)

ALLOC_TABLE_TYPE = np.dtype([
    ('sample_id', '<u8'),
    ('ptr', '<u8'),
    ('size', '<u8'),
])

assert HeaderType.itemsize == 24
assert FieldDescType.itemsize == 1041
assert ALLOC_TABLE_TYPE.itemsize == 24


# Type id stored in a field descriptor -> the Field class that reads it (255: a custom field, given by the user).
TYPE_ID_HANDLER = {CUSTOM_TYPE_ID: None, 0: FloatField, 1: IntField, 2: RGBImageField, 3: BytesField,
                   4: NDArrayField, 5: JSONField, 6: TorchTensorField}


def get_type_id(field) -> int:
    """Type id of a field instance; exact class match as in FFCV, so subclasses are custom (255)."""
    for type_id, cls in TYPE_ID_HANDLER.items():
        if cls is not None and type(field) is cls:
            return type_id
    return CUSTOM_TYPE_ID


def get_handlers(field_descriptors) -> list:
    """A Field instance per descriptor, rebuilt from its arguments (None for a custom field, type id 255)."""
    handlers = []
    for descriptor in field_descriptors:
        cls = TYPE_ID_HANDLER[int(descriptor['type_id'])]
        handlers.append(None if cls is None else cls.from_binary(descriptor['arguments']))
    return handlers


def get_metadata_type(handlers) -> np.dtype:
    """Numpy struct of one metadata row: one member per field (see `column_name`), C-aligned."""
    if isinstance(handlers, Mapping):
        handlers = list(handlers.values())
    return np.dtype([(column_name(i), h.metadata_type) for i, h in enumerate(handlers)], align=True)


def column_name(field_index: int) -> str:
    """Name of field `field_index`'s member in a metadata row (numpy's name for an unnamed member)."""
    return f'f{field_index}'


def encode_field_name(name: str) -> np.ndarray:
    """NUL-padded 16-byte ASCII name (longer names are truncated, as FFCV does)."""
    data = name.encode('ascii')[:FIELD_NAME_BYTES]
    out = np.zeros(FIELD_NAME_BYTES, dtype='<u1')
    out[:len(data)] = np.frombuffer(data, dtype='<u1')
    return out


def check_page_size(page_size: int) -> None:
    if not is_power_of_2(page_size) or page_size < MIN_PAGE_SIZE or page_size >= MAX_PAGE_SIZE:
        raise ValueError(f'page_size must be a power of two, at least {MIN_PAGE_SIZE} (2 MiB) and '
                         f'below {MAX_PAGE_SIZE} (4 GiB); got {page_size}')


def resolve_handler_class(type_id: int, name: str, custom_handlers: Mapping[str, Type]) -> Type:
    """Field class that reads a column, honouring user-given custom fields."""
    if name in custom_handlers:
        return custom_handlers[name]
    if TYPE_ID_HANDLER.get(type_id) is not None:
        return TYPE_ID_HANDLER[type_id]
    if type_id == CUSTOM_TYPE_ID:
        raise ValueError(f"field '{name}' has a custom type (id 255); pass its Field class as "
                         f"custom_fields={{'{name}': YourField}} (Loader) or custom_handlers (Reader)")
    raise ValueError(f"field '{name}' has unknown type id {type_id}")
