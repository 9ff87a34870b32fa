"""Reader: FFCV-written fixtures read back to their manifest; corrupt files raise clear errors."""
import json
import shutil

import numpy as np
import pytest

from ffcv.fields import IntField, RGBImageField
from ffcv.reader import CorruptFileError, Reader
from ffcv.types import HeaderType
from ffcv.writer import DatasetWriter

from conftest import photo_like
from helpers import write_and_read

IMAGE_FILES = ['images_raw', 'images_jpg', 'images_proportion', 'images_smart', 'cifar_like']


def test_basic_fixture(fixtures_dir, manifest):
    reader = Reader(fixtures_dir / 'basic.beton')
    expected = np.load(fixtures_dir / 'basic.expected.npz')
    meta = json.loads((fixtures_dir / 'basic.meta.json').read_text())
    assert reader.num_samples == manifest['files']['basic.beton']['samples']
    assert reader.field_names == list(manifest['files']['basic.beton']['fields'])
    assert [type(h).__name__ for h in reader.handlers.values()] == [
        'IntField', 'FloatField', 'NDArrayField', 'BytesField', 'JSONField', 'NDArrayField']
    offsets = np.concatenate([[0], np.cumsum(expected['blob_lengths'])])
    for i in range(reader.num_samples):
        sample = reader.read_sample(i)
        assert sample['label'] == expected['label'][i]
        assert sample['value'] == expected['value'][i]
        np.testing.assert_array_equal(sample['array'], expected['array'][i])
        np.testing.assert_array_equal(sample['tensor'], expected['tensor'][i])
        np.testing.assert_array_equal(sample['blob'], expected['blob_concat'][offsets[i]:offsets[i + 1]])
        assert sample['meta'] == meta[i]


@pytest.mark.parametrize('name', IMAGE_FILES)
def test_image_fixtures(fixtures_dir, manifest, name):
    reader = Reader(fixtures_dir / f'{name}.beton')
    expected = np.load(fixtures_dir / f'{name}.expected.npz')
    assert reader.num_samples == manifest['files'][f'{name}.beton']['samples']
    column = reader.metadata['f0']
    np.testing.assert_array_equal(column['mode'], expected['modes'])
    np.testing.assert_array_equal(column['height'], expected['heights'])
    np.testing.assert_array_equal(column['width'], expected['widths'])
    np.testing.assert_array_equal(reader.metadata['f1'], expected['labels'])
    for i in range(reader.num_samples):
        image = reader.read_sample(i)['image']
        stored = expected[f'stored_{i}']
        if column['mode'][i] == 1:
            np.testing.assert_array_equal(image, stored)  # raw: exact
            np.testing.assert_array_equal(image, expected[f'source_{i}'])
        else:  # JPEG decoded by OpenCV for the manifest: allow decoder differences
            diff = np.abs(image.astype(int) - stored.astype(int))
            assert diff.mean() < 1.0 and diff.max() <= 12


def _written(tmp_beton, rng, n=12):
    images = [photo_like(rng, 20 + i, 30) for i in range(n)]
    return write_and_read(tmp_beton(), {'image': RGBImageField(write_mode='smart', smart_threshold=2000),
                                        'label': IntField()}, [(im, i) for i, im in enumerate(images)]).file_name


def _copy_with(path, tmp_path, edit):
    out = tmp_path / 'corrupt.beton'
    shutil.copy(path, out)
    data = bytearray(out.read_bytes())
    data = edit(data)
    out.write_bytes(bytes(data))
    return out


def test_every_truncation_point_raises(tmp_path, tmp_beton, rng):
    path = _written(tmp_beton, rng)
    size = len(open(path, 'rb').read())
    header = np.fromfile(path, HeaderType, count=1)[0]
    cuts = {0, 10, 23, 24, 500, 24 + 1041, 24 + 2 * 1041, 24 + 2 * 1041 + 100, int(header['alloc_table_ptr']),
            int(header['alloc_table_ptr']) + 5, size - 24, size - 1}
    for cut in sorted(cuts):
        out = _copy_with(path, tmp_path, lambda d: d[:cut])
        with pytest.raises(CorruptFileError, match='corrupt.beton'):
            Reader(out)


