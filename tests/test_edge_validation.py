"""Input validation at the edges: wrong Loader arguments and wrong writer inputs fail at once, clearly.

(test_loader_errors.py covers batch_size 0, a float num_workers, an order string, an index past the end,
batches_ahead 0 and distributed without a process group; test_writer.py a float image and missing values.)
"""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ffcv.fields import BytesField, FloatField, IntField, JSONField, NDArrayField, RGBImageField
from ffcv.loader import Loader, OrderOption
from ffcv.reader import Reader
from ffcv.writer import DatasetWriteError, DatasetWriter

from helpers import write_and_read


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('edges')
    images = write_and_read(str(folder / 'images.beton'), {'image': RGBImageField(), 'label': IntField()},
                            [(np.full((8, 8, 3), i, np.uint8), i) for i in range(20)]).file_name
    scalars = write_and_read(str(folder / 'scalars.beton'), {'a': IntField(), 'b': FloatField()},
                             [(i, i / 2) for i in range(21)]).file_name
    return {'images': images, 'scalars': scalars}


@pytest.mark.parametrize('kwargs, error, message', [
    ({'num_workers': 10**6}, ValueError, 'num_workers=1000000 is more than 1024'),
    ({'batches_ahead': 10**7}, ValueError, 'batches_ahead=10000000 is more than 1024'),
    ({'batch_size': -3}, ValueError, 'batch_size must be a positive integer'),
    ({'batch_size': True}, ValueError, 'batch_size must be a positive integer'),
    ({'indices': [1.5, 2.0]}, TypeError, 'indices must be integers'),
    ({'indices': np.ones(20, bool)}, TypeError, r'boolean mask.*np.flatnonzero\(mask\)'),
    ({'indices': [[1, 2], [3, 4]]}, ValueError, '1-D sequence'),
    ({'indices': [3, -1]}, IndexError, r'\[0, 20\).*got -1'),
    ({'indices': [2**70]}, IndexError, r'\[0, 20\)'),
    ({'indices': ['a']}, TypeError, 'indices must be integers'),
    ({'seed': -1}, ValueError, r'seed must be an integer in \[0, 2\*\*63\)'),
    ({'seed': 2**80}, ValueError, 'seed must be an integer'),
    ({'seed': '7'}, ValueError, 'seed must be an integer'),
    ({'os_cache': 'no'}, TypeError, "os_cache must be True or False, got 'no'"),
    ({'drop_last': 'false'}, TypeError, 'drop_last must be True or False'),
    ({'distributed': 2}, TypeError, 'distributed must be True or False'),
    ({'order': list}, ValueError, 'order must be an OrderOption'),
    ({'order': 'QUASI_RANDOM'}, ValueError, 'order must be an OrderOption'),
    ({'pipelines': [IntField()]}, TypeError, 'pipelines must be a mapping'),
    ({'custom_fields': {'label': int}}, TypeError, "custom field 'label': expected a Field subclass"),
    ({'custom_fields': {'label': IntField()}}, TypeError, 'the class, not an instance'),
])
def test_bad_loader_arguments(files, kwargs, error, message):
    with pytest.raises(error, match=message):
        Loader(files['images'], **{'batch_size': 4, **kwargs})


def test_accepted_spellings(files):
    loader = Loader(files['images'], batch_size=4, num_workers=-7, os_cache=np.bool_(True), drop_last=0,
                    indices=np.array([3, 1], np.uint8), seed=np.int64(5))
    assert loader.num_workers >= 1 and loader.drop_last is False and loader.seed == 5
    assert [labels.reshape(-1).tolist() for _, labels in loader] == [[3, 1]]
    assert len(Loader(files['images'], batch_size=4, indices=[])) == 0


def test_absurd_batch_size_fails_before_allocating(files):
    loader = Loader(files['images'], batch_size=10**12, drop_last=False)
    with pytest.raises(MemoryError, match='batch buffers need .* lower batch_size'):
        iter(loader)


@pytest.mark.parametrize('order', [OrderOption.SEQUENTIAL, OrderOption.RANDOM])
def test_process_cache_on_a_scalar_only_file(files, order):
    with pytest.raises(ValueError, match='scalars.beton has no heap data.*use OrderOption.RANDOM'):
        Loader(files['scalars'], batch_size=4, os_cache=False, order=OrderOption.QUASI_RANDOM)
    loaders = [Loader(files['scalars'], batch_size=4, os_cache=os_cache, order=order, seed=2, drop_last=False)
               for os_cache in (True, False)]
    batches = [[(a.clone(), b.clone()) for a, b in loader] for loader in loaders]
    assert sorted(sum((a.reshape(-1).tolist() for a, _ in batches[1]), [])) == list(range(21))
    for (a1, b1), (a2, b2) in zip(*batches):
        assert torch.equal(a1, a2) and torch.equal(b1, b2) and torch.equal(b2, a2 / 2)


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(IsADirectoryError, match='is a directory'):
        Reader(tmp_path)
    with pytest.raises(IsADirectoryError, match='is a directory'):
        DatasetWriter(str(tmp_path), {'a': IntField()})
    with pytest.raises(FileNotFoundError, match='does not exist'):
        DatasetWriter(str(tmp_path / 'missing' / 'x.beton'), {'a': IntField()})


