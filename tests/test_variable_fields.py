"""Variable-length samples: NDArrayField(dtype, (None, ...)) and BytesField, padded (+ lengths) or as lists.

Every decoded batch is compared with a NumPy reference built from the written values.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ffcv.fields import BytesField, IntField, JSONField, NDArrayField
from ffcv.fields.decoders import (BytesListDecoder, NDArrayDecoder, NDArrayListDecoder, PaddedBytesDecoder,
                                  PaddedNDArrayDecoder)
from ffcv.fields.ndarray import VARIABLE_METADATA
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.pipeline_spec import PipelineError, PipelineSpec
from ffcv.reader import CorruptFileError, Reader
from ffcv.transforms import ToDevice, ToTensor
from ffcv.types import FieldDescType, HeaderType
from ffcv.writer import DatasetWriteError, DatasetWriter
from helpers import load_script

ANCHOR = Path(load_script('benchmarks/anchor.py', 'variable_anchor').default_anchor_python())


def write(path, fields, samples):
    DatasetWriter(path, fields, num_workers=1).from_indexed_dataset(samples, chunksize=7, progress=False)


def padded_reference(values, length, pad, dtype, row_shape):
    out = np.full((len(values), length, *row_shape), pad, dtype=dtype)
    for i, value in enumerate(values):
        n = min(len(value), length)
        out[i, :n] = value[:n]
    return out, np.array([min(len(v), length) for v in values], np.int64)


def snapshot(value):
    """A copy of a loader output (its buffers are reused a few batches later)."""
    if isinstance(value, (tuple, list)):
        return type(value)(snapshot(v) for v in value)
    return value.clone() if isinstance(value, torch.Tensor) else np.array(value)


def batches(path, pipelines, batch_size=5, **kwargs):
    loader = Loader(path, batch_size=batch_size, num_workers=2, order=OrderOption.SEQUENTIAL, pipelines=pipelines,
                    drop_last=False, **kwargs)
    return [snapshot(batch) for batch in loader]


ROW_SHAPES = st.sampled_from([(), (4,), (2, 3)])
DTYPES = st.sampled_from(['float32', 'int16', 'uint8', 'float64'])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(0, 9), min_size=1, max_size=23), row_shape=ROW_SHAPES, dtype=DTYPES,
       seed=st.integers(0, 2**32 - 1))
def test_random_ragged_round_trip_padded_and_list(tmp_beton, lengths, row_shape, dtype, seed):
    rng = np.random.default_rng(seed)
    values = [(rng.standard_normal((n, *row_shape)) * 50).astype(dtype) for n in lengths]
    path = tmp_beton()
    write(path, {'x': NDArrayField(np.dtype(dtype), (None, *row_shape)), 'i': IntField()},
          [(v, i) for i, v in enumerate(values)])
    longest = max(lengths)
    padded = batches(path, {'x': [PaddedNDArrayDecoder(pad_value=7)], 'i': None})
    listed = batches(path, {'x': [NDArrayListDecoder(), ToTensor()], 'i': None})
    got_padded = np.concatenate([batch[0][0] for batch in padded])
    got_lengths = np.concatenate([batch[0][1] for batch in padded])
    want, want_lengths = padded_reference(values, longest, 7, dtype, row_shape)
    np.testing.assert_array_equal(got_padded, want)
    np.testing.assert_array_equal(got_lengths, want_lengths)
    flat = [item for batch in listed for item in batch[0]]
    assert len(flat) == len(values)
    for got, value in zip(flat, values):
        assert isinstance(got, torch.Tensor) and got.dtype == torch.from_numpy(value).dtype
        np.testing.assert_array_equal(got.numpy(), value)
    reader = Reader(path)
    for i in (0, len(values) - 1):
        np.testing.assert_array_equal(reader.read_sample(i)['x'], values[i])


@pytest.mark.parametrize('jit', [True, False])
def test_max_length_truncate_pad_value_and_default_pipeline(tmp_beton, rng, jit):
    values = [rng.integers(-9, 9, (n, 2)).astype(np.int32) for n in (0, 1, 5, 3, 8, 2, 7)]
    path = tmp_beton()
    write(path, {'boxes': NDArrayField(np.dtype('int32'), (None, 2))}, [(v,) for v in values])
    previous = Compiler.is_enabled
    Compiler.set_enabled(jit)
    try:  # the process cache (os_cache=False) with plain Python, the memory map with compiled kernels
        (data, lengths), = batches(path, {'boxes': [PaddedNDArrayDecoder(4, pad_value=99, truncate=True),
                                                    ToTensor(), ToDevice('cpu')]}, batch_size=7, os_cache=jit)[0]
        default, = batches(path, {}, batch_size=7)[0]  # field not named: default decoder + ToTensor
    finally:
        Compiler.set_enabled(previous)
    want, want_lengths = padded_reference(values, 4, 99, np.int32, (2,))
    assert isinstance(data, torch.Tensor) and isinstance(lengths, torch.Tensor) and lengths.dtype == torch.int64
    np.testing.assert_array_equal(data.numpy(), want)
    np.testing.assert_array_equal(lengths.numpy(), want_lengths)
    want, want_lengths = padded_reference(values, 8, 0, np.int32, (2,))
    np.testing.assert_array_equal(default[0].numpy(), want)
    np.testing.assert_array_equal(default[1].numpy(), want_lengths)


def test_sample_beyond_max_length_fails_at_loader_naming_it(tmp_beton):
    path = tmp_beton()
    write(path, {'tokens': NDArrayField(np.dtype('int64'), (None,))}, [(np.arange(n),) for n in (2, 3, 9, 4)])
    with pytest.raises(PipelineError, match=r"pipeline 'tokens'.*sample 2 has 9 rows, more than max_length=4"):
        Loader(path, batch_size=2, pipelines={'tokens': [NDArrayListDecoder(max_length=4)]})
    with pytest.raises(PipelineError, match='NDArrayDecoder.*cannot decode|PaddedNDArrayDecoder'):
        Loader(path, batch_size=2, pipelines={'tokens': [NDArrayDecoder()]})
    with pytest.raises(ValueError, match='pad_value 300 cannot be stored as uint8'):
        write(path + '2', {'b': NDArrayField(np.dtype('uint8'), (None,))}, [(np.zeros(2, np.uint8),)])
        Loader(path + '2', batch_size=2, pipelines={'b': [PaddedNDArrayDecoder(pad_value=300)]})


def test_lists_are_written_and_converted_only_when_exact(tmp_beton):
    path = tmp_beton()
    samples = [([[1.5, 2, 3, 4]],), ([],), ([[0, 0, 1, 1], [2, 2, 3, 3]],)]
    write(path, {'boxes': NDArrayField(np.dtype('float32'), (None, 4))}, samples)
    got = [x for batch in batches(path, {'boxes': [NDArrayListDecoder()]}) for x in batch[0]]
    for value, (want,) in zip(got, samples):
        np.testing.assert_array_equal(value, np.array(want, np.float32).reshape(-1, 4))


def _assert_nothing_written(path):
    folder = os.path.dirname(path)
    assert not os.path.exists(path)
    assert not [name for name in os.listdir(folder) if name.endswith('.partial')]


@pytest.mark.parametrize('field, bad, message', [
    (NDArrayField(np.dtype('float32'), (None, 4)), [[1, 2, 3, 4], [1, 2, 3]], 'ragged'),
    (NDArrayField(np.dtype('float32'), (None, 4)), np.zeros((2, 4), np.float64), 'expected dtype float32'),
    (NDArrayField(np.dtype('float32'), (None, 4)), np.zeros((2, 3), np.float32), r'shape \(n, 4\)'),
    (NDArrayField(np.dtype('int16'), (None,)), [1, 2.5], 'cannot be stored as int16'),
    (NDArrayField(np.dtype('int16'), (None,)), [1, 70000], 'cannot be stored as int16'),
    (NDArrayField(np.dtype('float32'), (3, 4)), np.zeros((2, 4), np.float32), r'expected shape \(3, 4\)'),
    (NDArrayField(np.dtype('float32'), (3, 4)), [[0] * 4] * 3, 'expected a numpy array'),
])
def test_bad_values_name_the_sample_and_field_and_write_nothing(tmp_beton, field, bad, message):
    path = tmp_beton()
    good = np.zeros((3, 4), np.float32) if field.shape == (3, 4) else np.zeros((1, *field.row_shape), field.dtype)
    samples = [(good, 0)] * 5 + [(bad, 1)] + [(good, 0)] * 3
    with pytest.raises(DatasetWriteError, match=rf"sample 5 \(row 5\), field 'x'.*{message}"):
        write(path, {'x': field, 'y': IntField()}, samples)
    _assert_nothing_written(path)


def test_bytes_padded_and_listed_exact(tmp_beton, rng):
    blobs = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 3, 17, 1, 40, 8)]
    path = tmp_beton()
    write(path, {'b': BytesField(), 'j': JSONField()}, [(b, {'n': len(b)}) for b in blobs])
    (padded, lengths), listed = batches(path, {'b': [PaddedBytesDecoder(20, pad_value=255, truncate=True)],
                                               'j': [BytesListDecoder()]}, batch_size=6)[0]
    want, want_lengths = padded_reference([np.frombuffer(b, np.uint8) for b in blobs], 20, 255, np.uint8, ())
    np.testing.assert_array_equal(padded, want)
    np.testing.assert_array_equal(lengths, want_lengths)
    assert [JSONField.unpack(row) for row in listed] == [{'n': len(b)} for b in blobs]
    assert [row.size for row in listed] == [len(f'{{"n": {len(b)}}}') + 1 for b in blobs]  # text + NUL


def test_lists_same_for_any_thread_count_and_in_a_branch(tmp_beton, rng):
    values = [rng.standard_normal((int(n), 3)).astype(np.float32) for n in rng.integers(0, 6, 30)]
    path = tmp_beton()
    write(path, {'x': NDArrayField(np.dtype('float32'), (None, 3))}, [(v,) for v in values])
    runs = []
    for workers in (1, 3):
        decoder = NDArrayListDecoder()
        loader = Loader(path, batch_size=4, num_workers=workers, order=OrderOption.RANDOM, seed=3, drop_last=False,
                        pipelines={'x': [decoder, ToTensor()], 'copy': PipelineSpec(decoder, transforms=[ToTensor()])})
        batches_seen = [snapshot(batch) for batch in loader]
        for first, branch in batches_seen:
            assert len(first) == len(branch) and all(torch.equal(a, b) for a, b in zip(first, branch))
        runs.append([torch.cat([t.reshape(-1) for t in batch[0]]) for batch in batches_seen])
    assert len(runs[0]) == 8 and all(torch.equal(a, b) for a, b in zip(*runs))
    assert sorted(torch.cat(runs[0]).tolist()) == sorted(np.concatenate([v.reshape(-1) for v in values]).tolist())


def test_the_dtype_json_ffcv_parses_is_refused_by_numpy_with_the_reason():
    """FFCV 1.0.2 parses the dtype JSON at byte 264 of NDArrayField's arguments and calls np.dtype on it."""
    arguments = NDArrayField(np.dtype('float32'), (None, 2)).to_binary()[0]
    length = int(arguments[256:264].view('<u8')[0])
    descr = [tuple(x) for x in json.loads(arguments[264:264 + length].tobytes().decode('ascii'))]
    with pytest.raises(TypeError, match='variable-length NDArrayField.*FFCV 1.0.2 cannot read this field'):
        np.dtype(descr)
    fixed = NDArrayField(np.dtype('float32'), (3, 2)).to_binary()[0]
    assert json.loads(fixed[264:264 + int(fixed[256:264].view('<u8')[0])].tobytes()) == [['', '<f4']]


