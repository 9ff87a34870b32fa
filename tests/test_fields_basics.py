"""IntField and FloatField: exact round trips, extremes, rejection of wrong types."""
import math

import numpy as np
import pytest
import torch

from ffcv.fields import FloatField, IntField
from ffcv.writer import DatasetWriteError

from helpers import write_and_read

INTS = [0, 1, -1, 2**63 - 1, -2**63, 123456789012, np.int32(-7), np.uint8(255), torch.tensor(5)]
FLOATS = [0.0, -0.0, 1.5, float('nan'), float('inf'), float('-inf'), 1e-308, 5e-324, np.float32(0.1), 3]


def test_int_round_trip(tmp_beton):
    reader = write_and_read(tmp_beton(), {'x': IntField()}, [(v,) for v in INTS])
    assert [reader.read_sample(i)['x'] for i in range(len(INTS))] == [int(v) for v in INTS]
    assert reader.metadata['f0'].dtype == np.dtype('<i8')


def test_float_round_trip(tmp_beton):
    reader = write_and_read(tmp_beton(), {'x': FloatField()}, [(v,) for v in FLOATS])
    got = [reader.read_sample(i)['x'] for i in range(len(FLOATS))]
    for value, expected in zip(got, FLOATS):
        expected = float(expected)
        assert (math.isnan(value) and math.isnan(expected)) or value == expected
    assert math.copysign(1, got[1]) == -1  # negative zero kept


@pytest.mark.parametrize('field, bad', [
    (IntField(), 'seven'), (IntField(), 1.5), (IntField(), 2**63), (IntField(), None),
    (IntField(), np.arange(3)), (FloatField(), 'x'), (FloatField(), [1.0]), (IntField(), True),
])
def test_wrong_values_name_sample_and_field(tmp_beton, field, bad):
    samples = [(1,), (2,), (bad,)]
    if isinstance(field, FloatField):
        samples = [(1.0,), (2.0,), (bad,)]
    with pytest.raises(DatasetWriteError, match=r"sample 2 .*field 'value'"):
        write_and_read(tmp_beton(), {'value': field}, samples)
