"""Remote files over HTTP (a real nginx on loopback): Reader and Loader by URL, pages fetched ahead once per
epoch, the shared disk page cache, permanent errors and objects that change during a run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ffcv.fields import BytesField, IntField
from ffcv.loader import Loader, OrderOption
from ffcv.memory_managers.process_cache.schedule import page_data_ends
from ffcv.memory_managers.remote import RemoteCacheManager
from ffcv.reader import Reader
from ffcv.remote import RemoteFile, RemoteFileChangedError, RemoteFileError
from ffcv.remote.page_store import PageStore
from ffcv.writer import DatasetWriter

import servers
from helpers import collect, same_batches, write_blob_file

pytest.importorskip('aiohttp', reason='the remote extra is not installed (pip install -e .[dev])')
PAGE = 1 << 21
BATCH = 8


@pytest.fixture(scope='module')
def local_file(tmp_path_factory):
    """100 samples of 60-240 KB on 2 MiB pages (about 8 pages), plus a label."""
    return write_blob_file(tmp_path_factory.mktemp('remote') / 'data.beton', 100, (60_000, 240_000), 7, PAGE)


@pytest.fixture(scope='module')
def http_url(local_file):
    server = servers.nginx()
    shutil.copy(local_file, os.path.join(server.root, 'data.beton'))
    return server.url('data.beton')


def loader(fname, **kwargs):
    kwargs.setdefault('order', OrderOption.QUASI_RANDOM)
    return Loader(fname, batch_size=BATCH, num_workers=2, seed=5, drop_last=False, **kwargs)


def test_reader_by_url_matches_local_in_few_requests(local_file, http_url):
    local, remote = Reader(local_file), Reader(http_url)
    # size and ETag; header + field table + metadata (one range); the allocation table
    assert remote.remote.stats['requests'] == 3
    assert remote.num_samples == local.num_samples and remote.field_names == local.field_names
    np.testing.assert_array_equal(remote.metadata, local.metadata)
    np.testing.assert_array_equal(remote.alloc_table, local.alloc_table)
    for index in (0, 37, 99):
        np.testing.assert_array_equal(remote.read_sample(index)['blob'], local.read_sample(index)['blob'])


def test_a_truncated_remote_file_is_a_clear_error(local_file):
    from ffcv.reader import CorruptFileError
    server = servers.nginx()
    with open(local_file, 'rb') as source, open(os.path.join(server.root, 'cut.beton'), 'wb') as target:
        target.write(source.read()[:-100])
    with pytest.raises(CorruptFileError, match='cut.beton: allocation table .* truncated'):
        Reader(server.url('cut.beton'))


def test_loader_by_url_gives_the_local_batches_and_fetches_each_page_once(local_file, http_url, tmp_path):
    local = loader(local_file)
    expected = collect(local)
    remote = loader(http_url, remote={'cache_dir': os.fspath(tmp_path / 'cache'), 'connections': 3})
    manager = remote.memory_manager
    assert isinstance(manager, RemoteCacheManager)
    pages = remote.reader.sample_pages()[1]
    assert same_batches(collect(remote), expected)
    assert manager.store.stats['fetches'] == len(np.unique(pages))  # QUASI_RANDOM: each page once
    requests = manager.remote.stats['requests']
    assert same_batches(collect(remote), collect(local))  # epoch 2 (its own order), from disk
    assert manager.remote.stats['requests'] - requests == 1  # only the per-epoch check that it is unchanged
    assert manager.store.stats['disk_hits'] >= len(np.unique(pages))


def test_without_a_cache_folder_every_epoch_fetches_again(local_file, http_url):
    remote = loader(http_url, order=OrderOption.RANDOM)
    expected = loader(local_file, order=OrderOption.RANDOM)
    for _ in range(2):
        assert same_batches(collect(remote), collect(expected))
    assert remote.memory_manager.store.stats['fetches'] == 2 * len(np.unique(remote.reader.sample_pages()[1]))


def test_a_subset_fetches_only_its_pages(http_url):
    remote = loader(http_url, indices=list(range(0, 12)), order=OrderOption.SEQUENTIAL)
    collect(remote)
    offsets, pages, _ = remote.reader.sample_pages()
    assert remote.memory_manager.store.stats['fetches'] == len(np.unique(pages[offsets[0]:offsets[12]]))


def test_distributed_ranks_fetch_only_the_pages_of_their_samples(http_url, monkeypatch):
    from ffcv.traversal_order import base as order_base
    fetched = []
    for rank in range(2):
        monkeypatch.setattr(order_base, 'distributed_rank_and_size', lambda rank=rank: (rank, 2))
        remote = loader(http_url, distributed=True)
        offsets, pages, _ = remote.reader.sample_pages()
        share = remote.next_traversal_order()
        collect(remote)
        own = np.unique(np.concatenate([pages[offsets[s]:offsets[s + 1]] for s in share]))
        assert remote.memory_manager.store.stats['fetches'] == own.size
        fetched.append(own.size)
    assert sum(fetched) < 2 * len(np.unique(pages))  # the ranks split the file's pages (a few are shared)


def test_processes_sharing_a_cache_fetch_each_page_once(local_file, http_url, tmp_path):
    """Stores with their own lock files (as separate processes have) racing for the same pages."""
    stores = [PageStore(RemoteFile(http_url), PAGE, os.fspath(tmp_path)) for _ in range(4)]
    reference = Reader(local_file)
    _, pages, num_pages = reference.sample_pages()
    sizes = page_data_ends(reference.alloc_table, reference.page_shift, num_pages)
    ends = {int(page): int(sizes[page]) for page in np.unique(pages)}
    results = {}

    def work(index):
        for page, size in ends.items():
            buffer = bytearray(PAGE)
            stores[index].load(page, size, memoryview(buffer))
            results[index, page] = bytes(buffer[:size])
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(store.stats['fetches'] for store in stores) == len(ends)
    with open(local_file, 'rb') as handle:
        data = handle.read()
    for (index, page), content in results.items():
        assert content == data[page * PAGE:page * PAGE + len(content)]
    assert not [name for name in os.listdir(stores[0].folder) if name.endswith('.tmp')]


@pytest.mark.slow(reason='three fresh processes import torch and compile their pipelines (about 30-90 s on 2 '
                        'cores); test_processes_sharing_a_cache_fetch_each_page_once covers the locking fast')
def test_separate_processes_share_the_page_cache(local_file, http_url, tmp_path):
    """Three processes loading the same epoch at once, as ranks of a node do: each page is fetched once."""
    script = ('import json, sys\n'
              'from ffcv.loader import Loader, OrderOption\n'
              'loader = Loader(sys.argv[1], batch_size=8, num_workers=1, order=OrderOption.SEQUENTIAL, '
              'remote={"cache_dir": sys.argv[2]})\n'
              'total = sum(int(blob.sum()) for blob, _ in loader)\n'
              'print(json.dumps({"total": total, **loader.memory_manager.store.stats}))\n')
    processes = [subprocess.Popen([sys.executable, '-c', script, http_url, os.fspath(tmp_path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    expected = sum(int(blob.sum()) for blob, _ in Loader(local_file, batch_size=8, num_workers=1))
    assert [r['total'] for r in results] == [expected] * 3
    assert sum(r.get('fetches', 0) for r in results) == len(np.unique(Reader(local_file).sample_pages()[1]))


def test_cache_keeps_recent_pages_within_its_size_and_ignores_partial_files(http_url, tmp_path):
    store = PageStore(RemoteFile(http_url), PAGE, os.fspath(tmp_path), cache_size=3 * PAGE)
    stale = os.path.join(store.folder, '00000000.abcd.tmp')  # a dead writer's temporary file
    with open(stale, 'wb') as handle:
        handle.write(b'half a page')
    buffer = memoryview(bytearray(PAGE))
    for page in range(5):
        store.load(page, PAGE, buffer)
        time.sleep(0.02)  # distinct modification times
    kept = sorted(name for name in os.listdir(store.folder) if name.endswith('.page'))
    assert sum(os.path.getsize(os.path.join(store.folder, n)) for n in kept) <= 3 * PAGE
    assert kept[-1] == '00000004.page' and '00000000.page' not in kept
    os.utime(stale, (0, 0))
    PageStore(RemoteFile(http_url), PAGE, os.fspath(tmp_path), cache_size=3 * PAGE)
    assert not os.path.exists(stale)  # removed by the next store that opens the folder


def test_a_full_cache_disk_warns_and_the_run_goes_on(http_url, tmp_path, monkeypatch):
    import errno
    from ffcv.remote import page_store

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(page_store.tempfile, 'mkstemp', full_disk)  # the disk refuses every new page file
    store = PageStore(RemoteFile(http_url), PAGE, os.fspath(tmp_path))
    buffer = memoryview(bytearray(PAGE))
    with pytest.warns(RuntimeWarning, match='cannot store pages'):
        store.load(0, 1000, buffer)
    store.load(1, 1000, buffer)
    assert store.stats['store_errors'] == 2 and store.stats['fetches'] == 2


def test_missing_object_is_one_clear_error(http_url):
    url = http_url.replace('data.beton', 'missing.beton')
    with pytest.raises(RemoteFileError, match='missing.beton.*not found') as info:
        Loader(url, batch_size=4)
    assert 'retr' not in str(info.value)


def test_missing_extra_names_the_pip_command(monkeypatch, http_url):
    monkeypatch.setitem(sys.modules, 'fsspec', None)
    with pytest.raises(ImportError, match=r"pip install 'ffcv-fast\[remote\]'"):
        Reader(http_url)


def test_object_replaced_during_a_run_stops_it(local_file, tmp_path):
    server = servers.nginx()
    target = os.path.join(server.root, 'changing.beton')
    shutil.copy(local_file, target)
    remote = loader(server.url('changing.beton'), order=OrderOption.SEQUENTIAL, batches_ahead=1,
                    remote={'prefetch': 0, 'retries': 1})
    iterator = iter(remote)
    next(iterator)
    shutil.copy(local_file, target + '.new')
    with open(target + '.new', 'ab') as handle:
        handle.write(b'\0' * 16)  # a new version: another size and ETag
    os.replace(target + '.new', target)
    with pytest.raises(RemoteFileChangedError, match='changed after it was opened'):
        for _ in iterator:
            pass
    with pytest.raises(RemoteFileChangedError):  # and the next epoch stops at its first batch
        next(iter(remote))


def test_a_change_is_found_when_every_page_comes_from_the_disk_cache(local_file, tmp_path):
    server = servers.nginx()
    target = os.path.join(server.root, 'cached.beton')
    shutil.copy(local_file, target)
    remote = loader(server.url('cached.beton'), remote={'cache_dir': os.fspath(tmp_path), 'retries': 1})
    collect(remote)  # every page now on disk
    collect(remote)  # (epoch 1 checks the version beside its batches)
    with open(target, 'ab') as handle:
        handle.write(b'\0' * 16)
    with pytest.raises(RemoteFileChangedError, match='changed after it was opened'):
        collect(remote)  # the check started with this epoch finds the change: reported by the next page
        collect(remote)  # loaded, at the latest when the next epoch starts


def test_any_fsspec_url_writes_and_loads(local_file, tmp_path):
    """A file system without atomic uploads (fsspec's in-memory one): uploaded under a temporary name, renamed."""
    import fsspec
    samples = [(np.full(500 + i, i, np.uint8), i) for i in range(20)]
    fields = {'blob': BytesField(), 'label': IntField()}
    DatasetWriter('memory://ffcv-tests/any.beton', fields, num_workers=1).from_indexed_dataset(samples, progress=False)
    assert fsspec.filesystem('memory').ls('/ffcv-tests', detail=False) == ['/ffcv-tests/any.beton']
    local = os.fspath(tmp_path / 'any.beton')
    DatasetWriter(local, fields, num_workers=1).from_indexed_dataset(samples, progress=False)
    kwargs = dict(order=OrderOption.RANDOM)
    assert same_batches(collect(loader('memory://ffcv-tests/any.beton', **kwargs)), collect(loader(local, **kwargs)))