@pytest.mark.parametrize('kind', ['zeros', 'random'])
def test_zero_filled_and_random_files(tmp_path, tmp_beton, rng, kind):
    path = _written(tmp_beton, rng)
    size = len(open(path, 'rb').read())
    content = bytes(size) if kind == 'zeros' else rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    out = _copy_with(path, tmp_path, lambda d: bytearray(content))
    with pytest.raises(CorruptFileError, match='corrupt.beton'):
        Reader(out)


def _header_edit(field, value):
    def edit(data):
        header = np.frombuffer(bytes(data[:24]), HeaderType).copy()
        header[field] = value
        data[:24] = header.tobytes()
        return data
    return edit


@pytest.mark.parametrize('field, value, message', [
    ('num_samples', 10**9, 'samples'), ('num_fields', 500, 'fields'), ('version', 3, 'version'),
    ('page_size', 12345, 'page size'), ('alloc_table_ptr', 10**12, 'allocation table'),
    ('alloc_table_ptr', 100, 'allocation table'),
])
def test_lying_header(tmp_path, tmp_beton, rng, field, value, message):
    out = _copy_with(_written(tmp_beton, rng), tmp_path, _header_edit(field, value))
    with pytest.raises(CorruptFileError, match=message):
        Reader(out)


def test_alloc_entry_past_end_and_overlap(tmp_path, tmp_beton, rng):
    path = _written(tmp_beton, rng)
    reader = Reader(path)
    table_at = reader.alloc_table_ptr

    def past_end(data):
        data[table_at + 8:table_at + 16] = np.uint64(reader.file_size + 10).tobytes()
        return data

    def overlap(data):  # second entry starts inside the first
        first_ptr = int(reader.alloc_table['ptr'][0])
        data[table_at + 24 + 8:table_at + 24 + 16] = np.uint64(first_ptr + 1).tobytes()
        return data

    with pytest.raises(CorruptFileError, match='outside the data region'):
        Reader(_copy_with(path, tmp_path, past_end))
    with pytest.raises(CorruptFileError, match='overlap|not an allocation'):
        Reader(_copy_with(path, tmp_path, overlap))


def test_metadata_pointer_and_size_checks(tmp_path, tmp_beton, rng):
    path = _written(tmp_beton, rng)
    reader = Reader(path)
    start = reader.metadata_start
    row = reader.metadata_type.itemsize
    raw_rows = np.flatnonzero(reader.metadata['f0']['mode'] == 1)

    def bad_pointer(data):
        data[start + 5:start + 13] = np.uint64(reader.data_start + 3).tobytes()
        return data

    def bad_size(data):  # a raw image whose stored size disagrees with its width
        at = start + int(raw_rows[0]) * row
        data[at + 1:at + 3] = np.uint16(int(reader.metadata['f0']['width'][raw_rows[0]]) + 1).tobytes()
        return data

    def bad_mode(data):
        data[start] = 7
        return data

    with pytest.raises(CorruptFileError, match="sample 0, field 'image'.*not an allocation"):
        Reader(_copy_with(path, tmp_path, bad_pointer))
    with pytest.raises(CorruptFileError, match=f"sample {raw_rows[0]}, field 'image'.*bytes"):
        Reader(_copy_with(path, tmp_path, bad_size))
    with pytest.raises(CorruptFileError, match='unknown image mode 7'):
        Reader(_copy_with(path, tmp_path, bad_mode))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match='nope.beton'):
        Reader('/nonexistent/nope.beton')


def test_custom_field_needs_handler(tmp_beton):
    class LabelField(IntField):
        pass
    path = tmp_beton()
    DatasetWriter(path, {'label': LabelField()}, num_workers=1).from_indexed_dataset([(1,), (2,)], progress=False)
    with pytest.raises(ValueError, match="custom_fields=.*'label'"):
        Reader(path)
    assert Reader(path, custom_handlers={'label': LabelField}).read_sample(1) == {'label': 2}
