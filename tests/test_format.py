"""The on-disk layout: header, field descriptors, metadata rows, pages, allocation table."""
import numpy as np
import pytest

from ffcv.fields import BytesField, FloatField, IntField, JSONField, NDArrayField, RGBImageField, TorchTensorField
from ffcv.reader import Reader
from ffcv.types import ALLOC_TABLE_TYPE, FieldDescType, HeaderType, get_metadata_type, get_type_id
from ffcv.utils import align_to_page
from ffcv.writer import DatasetWriter


def test_struct_sizes_match_ffcv():
    assert HeaderType.itemsize == 24
    assert [HeaderType.fields[n][1] for n in HeaderType.names] == [0, 2, 4, 8, 16]
    assert FieldDescType.itemsize == 1041
    assert ALLOC_TABLE_TYPE.itemsize == 24


@pytest.mark.parametrize('fields, offsets, itemsize', [
    ([RGBImageField(), IntField()], [0, 16], 24),
    ([IntField(), FloatField()], [0, 8], 16),
    ([IntField(), RGBImageField()], [0, 8], 24),
])
def test_metadata_row_alignment(fields, offsets, itemsize):
    dtype = get_metadata_type(fields)
    assert [dtype.fields[f'f{i}'][1] for i in range(len(fields))] == offsets
    assert dtype.itemsize == itemsize


def test_rgb_metadata_is_packed():
    dtype = RGBImageField().metadata_type
    assert dtype.itemsize == 13
    assert [dtype.fields[n][1] for n in ('mode', 'width', 'height', 'data_ptr')] == [0, 1, 3, 5]


def test_type_ids():
    import torch
    fields = [FloatField(), IntField(), RGBImageField(), BytesField(), NDArrayField(np.float32, (2,)),
              JSONField(), TorchTensorField(torch.float32, (2,))]
    assert [get_type_id(f) for f in fields] == list(range(7))

    class MyInt(IntField):
        pass
    assert get_type_id(MyInt()) == 255


def test_layout_of_written_file(tmp_beton):
    path = tmp_beton()
    data = [(i, np.full(1000, i % 256, np.uint8)) for i in range(50)]
    DatasetWriter(path, {'label': IntField(), 'blob': BytesField()}, page_size=1 << 21,
                  num_workers=1).from_indexed_dataset(data, progress=False)
    raw = open(path, 'rb').read()
    header = np.frombuffer(raw[:24], HeaderType)[0]
    assert (header['version'], header['num_fields'], header['page_size'], header['num_samples']) == (2, 2, 1 << 21, 50)
    descriptors = np.frombuffer(raw[24:24 + 2 * 1041], FieldDescType)
    assert list(descriptors['type_id']) == [1, 3]
    assert bytes(descriptors[1]['name']).rstrip(b'\0') == b'blob'
    row = get_metadata_type([IntField(), BytesField()])
    data_start = align_to_page(24 + 2 * 1041 + 50 * row.itemsize, 1 << 21)
    assert data_start == 1 << 21
    table = np.frombuffer(raw[header['alloc_table_ptr']:], ALLOC_TABLE_TYPE)
    assert len(table) == 50 and list(table['sample_id']) == list(range(50))
    # samples laid out back to back from the start of the first data page, one page written full size
    assert list(table['ptr']) == [data_start + 1000 * i for i in range(50)]
    assert header['alloc_table_ptr'] == data_start + (1 << 21)
    assert len(raw) == header['alloc_table_ptr'] + 50 * 24


def test_scalar_only_file_has_no_pages(tmp_beton):
    path = tmp_beton()
    DatasetWriter(path, {'a': IntField(), 'b': FloatField()}, num_workers=1).from_indexed_dataset(
        [(i, i / 2) for i in range(10)], progress=False)
    reader = Reader(path)
    assert reader.alloc_table.size == 0
    assert reader.alloc_table_ptr == reader.file_size == 24 + 2 * 1041 + 10 * 16


def test_samples_never_straddle_pages(tmp_beton):
    path = tmp_beton()
    size = 600_000  # three fit in a 2 MiB page, the fourth starts the next page
    data = [(np.zeros(size, np.uint8),) for _ in range(7)]
    DatasetWriter(path, {'blob': BytesField()}, page_size=1 << 21, num_workers=1).from_indexed_dataset(
        data, progress=False)
    reader = Reader(path)
    pages = reader.alloc_table['ptr'] >> np.uint64(21)
    assert list(np.bincount(pages.astype(int))[1:]) == [3, 3, 1]


def test_empty_dataset(tmp_beton):
    path = tmp_beton()
    DatasetWriter(path, {'x': IntField()}, num_workers=1).from_indexed_dataset([], progress=False)
    reader = Reader(path)
    assert reader.num_samples == 0 and reader.field_names == ['x']


@pytest.mark.parametrize('page_size', [1 << 20, 3 << 21, 1 << 32])
def test_invalid_page_size(tmp_beton, page_size):
    with pytest.raises(ValueError, match='page_size'):
        DatasetWriter(tmp_beton(), {'x': IntField()}, page_size=page_size)
