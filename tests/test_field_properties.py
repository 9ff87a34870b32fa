"""Property-based round trips (hypothesis): whatever values are written, exactly those come back, through
the Reader and through the Loader. Derandomized, so CI runs the same examples every time.
"""
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip('hypothesis', reason='hypothesis is a test-only dependency (dev extra)')
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from ffcv.fields import BytesField, FloatField, IntField, JSONField, NDArrayField, RGBImageField  # noqa: E402
from ffcv.loader import Loader  # noqa: E402
from ffcv.reader import Reader  # noqa: E402
from ffcv.writer import DatasetWriter  # noqa: E402

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=10)
dtypes = st.sampled_from(['u1', 'i2', '<i4', '<i8', '<f2', '<f4', '<f8', '?', '<c8', '>i4'])
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


_written = []  # the folder of the example being checked (hypothesis runs dozens per test)


@pytest.fixture(scope='module', autouse=True)
def remove_written():
    yield
    _remove_written()


def _remove_written():
    while _written:
        shutil.rmtree(_written.pop(), ignore_errors=True)


def write(fields, samples):
    """Write `samples` into a fresh folder (the previous example's is removed first); the file's path."""
    _remove_written()
    folder = tempfile.mkdtemp(prefix='ffcv-properties-')
    _written.append(folder)
    path = str(Path(folder) / 'data.beton')
    DatasetWriter(path, fields, num_workers=1, page_size=1 << 21).from_indexed_dataset(samples, progress=False)
    return path


def same_float(a, b) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@SETTINGS
@given(rows=st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.floats(), st.binary(max_size=300), json_values),
                     min_size=1, max_size=12))
def test_scalars_bytes_and_json(rows):
    path = write({'i': IntField(), 'f': FloatField(), 'b': BytesField(), 'j': JSONField()}, rows)
    reader = Reader(path)
    for k, (i, f, b, j) in enumerate(rows):
        sample = reader.read_sample(k)
        assert sample['i'] == i and same_float(sample['f'], f) and bytes(sample['b']) == b
        assert json.dumps(sample['j']) == json.dumps(j)
    loaded = [[v.numpy() for v in batch] for batch in Loader(path, batch_size=5, num_workers=2, drop_last=False)]
    ints, floats, blobs, texts = (np.concatenate(column) for column in zip(*loaded))
    assert ints.reshape(-1).tolist() == [r[0] for r in rows]
    assert all(same_float(a, r[1]) for a, r in zip(floats.reshape(-1).tolist(), rows))
    for row, (_, _, b, j) in zip(range(len(rows)), rows):
        assert bytes(blobs[row, :len(b)]) == b and not blobs[row, len(b):].any()
        assert JSONField.unpack(texts[row]) == json.loads(json.dumps(j))


@SETTINGS
@given(data=st.data(), dtype=dtypes, shape=shapes, count=st.integers(1, 9))
def test_ndarrays_of_any_dtype_and_shape(data, dtype, shape, count):
    arrays = [data.draw(hnp.arrays(np.dtype(dtype), shape)) for _ in range(count)]
    path = write({'a': NDArrayField(np.dtype(dtype), shape)}, [(a,) for a in arrays])
    reader = Reader(path)
    assert reader.handlers['a'].dtype == np.dtype(dtype) and reader.handlers['a'].shape == shape
    for k, array in enumerate(arrays):
        assert reader.read_sample(k)['a'].tobytes() == array.tobytes()
    if np.dtype(dtype).kind in 'c' or not np.dtype(dtype).isnative:
        return  # torch has no tensor for these: read back through the Reader only
    loaded = np.concatenate([batch[0].numpy() for batch in Loader(path, batch_size=4, num_workers=2,
                                                                  drop_last=False)])
    assert loaded.tobytes() == np.stack(arrays).tobytes()


@SETTINGS
@given(data=st.data(), count=st.integers(1, 6), mode=st.sampled_from(['raw', 'jpg']))
def test_images_of_any_size(data, count, mode):
    images = [data.draw(hnp.arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3))))
              for _ in range(count)]
    path = write({'image': RGBImageField(write_mode=mode)}, [(image,) for image in images])
    reader = Reader(path)
    for k, image in enumerate(images):
        decoded = reader.read_sample(k)['image']
        assert decoded.shape == image.shape
        if mode == 'raw':
            np.testing.assert_array_equal(decoded, image)
