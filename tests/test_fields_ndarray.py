"""NDArrayField and TorchTensorField: shapes (zero-sized and large), dtypes, argument blobs."""
import numpy as np
import pytest
import torch

from ffcv.fields import NDArrayField, TorchTensorField
from ffcv.writer import DatasetWriteError

from helpers import write_and_read


@pytest.mark.parametrize('dtype, shape', [
    ('float32', (3, 4)), ('int16', (7,)), ('float64', ()), ('uint8', (0,)), ('float32', (2, 0, 3)),
    ('int64', (1, 1, 1, 1, 1)), ('complex64', (2,)), ('<u4', (5, 2)), ('bool', (9,)),
])
def test_ndarray_round_trip(tmp_beton, rng, dtype, shape):
    values = [(rng.normal(size=shape) * 100).astype(dtype) for _ in range(5)]
    reader = write_and_read(tmp_beton(), {'a': NDArrayField(np.dtype(dtype), shape)}, [(v,) for v in values])
    handler = reader.handlers['a']
    assert (handler.dtype, handler.shape) == (np.dtype(dtype), shape)
    for i, value in enumerate(values):
        got = reader.read_sample(i)['a']
        assert got.shape == shape and got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, value)


def test_large_array(tmp_beton, rng):
    value = rng.normal(size=(1000, 1000)).astype(np.float32)  # 4 MB, needs an 8 MiB page
    reader = write_and_read(tmp_beton(), {'a': NDArrayField(np.float32, (1000, 1000))}, [(value,), (value * 2,)])
    np.testing.assert_array_equal(reader.read_sample(1)['a'], value * 2)


def test_array_larger_than_a_page(tmp_beton):
    value = np.zeros(3 << 20, np.uint8)
    with pytest.raises(DatasetWriteError, match='page'):
        write_and_read(tmp_beton(), {'a': NDArrayField(np.uint8, value.shape)}, [(value,)], page_size=1 << 21)


def test_arguments_blob_matches_ffcv_layout():
    blob = NDArrayField(np.dtype('float32'), (3, 4)).to_binary()[0]
    assert list(blob[:24].view('<u8')) == [3, 4, 0]
    assert int(blob[256:264].view('<u8')[0]) == 13
    assert blob[264:277].tobytes() == b'[["", "<f4"]]'


def test_ffcv_written_arguments_drop_trailing_zeros():
    blob = NDArrayField(np.dtype('float32'), (3, 4)).to_binary()[0].copy()
    blob[277] = 0  # what FFCV writes: nothing after the dtype JSON
    field = NDArrayField.from_binary(blob)
    assert field.shape == (3, 4) and field.dtype == np.float32


@pytest.mark.parametrize('value, message', [
    (np.zeros((3, 5), np.float32), 'shape'), (np.zeros((3, 4), np.float64), 'dtype'), ([1, 2], 'numpy array'),
])
def test_ndarray_rejects_mismatch(tmp_beton, value, message):
    with pytest.raises(DatasetWriteError, match=f"sample 1 .*field 'a'.*{message}"):
        write_and_read(tmp_beton(), {'a': NDArrayField(np.float32, (3, 4))},
                       [(np.zeros((3, 4), np.float32),), (value,)])


def test_torch_tensor_round_trip(tmp_beton):
    values = [torch.randn(2, 3, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    reader = write_and_read(tmp_beton(), {'t': TorchTensorField(torch.float32, (2, 3))}, [(v,) for v in values])
    for i, value in enumerate(values):
        np.testing.assert_array_equal(reader.read_sample(i)['t'], value.numpy())


def test_torch_tensor_rejects_wrong_dtype(tmp_beton):
    with pytest.raises(DatasetWriteError, match="field 't'.*dtype"):
        write_and_read(tmp_beton(), {'t': TorchTensorField(torch.float32, (2,))},
                       [(torch.zeros(2, dtype=torch.int64),)])