def gray(shape):
    return np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)


@pytest.mark.parametrize('image, expected', [
    (gray((5, 7)), np.repeat(gray((5, 7))[:, :, None], 3, 2)),
    (gray((5, 7, 1)), np.repeat(gray((5, 7)), 3).reshape(5, 7, 3)),
    (Image.fromarray(gray((5, 7))), np.repeat(gray((5, 7))[:, :, None], 3, 2)),
    (Image.fromarray(np.dstack([gray((5, 7))] * 3 + [np.zeros((5, 7), np.uint8)]), 'RGBA'),
     np.dstack([gray((5, 7))] * 3)),  # PIL's convert('RGB') drops alpha
    (gray((6, 8, 3))[:, ::2], gray((6, 8, 3))[:, ::2]),  # non-contiguous view
])
def test_non_rgb_images_are_converted(tmp_beton, image, expected):
    reader = write_and_read(tmp_beton(), {'image': RGBImageField()}, [(image,)])
    np.testing.assert_array_equal(reader.read_sample(0)['image'], expected)


@pytest.mark.parametrize('fields, value, message', [
    ({'x': RGBImageField()}, np.zeros((4, 4, 4), np.uint8), r'shape \(H, W, 3\), got \(4, 4, 4\)'),
    ({'x': RGBImageField()}, np.zeros((4, 4, 3), np.int16), 'must be uint8, got dtype int16'),
    ({'x': RGBImageField()}, np.zeros((0, 4, 3), np.uint8), 'image is empty'),
    ({'x': RGBImageField()}, torch.zeros(3, 4, 4, dtype=torch.uint8), 'got a torch tensor'),
    ({'x': RGBImageField()}, np.zeros((70000, 1, 3), np.uint8), 'at most 65535'),
    ({'x': NDArrayField(np.float32, (2, 3))}, np.zeros((3, 2), np.float32), r'expected shape \(2, 3\)'),
    ({'x': NDArrayField(np.float32, (2, 3))}, np.zeros((2, 3), np.float64), 'dtype float32.*got.*float64'),
    ({'x': IntField()}, 2.5, 'expected an integer, got float'),
    ({'x': IntField()}, 2**64, 'does not fit in int64'),
    ({'x': FloatField()}, 'nan', 'expected a real number'),
    ({'x': BytesField()}, 'text', 'expected bytes'),
    ({'x': JSONField()}, {1, 2}, 'not JSON serializable'),
])
@pytest.mark.parametrize('workers', [1, 2])
def test_bad_values_name_the_sample_and_leave_no_file(tmp_beton, fields, value, message, workers):
    good = {RGBImageField: np.zeros((4, 4, 3), np.uint8), NDArrayField: np.zeros((2, 3), np.float32), IntField: 1,
            FloatField: 1.0, BytesField: b'x', JSONField: [1]}[type(fields['x'])]
    samples = [(good,)] * 30 + [(value,)] + [(good,)] * 9
    path = tmp_beton()
    with pytest.raises(DatasetWriteError, match=f"sample 30 \\(row 30\\), field 'x'.*{message}"):
        DatasetWriter(path, fields, num_workers=workers).from_indexed_dataset(samples, chunksize=7, progress=False)
    assert os.listdir(os.path.dirname(path)) == []


def test_values_that_look_like_provisional_pointers(tmp_beton):
    """Regression (found by test_field_properties): the writer marks heap pointers in a row with a tag
    value while encoding; an IntField or FloatField value equal to a tag was overwritten by a file offset."""
    from ffcv.writer import _PROVISIONAL_TAG, _SECOND_TAG
    tags = [_PROVISIONAL_TAG, _PROVISIONAL_TAG + 1, _SECOND_TAG, _SECOND_TAG + 1]
    as_float = [np.uint64(t).view(np.float64) for t in tags]
    samples = [(tags[k], b'xy'[:k % 3], as_float[k], {'k': k}) for k in range(4)]
    reader = write_and_read(tmp_beton(), {'i': IntField(), 'b': BytesField(), 'f': FloatField(), 'j': JSONField()},
                            samples, num_workers=2, chunksize=2)
    for k, (value, blob, real, meta) in enumerate(samples):
        sample = reader.read_sample(k)
        assert sample['i'] == value and bytes(sample['b']) == blob and sample['j'] == meta
        assert np.float64(sample['f']).tobytes() == real.tobytes()
