"""RANDOM order on a file larger than the memory limit, by URL (a real nginx on loopback) and from a local
file: pages not needed again soon are released after a use and loaded again, the batches are those of the
OS cache, memory stays within the limit, and every reload is one more page fetched (or read from disk)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from ffcv.loader import Loader, OrderOption
from ffcv.memory_managers.process_cache.schedule import page_data_ends

import servers
from helpers import collect, same_batches, write_blob_file

pytest.importorskip('aiohttp', reason='the remote extra is not installed (pip install -e .[dev])')
PAGE = 1 << 21
LIMIT = 10 * PAGE  # about a third of the file
BATCH = 2


@pytest.fixture(scope='module')
def local_file(tmp_path_factory):
    """120 samples of 300-700 KB on 2 MiB pages: about 30 pages, 3-4 samples each."""
    return write_blob_file(tmp_path_factory.mktemp('random') / 'random.beton', 120, (300_000, 700_000), 21, PAGE)


@pytest.fixture(scope='module')
def http_url(local_file):
    server = servers.nginx()
    shutil.copy(local_file, os.path.join(server.root, 'random.beton'))
    return server.url('random.beton')


def loader(fname, order=OrderOption.RANDOM, **kwargs):
    """One worker, one batch ahead, pages read one batch ahead: the pages in flight are those of 3 batches."""
    return Loader(fname, batch_size=BATCH, num_workers=1, batches_ahead=1, seed=4, drop_last=False, order=order,
                  **kwargs)


def planned(remote_loader):
    """The schedule the manager makes for the loader's next epoch (a pure function of the batches)."""
    order = remote_loader.next_traversal_order()
    batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    manager = remote_loader.memory_manager
    return manager.schedule(batches, max_frames=manager.max_frames)


@pytest.mark.parametrize('cache', [False, True])
def test_random_by_url_beyond_the_limit_gives_the_os_cache_batches(local_file, http_url, tmp_path, cache):
    options = {'prefetch': 1, 'memory_limit': LIMIT, 'connections': 2}
    if cache:
        options['cache_dir'] = os.fspath(tmp_path / 'pages')
    remote = loader(http_url, remote=options)
    manager = remote.memory_manager
    schedule = planned(remote)
    num_pages = np.count_nonzero(schedule.uses)
    assert schedule.num_frames * PAGE <= LIMIT < num_pages * PAGE
    before = manager.remote.stats['bytes']
    assert same_batches(collect(remote), collect(loader(local_file, os_cache=True)))
    stats = manager.stats
    assert 0 < stats['peak_frames'] * PAGE <= LIMIT
    assert stats['reloads'] == schedule.num_reloads > 0 and stats['loads'] == num_pages + stats['reloads']
    reader = remote.reader
    ends = page_data_ends(reader.alloc_table, reader.page_shift, schedule.uses.size)  # bytes a page's samples need
    if cache:  # fetched once, reloaded from the disk cache
        assert stats['fetches'] == num_pages and stats.get('disk_hits', 0) == stats['reloads']
        assert manager.remote.stats['bytes'] - before == int(ends[schedule.load_order].sum())
    else:  # every reload is one more ranged fetch of the page
        assert stats['fetches'] == num_pages + stats['reloads']
        assert manager.remote.stats['bytes'] - before == int(ends[schedule.load_page].sum()) == stats['bytes_read']


def test_quasi_random_by_url_is_unchanged_by_the_limit(http_url):
    remote = loader(http_url, order=OrderOption.QUASI_RANDOM, remote={'prefetch': 1, 'memory_limit': LIMIT})
    schedule = planned(remote)
    collect(remote)
    assert schedule.reload_gap is None and remote.memory_manager.stats['reloads'] == 0
    assert remote.memory_manager.stats['fetches'] == np.count_nonzero(schedule.uses)


def test_random_from_a_local_file_beyond_the_limit_reads_pages_again(local_file):
    expected = collect(loader(local_file, os_cache=True))
    process = loader(local_file, os_cache=False)
    manager = process.memory_manager
    manager.memory_limit, manager.prefetch = LIMIT, 1
    schedule = planned(process)
    assert same_batches(collect(process), expected)
    assert 0 < manager.stats['peak_frames'] * PAGE <= LIMIT
    assert manager.stats['reloads'] == schedule.num_reloads > 0
    size = os.path.getsize(local_file)  # each load reads its whole page again (the last one up to the end)
    assert manager.stats['bytes_read'] == int(np.minimum(PAGE, size - schedule.load_page * PAGE).sum())


def test_a_limit_below_the_pages_of_the_batches_in_flight_is_a_clear_error(http_url):
    remote = loader(http_url, remote={'prefetch': 1, 'memory_limit': 3 * PAGE})
    with pytest.raises(MemoryError, match='random.beton: this epoch needs at least .* more than the 3 the memory '
                                          'limit allows'):
        iter(remote)
