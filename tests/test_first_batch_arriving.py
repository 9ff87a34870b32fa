"""A remote file's first batch is decoded as its bytes arrive: `ProcessCacheContext.start_batch_early` and
its `RowGate` (driven here by a fetch the test controls), and the loader through a real nginx behind a
bandwidth-capped FaultProxy (rows decoded before the batch's last page is in, same batches as a local run)."""
from __future__ import annotations

import os
import shutil
import threading
import time

import numpy as np
import pytest

from ffcv.fields.bytes import BytesDecoder
from ffcv.fields.decoders import IntDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.memory_managers.base import ContextClosedError
from ffcv.memory_managers.process_cache.context import _PageCache
from ffcv.memory_managers.process_cache.manager import ProcessCacheManager
from ffcv.pipeline.storage import read_blob_py
from ffcv.reader import Reader
from ffcv.transforms import ToTensor

import servers
from helpers import collect, same_batches, write_blob_file

PAGE = 1 << 21  # samples of 30-90 KB on 2 MiB pages: about 35 per page, 6 pages
WAIT_S = 10.0


@pytest.fixture(scope='module')
def blob_file(tmp_path_factory):
    return write_blob_file(tmp_path_factory.mktemp('arriving') / 'data.beton', 200, (30_000, 90_000), 11, PAGE)


class HeldFetches(ProcessCacheManager):
    """Pages copied from the local file by the fetch of a remote manager, in two halves, each announced as it
    is in; the second half of a page in `held` waits until `release(page)` (or fails, for pages in `failing`)."""

    def __init__(self, reader, held=(), failing=()):
        self.held = {int(page): threading.Event() for page in held}
        self.failing = set(failing)
        super().__init__(reader, prefetch=2, num_readers=8)

    def release(self, page: int) -> None:
        self.held[page].set()

    def _fetch(self, page, size, destination, on_part=None):
        with open(self.reader.file_name, 'rb') as handle:
            handle.seek(page * self.page_size)
            data = handle.read(size)
        half = size // 2
        destination[:half] = data[:half]
        announce = on_part or (lambda start, stop: None)  # (None: no batch waits for bytes)
        announce(0, half)
        if page in self.held:
            assert self.held[page].wait(WAIT_S)
        if page in self.failing:
            raise OSError(5, f'page {page}: the test failed it')
        destination[half:size] = data[half:]
        announce(half, size)

    def _page_cache(self, schedule, memory):
        return _PageCache(self.reader.file_name, self.page_size, self.page_shift, schedule, self._page_ends, memory,
                          self.prefetch, self.num_readers, fetch=self._fetch, stats=self.page_stats)


