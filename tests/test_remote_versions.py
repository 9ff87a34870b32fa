"""Servers without ETags (a real nginx with ``etag off;``): the Last-Modified date is then the version that
every ranged response is checked against, a same-size rewrite is caught; with no version tag at all the
file still reads correctly, a warning (once per URL) says that a same-size change cannot be detected, and
a change of size stops the run with RemoteFileChangedError, never a batch of mixed data."""
from __future__ import annotations

import os
import shutil
import time
import warnings

import pytest

from ffcv.loader import Loader, OrderOption
from ffcv.remote import RemoteFile, RemoteFileChangedError

import servers
from helpers import collect, same_batches, write_blob_file

pytest.importorskip('aiohttp', reason='the remote extra is not installed (pip install -e .[dev])')
BATCH = 4
UNVERSIONED = 'ignore:.*neither an ETag nor a Last-Modified:RuntimeWarning'


@pytest.fixture(scope='module')
def local_file(tmp_path_factory):
    """40 samples of 20-120 KB on 2 MiB pages (2-3 pages), plus a label."""
    return write_blob_file(tmp_path_factory.mktemp('versions') / 'data.beton', 40, (20_000, 120_000), 17)


def serve(local_file, name, age_s=0):
    """Copy `local_file` to nginx's folder as `name`, last modified `age_s` seconds ago; its path there."""
    target = os.path.join(servers.nginx().root, name)
    shutil.copy(local_file, target)
    if age_s:
        past = time.time() - age_s
        os.utime(target, (past, past))
    return target


def loader(url, **kwargs):
    """SEQUENTIAL, one batch at a time, pages fetched as their batch starts (local paths: the OS cache)."""
    if '://' in url:
        kwargs.setdefault('remote', {'prefetch': 0, 'retries': 1})
    return Loader(url, batch_size=BATCH, num_workers=1, batches_ahead=1, seed=2, drop_last=False,
                  order=OrderOption.SEQUENTIAL, **kwargs)


def test_without_an_etag_the_last_modified_date_is_the_version(local_file):
    serve(local_file, 'dated.beton')
    url = servers.nginx().url('dated.beton', etag=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a Last-Modified date is a version: no warning
        remote = RemoteFile(url)
        assert (remote.version_kind, remote.etag) == ('Last-Modified', None) and remote.version.endswith('GMT')
        assert same_batches(collect(loader(url)), collect(loader(local_file)))


def test_without_any_version_tag_the_file_reads_and_a_warning_names_the_url(local_file):
    serve(local_file, 'plain.beton')
    url = servers.nginx().url('plain.beton', etag=False, last_modified=False)
    with pytest.warns(RuntimeWarning, match='plain.beton: the server reports neither an ETag nor a Last-Modified '
                                            'date .* a change of the object that keeps its size cannot be detected'):
        remote = loader(url)
    assert remote.reader.remote.version is None
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # once per URL
        assert same_batches(collect(remote), collect(loader(local_file)))
        RemoteFile(url)


@pytest.mark.filterwarnings(UNVERSIONED)
@pytest.mark.parametrize('last_modified', [True, False])
def test_a_change_of_size_stops_the_run_and_no_batch_mixes_versions(local_file, last_modified):
    name = f'growing-{last_modified}.beton'
    target = serve(local_file, name)
    remote = loader(servers.nginx().url(name, etag=False, last_modified=last_modified))
    expected = collect(loader(local_file))
    served, iterator = [], iter(remote)
    served.append(tuple(t.clone() for t in next(iterator)))
    with open(target, 'ab') as handle:
        handle.write(b'\0' * 16)  # another size (its data pages unchanged: only the check can tell)
    with pytest.raises(RemoteFileChangedError, match=f'{name}: .*changed after it was opened'):
        for batch in iterator:
            served.append(tuple(t.clone() for t in batch))
    assert 1 <= len(served) < len(expected) and same_batches(served, expected[:len(served)])


@pytest.mark.parametrize('newer', [True, False])
def test_a_same_size_rewrite_is_caught_by_the_last_modified_date(local_file, newer):
    """Rewritten in place (a newer date: the server refuses If-Unmodified-Since) or restored from a copy that
    kept an older date (the server answers, and the date in its answer differs)."""
    name = f'rewritten-{newer}.beton'
    target = serve(local_file, name, age_s=100)
    url = servers.nginx().url(name, etag=False)
    remote = loader(url)
    iterator = iter(remote)
    next(iterator)
    with open(target, 'r+b') as handle:  # the same size, other bytes in every data page
        data = bytearray(handle.read())
        start = remote.reader.data_start
        data[start:] = bytes(255 - b for b in data[start:])
        handle.seek(0)
        handle.write(data)
    past = time.time() - (0 if newer else 200)
    os.utime(target, (past, past))
    with pytest.raises(RemoteFileChangedError, match=f'{name}: .*changed after it was opened'):
        for _ in iterator:
            pass
    with pytest.raises(RemoteFileChangedError, match='Last-Modified'):
        remote.reader.remote.read(0, 10)  # (each ranged read checks it)
