"""`JSONField`: any JSON-serialisable value per sample, stored as UTF-8 text plus a NUL byte."""
from __future__ import annotations

import json

import numpy as np

from .bytes import BytesField

ENCODING = 'utf8'
SEPARATOR = '\0'  # ends each value's text


class JSONField(BytesField):
    """A JSON value per sample (``json.dumps`` text, UTF-8, NUL-terminated, as FFCV stores it).

    Decoded with `BytesDecoder`; turn a decoded batch back into objects with `JSONField.unpack`.
    """

    @staticmethod
    def from_binary(binary) -> 'JSONField':
        return JSONField()

    def encode(self, destination, field, malloc):
        text = (json.dumps(field) + SEPARATOR).encode(ENCODING)
        self._store(destination, np.frombuffer(text, dtype=np.uint8), malloc)

    @staticmethod
    def unpack(batch):
        """Objects from decoded rows: a (B, L) batch gives a list, a single (L,) row gives one object."""
        if hasattr(batch, 'cpu') and hasattr(batch, 'numpy'):
            batch = batch.cpu().numpy()
        batch = np.asarray(batch, dtype=np.uint8)
        if batch.ndim == 1:
            return JSONField._unpack_row(batch)
        return [JSONField._unpack_row(row) for row in batch]

    @staticmethod
    def _unpack_row(row: np.ndarray):
        text = row.tobytes().split(SEPARATOR.encode(ENCODING), 1)[0]
        return json.loads(text.decode(ENCODING))

    def read_value(self, metadata, read):
        return self._unpack_row(super().read_value(metadata, read))

    def describe(self) -> str:
        return 'JSONField()'