def row_layout(reader, indices):
    """For each row: (its page, whether its data ends in the first half of the page's data)."""
    offsets, pages, _ = reader.sample_pages()
    table = reader.alloc_table
    ends = {}
    for entry in table[table['size'] > 0]:
        page = int(entry['ptr']) >> reader.page_shift
        ends[page] = max(ends.get(page, 0), int(entry['ptr']) + int(entry['size']) - (page << reader.page_shift))
    layout = []
    for sample in indices:
        entry = table[table['sample_id'] == sample][0]
        page = int(entry['ptr']) >> reader.page_shift
        stop = int(entry['ptr']) + int(entry['size']) - (page << reader.page_shift)
        layout.append((page, stop <= ends[page] // 2))
    return layout


def batch_of_all(reader):
    """One batch holding every sample (every page needed at once)."""
    return [np.arange(reader.num_samples, dtype=np.int64)]


def test_rows_whose_bytes_are_in_are_handed_out_before_the_pages_end(blob_file):
    reader = Reader(blob_file)
    batches = batch_of_all(reader)
    layout = row_layout(reader, batches[0])
    pages = sorted({page for page, _ in layout})
    manager = HeldFetches(reader, held=pages)
    context = manager.schedule_epoch(batches)
    gate = context.start_batch_early(0, batches[0])
    assert gate is not None
    early = [row for row, (_, first_half) in enumerate(layout) if first_half]
    claimed = np.zeros(len(layout), bool)
    rows = gate.take(claimed, len(early))  # every page's second half is held back
    assert sorted(rows.tolist()) == early and claimed[early].all() and claimed.sum() == len(early)
    local = Reader(blob_file)
    for row in rows:  # the bytes handed out are the file's, read through the decoders' page table
        sample = int(batches[0][row])
        entry = reader.alloc_table[reader.alloc_table['sample_id'] == sample][0]
        np.testing.assert_array_equal(read_blob_py(int(entry['ptr']), context.state)[:int(entry['size'])],
                                      local.read(int(entry['ptr']), int(entry['size'])))

    taken = []
    waiter = threading.Thread(target=lambda: taken.append(gate.take(claimed, 1)))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive()  # nothing else is in yet
    late_page = next(page for page, first_half in layout if not first_half)
    manager.release(late_page)
    waiter.join(WAIT_S)
    assert not waiter.is_alive()
    assert layout[int(taken[0][0])][0] == late_page
    for page in pages:
        manager.release(page)
    gate.wait(range(len(layout)))  # everything in
    context.end_batch(0)
    context.close()


def test_a_page_already_in_memory_starts_the_batch_as_usual(blob_file):
    reader = Reader(blob_file)
    manager = HeldFetches(reader)
    batches = [np.array([0, 1], np.int64)]
    context = manager.schedule_epoch(batches)
    context.start_batch(0)
    context.end_batch(0)
    context.close()
    local = ProcessCacheManager(Reader(blob_file))  # pages read from a local file: no gate
    context = local.schedule_epoch(batches)
    assert context.start_batch_early(0, batches[0]) is None
    context.end_batch(0)
    context.close()


def test_a_failed_page_reaches_the_rows_waiting_for_it(blob_file):
    reader = Reader(blob_file)
    batches = batch_of_all(reader)
    layout = row_layout(reader, batches[0])
    bad = layout[0][0]
    manager = HeldFetches(reader, failing=[bad])
    context = manager.schedule_epoch(batches)
    gate = context.start_batch_early(0, batches[0])
    late = [row for row, (page, first_half) in enumerate(layout) if page == bad and not first_half]
    with pytest.raises(OSError, match='the test failed it'):
        gate.wait(late)
    claimed = np.zeros(len(layout), bool)
    with pytest.raises(OSError, match='the test failed it'):
        gate.take(claimed, len(layout))
    context.close()


def test_closing_the_context_wakes_a_waiting_row(blob_file):
    reader = Reader(blob_file)
    batches = batch_of_all(reader)
    layout = row_layout(reader, batches[0])
    manager = HeldFetches(reader, held=sorted({page for page, _ in layout}))
    context = manager.schedule_epoch(batches)
    gate = context.start_batch_early(0, batches[0])
    errors = []

    def wait_all():
        try:
            gate.wait(range(len(layout)))
        except ContextClosedError as exc:
            errors.append(exc)
    waiter = threading.Thread(target=wait_all)
    waiter.start()
    time.sleep(0.1)
    closer = threading.Thread(target=context.close)
    closer.start()
    waiter.join(WAIT_S)
    assert not waiter.is_alive() and errors
    for event in manager.held.values():
        event.set()
    closer.join(WAIT_S)


# --- Through a real server -----------------------------------------------------------------------

class RecordingBytesDecoder(BytesDecoder):
    """BytesDecoder that records, at each call, the rows it decodes and the pages fully fetched so far."""
    calls: list = []
    manager = None

    def generate_code(self):
        inner = super().generate_code()

        def decode(indices, destination, metadata, storage_state):
            manager = RecordingBytesDecoder.manager
            if manager is not None:
                RecordingBytesDecoder.calls.append((len(indices), manager.page_stats['loads']))
            return inner(indices, destination, metadata, storage_state)
        decode.python_code = True
        decode.per_sample = True
        return decode


@pytest.fixture(scope='module')
def slow_url(blob_file):
    server = servers.nginx()
    shutil.copy(blob_file, os.path.join(server.root, 'arriving.beton'))
    proxy = servers.FaultProxy(server.port)
    proxy.bandwidth = 8e6  # 12 MB: the first batch's pages take about 1.5 s
    yield proxy.url('arriving.beton')
    proxy.close()


@pytest.mark.parametrize('workers', [1, 2])
def test_the_loaders_first_batch_is_decoded_as_its_pages_arrive(blob_file, slow_url, tmp_path, workers):
    def make(source, **kwargs):
        return Loader(source, batch_size=60, num_workers=workers, order=OrderOption.QUASI_RANDOM, seed=3,
                      drop_last=False, pipelines={'blob': [RecordingBytesDecoder(), ToTensor()],
                                                  'label': [IntDecoder(), ToTensor()]}, **kwargs)
    remote = make(slow_url, remote={'cache_dir': os.fspath(tmp_path / 'cache'), 'part_size': 256 << 10,
                                    'connections': 4})
    RecordingBytesDecoder.manager = remote.memory_manager
    RecordingBytesDecoder.calls = []
    batches = collect(remote)
    RecordingBytesDecoder.manager = None
    offsets, pages, _ = remote.reader.sample_pages()
    first_pages = np.unique(np.concatenate([pages[offsets[s]:offsets[s + 1]] for s in batches[0][1].view(-1).tolist()]))
    calls = RecordingBytesDecoder.calls
    assert calls[0][1] < len(first_pages), 'the first rows waited for every page of the first batch'
    assert calls[0][0] == 1  # the first row to arrive, alone: its part loads what the decoder needs meanwhile
    first_batch_calls = np.cumsum([rows for rows, _ in calls]).searchsorted(60) + 1
    assert first_batch_calls > 2  # in parts, as the rows came in
    assert same_batches(batches, collect(make(blob_file)))


def test_decoders_of_metadata_fields_need_no_bytes(blob_file):
    """IntDecoder declares ``reads_heap = False``: a first batch being fetched decodes its labels at once; the
    blob decoder reads data pages, in parts of rows."""
    loader = Loader(blob_file, batch_size=8, num_workers=1, pipelines={'blob': [BytesDecoder(), ToTensor()],
                                                                       'label': [IntDecoder(), ToTensor()]})
    by_name = {pipeline.name: pipeline for pipeline in loader.pipelines}
    assert by_name['blob'].reads_heap and by_name['blob'].decodes_in_parts
    assert not by_name['label'].reads_heap