@pytest.mark.slow  # importing FFCV 1.0.2 takes about 35 s here; the test above checks the same text quickly
@pytest.mark.skipif(not ANCHOR.exists(), reason='FFCV 1.0.2 environment not built (scripts/setup_ffcv_anchor.sh)')
def test_ffcv_102_refuses_a_variable_field_with_the_reason(tmp_beton):
    path = tmp_beton()
    write(path, {'x': NDArrayField(np.dtype('float32'), (None, 2)), 'y': IntField()}, [(np.zeros((1, 2), 'f4'), 1)])
    code = ('from ffcv.reader import Reader\nimport sys\ntry:\n    Reader(sys.argv[1])\nexcept Exception as e:\n'
            '    print(type(e).__name__, e)\n')
    out = subprocess.run([str(ANCHOR), '-I', '-c', code, path], capture_output=True, text=True, timeout=120).stdout
    assert 'variable-length NDArrayField' in out and 'FFCV 1.0.2 cannot read this field' in out, out


def test_a_corrupt_length_is_caught_when_the_file_opens(tmp_beton):
    path = tmp_beton()
    write(path, {'y': IntField(), 'x': NDArrayField(np.dtype('float32'), (None, 4))},
          [(i, np.ones((i, 4), np.float32)) for i in range(4)])
    reader = Reader(path)
    at = HeaderType.itemsize + FieldDescType.itemsize * 2 + 2 * reader.metadata_type.itemsize  # sample 2's row
    at += reader.metadata_type.fields['f1'][1] + VARIABLE_METADATA.fields['length'][1]
    with open(path, 'r+b') as f:
        f.seek(at)
        f.write(np.uint64(1000).tobytes())
    with pytest.raises(CorruptFileError, match="sample 2, field 'x': metadata says 16000 bytes"):
        Reader(path)
