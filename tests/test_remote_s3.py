"""Remote files in S3 (a real SeaweedFS on loopback, driven through s3fs as a cloud bucket): the Loader by
URL gives the local batches, credentials and missing keys are clear errors, a replaced object stops a run."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ffcv.fields import BytesField, IntField
from ffcv.writer import DatasetWriter
from ffcv.loader import Loader, OrderOption
from ffcv.reader import Reader
from ffcv.remote import RemoteFileChangedError, RemoteFileError

import servers
from helpers import collect, same_batches, write_blob_file

pytest.importorskip('s3fs', reason='the remote extra is not installed (pip install -e .[dev])')
BATCH = 8


@pytest.fixture(scope='module')
def s3(tmp_path_factory):
    """(local path, server): 60 samples of 50-200 KB on 2 MiB pages, uploaded as s3://ffcv-test/data.beton."""
    server = servers.seaweed()
    path = write_blob_file(tmp_path_factory.mktemp('s3') / 'data.beton', 60, (50_000, 200_000), 11)
    server.filesystem().put_file(path, 'ffcv-test/data.beton')
    return path, server


def options(server, **extra):
    return {'storage_options': server.storage_options, **extra}


def test_loader_from_s3_gives_the_local_batches(s3, tmp_path):
    path, server = s3
    local = Loader(path, batch_size=BATCH, num_workers=2, seed=3, order=OrderOption.QUASI_RANDOM)
    remote = Loader('s3://ffcv-test/data.beton', batch_size=BATCH, num_workers=2, seed=3,
                    order=OrderOption.QUASI_RANDOM, remote=options(server, cache_dir=os.fspath(tmp_path)))
    assert remote.reader.remote.stats['requests'] == 3
    for _ in range(2):
        assert same_batches(collect(remote), collect(local))
    store = remote.memory_manager.store
    assert store.stats['fetches'] == len(np.unique(remote.reader.sample_pages()[1]))  # once, then from disk


def test_bad_credentials_and_missing_keys_are_clear_errors(s3):
    _, server = s3
    wrong = {**server.storage_options, 'secret': 'not-the-secret'}
    with pytest.raises(RemoteFileError, match=r's3://ffcv-test/data.beton: .*(denied|credentials|Forbidden|403)'):
        Reader('s3://ffcv-test/data.beton', remote={'storage_options': wrong, 'retries': 1})
    with pytest.raises(RemoteFileError, match='s3://ffcv-test/nothing.beton: .*not found'):
        Reader('s3://ffcv-test/nothing.beton', remote=options(server))


def test_object_replaced_in_the_bucket_stops_the_run(s3):
    path, server = s3
    fs = server.filesystem()
    fs.put_file(path, 'ffcv-test/changing.beton')
    remote = Loader('s3://ffcv-test/changing.beton', batch_size=BATCH, num_workers=1, batches_ahead=1,
                    order=OrderOption.SEQUENTIAL, remote=options(server, prefetch=0, retries=1))
    iterator = iter(remote)
    next(iterator)
    with open(path, 'rb') as handle:
        fs.pipe('ffcv-test/changing.beton', handle.read() + b'\0' * 16)
    with pytest.raises(RemoteFileChangedError, match='changed after it was opened'):
        for _ in iterator:
            pass


def test_writer_uploads_to_a_url_and_the_key_appears_only_when_complete(s3, tmp_path):
    path, server = s3
    fs = server.filesystem()
    samples = [(np.full(1000 + i, i % 256, np.uint8), i) for i in range(30)]
    fields = {'blob': BytesField(), 'label': IntField()}

    class Failing:
        def __len__(self):
            return len(samples)

        def __getitem__(self, index):
            if index == 20:
                raise RuntimeError('the dataset broke')
            return samples[index]
    with pytest.raises(Exception, match='the dataset broke'):
        DatasetWriter('s3://ffcv-test/written.beton', fields, num_workers=1,
                      remote=options(server)).from_indexed_dataset(Failing(), chunksize=5, progress=False)
    assert not fs.exists('ffcv-test/written.beton')
    DatasetWriter('s3://ffcv-test/written.beton', fields, num_workers=1,
                  remote=options(server)).from_indexed_dataset(samples, progress=False)
    local = os.fspath(tmp_path / 'local.beton')
    DatasetWriter(local, fields, num_workers=1).from_indexed_dataset(samples, progress=False)
    with open(local, 'rb') as handle:
        assert fs.cat('ffcv-test/written.beton') == handle.read()  # the same bytes as written locally
