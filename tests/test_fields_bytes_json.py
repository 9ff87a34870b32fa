"""BytesField and JSONField round trips, including empty blobs and unicode."""
import numpy as np
import pytest

from ffcv.fields import BytesField, JSONField
from ffcv.writer import DatasetWriteError

from helpers import write_and_read


def test_bytes_round_trip(tmp_beton, rng):
    blobs = [np.zeros(0, np.uint8), rng.integers(0, 256, 1, dtype=np.uint8), b'', b'hello',
             bytearray(b'\x00\xff' * 100), rng.integers(0, 256, 1_500_000, dtype=np.uint8), np.zeros(0, np.uint8)]
    reader = write_and_read(tmp_beton(), {'blob': BytesField()}, [(b,) for b in blobs], page_size=1 << 21)
    for i, blob in enumerate(blobs):
        got = reader.read_sample(i)['blob']
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, np.frombuffer(bytes(blob), np.uint8))


def test_bytes_rejects_non_uint8(tmp_beton):
    with pytest.raises(DatasetWriteError, match="sample 0 .*field 'blob'.*uint8"):
        write_and_read(tmp_beton(), {'blob': BytesField()}, [(np.zeros(4, np.int32),)])


def test_json_round_trip(tmp_beton):
    values = [{'a': 1, 'b': [1, 2, 3]}, 'text', 'ünïcødé ✓ 日本語', [], {}, None, 3.5, {'nested': {'k': ['é']}}]
    reader = write_and_read(tmp_beton(), {'meta': JSONField()}, [(v,) for v in values])
    assert [reader.read_sample(i)['meta'] for i in range(len(values))] == values
    # stored as json.dumps text + NUL, as FFCV does
    first = reader.read(int(reader.metadata['f0'][0]['ptr']), int(reader.metadata['f0'][0]['size']))
    assert first.tobytes() == b'{"a": 1, "b": [1, 2, 3]}\0'


def test_json_unpack_batch():
    rows = np.zeros((2, 16), np.uint8)
    for i, text in enumerate([b'{"x": 1}\0', b'[2, 3]\0zz']):
        rows[i, :len(text)] = np.frombuffer(text, np.uint8)
    assert JSONField.unpack(rows) == [{'x': 1}, [2, 3]]
    assert JSONField.unpack(rows[1]) == [2, 3]


def test_json_rejects_unserialisable(tmp_beton):
    with pytest.raises(DatasetWriteError, match="sample 0 .*field 'meta'.*serializable"):
        write_and_read(tmp_beton(), {'meta': JSONField()}, [(object(),)])
