"""DatasetWriter: deterministic output, atomic writes, clear errors, subsets, webdataset."""
import hashlib
import os

import numpy as np
import pytest

from ffcv.fields import BytesField, FloatField, IntField, JSONField, NDArrayField, RGBImageField
from ffcv.reader import Reader
from ffcv.writer import DatasetWriteError, DatasetWriter

from conftest import photo_like


class MixedDataset:
    """Images of varied sizes and modes plus every scalar/heap field kind; deterministic per index."""

    def __init__(self, n=150):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        image = photo_like(rng, int(rng.integers(8, 90)), int(rng.integers(8, 90)))
        return (image, i, np.sin(i), rng.normal(size=(2, 3)).astype(np.float32),
                rng.integers(0, 256, int(rng.integers(0, 50)), dtype=np.uint8), {'i': i, 'tag': 'é' * (i % 4)})


FIELDS = {'image': RGBImageField(write_mode='proportion', jpeg_quality=80), 'label': IntField(),
          'value': FloatField(), 'array': NDArrayField(np.float32, (2, 3)), 'blob': BytesField(), 'meta': JSONField()}


def digest(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def test_identical_bytes_whatever_workers_and_chunks(tmp_beton):
    paths = []
    for workers, chunksize in [(1, 100), (2, 7), (3, 1), (2, 1000)]:
        path = tmp_beton()
        DatasetWriter(path, FIELDS, page_size=1 << 21, num_workers=workers).from_indexed_dataset(
            MixedDataset(), chunksize=chunksize, progress=False)
        paths.append(path)
    assert len({digest(p) for p in paths}) == 1
    reader = Reader(paths[0])
    assert reader.num_samples == 150
    for i in (0, 77, 149):
        sample, expected = reader.read_sample(i), MixedDataset()[i]
        assert sample['label'] == i and sample['value'] == expected[2] and sample['meta'] == expected[5]
        np.testing.assert_array_equal(sample['blob'], expected[4])


def test_many_rows_int_float(tmp_beton):
    n = 600
    path = tmp_beton()
    DatasetWriter(path, {'index': IntField(), 'value': FloatField()}, num_workers=2).from_indexed_dataset(
        [(i, np.sin(i)) for i in range(n)], chunksize=13, progress=False)
    reader = Reader(path)
    np.testing.assert_array_equal(reader.metadata['f0'], np.arange(n))
    np.testing.assert_array_equal(reader.metadata['f1'], np.sin(np.arange(n)))


def test_indices_and_shuffle(tmp_beton):
    data = [(i,) for i in range(100)]
    path = tmp_beton()
    DatasetWriter(path, {'x': IntField()}, num_workers=1).from_indexed_dataset(
        data, indices=[5, 3, 99], progress=False)
    assert list(Reader(path).metadata['f0']) == [5, 3, 99]
    np.random.seed(0)
    DatasetWriter(path, {'x': IntField()}, num_workers=2).from_indexed_dataset(
        data, shuffle_indices=True, chunksize=10, progress=False)
    rows = Reader(path).metadata['f0']
    assert sorted(rows) == list(range(100)) and list(rows) != list(range(100))
    with pytest.raises(IndexError):
        DatasetWriter(path, {'x': IntField()}).from_indexed_dataset(data, indices=[100])


class FailingDataset(MixedDataset):
    def __init__(self, fail_at, error=RuntimeError):
        super().__init__(60)
        self.fail_at, self.error = fail_at, error

    def __getitem__(self, i):
        if i == self.fail_at:
            raise self.error('boom')
        return super().__getitem__(i)


def leftovers(path):
    folder = os.path.dirname(path)
    return [f for f in os.listdir(folder) if f.endswith('.partial')]


@pytest.mark.parametrize('workers', [1, 2])
def test_failure_leaves_no_file(tmp_beton, workers):
    path = tmp_beton()
    with pytest.raises(DatasetWriteError, match='reading sample 37 .*RuntimeError: boom'):
        DatasetWriter(path, FIELDS, num_workers=workers).from_indexed_dataset(
            FailingDataset(37), chunksize=5, progress=False)
    assert not os.path.exists(path) and leftovers(path) == []


def test_failure_keeps_previous_file(tmp_beton):
    path = tmp_beton()
    DatasetWriter(path, {'x': IntField()}, num_workers=1).from_indexed_dataset([(1,), (2,)], progress=False)
    before = digest(path)
    with pytest.raises(DatasetWriteError):
        DatasetWriter(path, {'x': IntField()}, num_workers=1).from_indexed_dataset([(1,), ('x',)], progress=False)
    assert digest(path) == before


def test_keyboard_interrupt_leaves_no_file(tmp_beton):
    path = tmp_beton()
    with pytest.raises(KeyboardInterrupt):
        DatasetWriter(path, FIELDS, num_workers=1).from_indexed_dataset(
            FailingDataset(20, KeyboardInterrupt), chunksize=5, progress=False)
    assert not os.path.exists(path) and leftovers(path) == []


def test_worker_error_names_sample_and_field(tmp_beton):
    data = [(np.zeros((4, 4, 3), np.uint8), i) for i in range(40)]
    data[29] = (np.zeros((4, 4, 3), np.float64), 29)
    with pytest.raises(DatasetWriteError, match=r"sample 29 \(row 29\), field 'image' .*uint8"):
        DatasetWriter(tmp_beton(), {'image': RGBImageField(), 'label': IntField()},
                      num_workers=2).from_indexed_dataset(data, chunksize=4, progress=False)


def test_sample_shape_errors(tmp_beton):
    with pytest.raises(DatasetWriteError, match='sample 0: expected 2 values'):
        DatasetWriter(tmp_beton(), {'a': IntField(), 'b': IntField()}, num_workers=1).from_indexed_dataset(
            [(1,)], progress=False)
    path = tmp_beton()  # one field: bare values are accepted
    DatasetWriter(path, {'a': IntField()}, num_workers=1).from_indexed_dataset([4, 5], progress=False)
    assert list(Reader(path).metadata['f0']) == [4, 5]


def test_field_definitions_checked(tmp_beton):
    with pytest.raises(TypeError, match="field 'a' must be a Field"):
        DatasetWriter(tmp_beton(), {'a': int})
    with pytest.raises(ValueError, match='share the stored name'), pytest.warns(UserWarning):
        DatasetWriter(tmp_beton(), {'x' * 16 + 'a': IntField(), 'x' * 16 + 'b': IntField()})
    with pytest.warns(UserWarning, match='longer than 16'):
        DatasetWriter(tmp_beton(), {'a_very_long_field_name': IntField()})


def test_from_webdataset(tmp_path, tmp_beton):
    webdataset = pytest.importorskip('webdataset', reason='webdataset is an optional extra')
    rng = np.random.default_rng(0)
    images, shards = [], []
    for shard in range(3):
        name = str(tmp_path / f'shard-{shard}.tar')
        with webdataset.TarWriter(name) as sink:
            for k in range(5 + shard):
                image = photo_like(rng, 24, 20)
                images.append(image)
                sink.write({'__key__': f'{shard}_{k}', 'ppm': image, 'cls': len(images) - 1})
        shards.append(name)
    path = tmp_beton()
    DatasetWriter(path, {'image': RGBImageField(), 'label': IntField()}, num_workers=2).from_webdataset(
        shards, lambda ds: ds.decode('rgb8').to_tuple('ppm', 'cls'), progress=False)
    reader = Reader(path)
    assert reader.num_samples == len(images) == 18
    for i, image in enumerate(images):
        sample = reader.read_sample(i)
        assert sample['label'] == i
        np.testing.assert_array_equal(sample['image'], image)


def test_written_file_has_default_permissions(tmp_beton):
    path = tmp_beton()
    mask = os.umask(0o022)
    try:
        DatasetWriter(path, {'x': IntField()}, num_workers=1).from_indexed_dataset([(1,)], progress=False)
    finally:
        os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o644  # not mkstemp's 0600: other users can read the dataset
