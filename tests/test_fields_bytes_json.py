"""BytesField and JSONField round trips, including empty blobs and unicode."""
import os

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


def test_bytes_casts_other_dtypes_when_exact(tmp_beton):
    # FFCV writes any numeric array (it casts); ours does too when every value is a byte
    values = [np.zeros(2), np.array([0, 7, 255], np.int32), np.array([1.0, 2.0], np.float32), np.array([True, False])]
    reader = write_and_read(tmp_beton(), {'blob': BytesField()}, [(v,) for v in values])
    for i, value in enumerate(values):
        got = reader.read_sample(i)['blob']
        assert got.dtype == np.uint8 and got.tolist() == value.astype(np.int64).tolist()


@pytest.mark.parametrize('value, shown', [(np.array([1.5]), '1.5'), (np.array([0, 256], np.int32), '256'),
                                          (np.array([-1.0]), '-1.0'), (np.array([np.nan]), 'nan')])
def test_bytes_refuses_casts_that_lose_data(tmp_beton, value, shown):
    path = tmp_beton()
    with pytest.raises(DatasetWriteError, match=f"sample 0 .*field 'blob'.*value {shown} .*not a byte"):
        write_and_read(path, {'blob': BytesField()}, [(value,)])
    assert not os.path.exists(path)  # nothing written half


def test_bytes_refuses_what_is_not_bytes(tmp_beton):
    with pytest.raises(DatasetWriteError, match="sample 0 .*field 'blob'.*1-D"):
        write_and_read(tmp_beton(), {'blob': BytesField()}, [(np.zeros((2, 2), np.uint8),)])
    with pytest.raises(DatasetWriteError, match="sample 0 .*field 'blob'.*bytes"):
        write_and_read(tmp_beton(), {'blob': BytesField()}, [('text',)])


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
