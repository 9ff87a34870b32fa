"""Memory managers: the process cache returns the OS cache's bytes, bounds memory, stops and fails cleanly."""
from __future__ import annotations

import os
import shutil
import threading
import time
import types

import numba
import numpy as np
import pytest

from ffcv.fields import BytesField, IntField
from ffcv.memory_managers import ContextClosedError, OSCacheManager, ProcessCacheManager
from ffcv.pipeline.storage import locate_blobs, read_blob, read_blob_py
from ffcv.reader import Reader
from ffcv.traversal_order import QuasiRandom, Sequential

from helpers import write_and_read

PAGE = 1 << 21
BATCH = 4


@pytest.fixture(scope='module')
def paged_file(tmp_path_factory):
    """240 samples of 100-300 KB (every 17th empty) on 2 MiB pages: about 25 pages."""
    rng = np.random.default_rng(3)
    samples = [(np.zeros(0, np.uint8) if i % 17 == 0 else
                rng.integers(0, 256, int(rng.integers(100_000, 300_000)), dtype=np.uint8), i) for i in range(240)]
    path = os.fspath(tmp_path_factory.mktemp('memory') / 'paged.beton')
    write_and_read(path, {'blob': BytesField(), 'label': IntField()}, samples, page_size=PAGE)
    return path


def batches_of(order, batch_size=BATCH):
    return [np.asarray(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]


def quasi_batches(reader, seed=0, epoch=0):
    loader = types.SimpleNamespace(indices=np.arange(reader.num_samples), seed=seed, distributed=False,
                                   batch_size=BATCH, reader=reader, drop_last=False)
    return batches_of(QuasiRandom(loader).sample_order(epoch))


def run_epoch(context, batches, num_workers, check=None, jitter=0.0, first=0):
    """Drive a context like the loader: workers take batches in increasing order, end them in any order."""
    next_batch = iter(range(first, len(batches)))
    lock = threading.Lock()
    errors = []
    rng = np.random.default_rng(num_workers)
    delays = rng.uniform(0, jitter, len(batches))

    def work():
        while True:
            with lock:
                b = next(next_batch, None)
            if b is None:
                return
            try:
                context.start_batch(b)
                if check is not None:
                    check(b, context.state)
                time.sleep(delays[b])
                context.end_batch(b)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=work) for _ in range(num_workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), 'a worker hung'
    if errors:
        raise errors[0]


@pytest.mark.parametrize('num_workers', [1, 4])
@pytest.mark.parametrize('order', ['random', 'quasi_random'])
def test_process_cache_returns_the_os_cache_bytes(paged_file, num_workers, order):
    reader = Reader(paged_file)
    if order == 'random':
        batches = batches_of(np.random.default_rng(num_workers).permutation(reader.num_samples))
    else:
        batches = quasi_batches(reader, seed=num_workers)
    reference = OSCacheManager(reader).state
    ptrs = reader.metadata['f0']['ptr']
    sizes = reader.metadata['f0']['size']
    checked = []

    def check(b, state):
        batch = batches[b]
        starts, lengths = locate_blobs(ptrs[batch], state)
        ref_starts, ref_lengths = locate_blobs(ptrs[batch], reference)
        np.testing.assert_array_equal(lengths, ref_lengths)
        for i, sample in enumerate(batch):
            size = int(sizes[sample])  # (a zero-size blob shares its pointer with the next allocation)
            expected = reference[0][ref_starts[i]:ref_starts[i] + size]
            assert np.array_equal(state[0][starts[i]:starts[i] + size], expected)
            if size:
                assert lengths[i] == size
                assert np.array_equal(read_blob(ptrs[sample], state), expected)
                assert np.array_equal(read_blob_py(ptrs[sample], state), expected)
        checked.extend(batch.tolist())

    with ProcessCacheManager(reader).schedule_epoch(batches) as context:
        run_epoch(context, batches, num_workers, check, jitter=0.002)
        assert (context._cache.page_table == -1).all()  # every frame was given back
        assert len(context._cache.free_frames) == context.num_frames
    assert sorted(checked) == list(range(reader.num_samples))


def test_slots_bounded_by_window_with_quasi_random(paged_file):
    reader = Reader(paged_file)
    manager = ProcessCacheManager(reader, prefetch=1, lookahead=1)
    num_pages = int((manager.schedule(batches_of(np.arange(reader.num_samples))).uses > 0).sum())
    sequential = manager.schedule(batches_of(np.arange(reader.num_samples))).num_frames
    random = manager.schedule(batches_of(np.random.default_rng(0).permutation(reader.num_samples))).num_frames
    quasi = max(manager.schedule(quasi_batches(reader, epoch=e)).num_frames for e in range(3))
    assert sequential <= 4
    assert random >= num_pages - 2  # every page stays resident from its first to its last use
    window = 2 * BATCH
    assert quasi <= window + (1 + 1 + 1) * BATCH < num_pages


def matches_the_file(reader, batches):
    """check(b, state) for `run_epoch`: every sample of batch b reads as `reader.read_sample` reads it."""
    ptrs = reader.metadata['f0']['ptr']
    expected = {i: reader.read_sample(i)['blob'] for i in range(reader.num_samples)}

    def check(b, state):
        for sample in batches[b]:
            if expected[sample].size:
                assert np.array_equal(read_blob(ptrs[sample], state), expected[sample])
    return check


def test_random_beyond_the_memory_limit_reads_pages_again(paged_file):
    """RANDOM order, room for 14 of the ~25 pages: pages not needed again soon are released and re-read."""
    reader = Reader(paged_file)
    batches = batches_of(np.random.default_rng(0).permutation(reader.num_samples))
    manager = ProcessCacheManager(reader, prefetch=1, lookahead=1, memory_limit=14 * PAGE)
    assert manager.schedule(batches).num_frames > 14  # one load per page would not fit
    with manager.schedule_epoch(batches) as context:
        run_epoch(context, batches, 2, matches_the_file(reader, batches), jitter=0.002)
        schedule = context.schedule
        assert len(context._cache.free_frames) == context.num_frames  # every frame was given back
    assert context.num_frames <= 14 and 0 < manager.stats['peak_frames'] <= 14
    assert schedule.num_reloads > 0 and manager.stats['reloads'] == schedule.num_reloads
    assert manager.stats['loads'] == schedule.load_page.size == schedule.num_reloads + np.count_nonzero(schedule.uses)
    file_size = os.path.getsize(paged_file)  # each load reads its page from the file, the last one up to the end
    offsets = schedule.load_page.astype(np.int64) * PAGE
    assert manager.stats['bytes_read'] == int(np.minimum(PAGE, file_size - offsets).sum())


def test_frames_of_an_ended_epoch_serve_the_next(paged_file):
    """An epoch closed with no batch in progress hands its frames to the next epoch (no fresh allocation,
    whose page faults cost ~7% of a short epoch); the next epoch still reads the right bytes. A context
    closed while a batch is between start_batch and end_batch keeps its frames out of reuse."""
    reader = Reader(paged_file)
    manager = ProcessCacheManager(reader, prefetch=1, lookahead=1)
    batches = quasi_batches(reader, seed=1)  # (an epoch needing more frames than the spare ones allocates anew)
    first = []
    for epoch in range(3):
        with manager.schedule_epoch(batches) as context:
            first = first or [context.state[0]]  # (kept alive: a fresh allocation could not reuse its address)
            assert np.shares_memory(context.state[0], first[0])
            run_epoch(context, batches, 2, matches_the_file(reader, batches))
    context = manager.schedule_epoch(batches)
    frames = context.state[0]  # as a worker in batch 0 holds them
    assert np.shares_memory(frames, first[0])
    context.start_batch(0)
    context.close()  # batch 0 never ended
    with manager.schedule_epoch(batches) as context:
        assert context.state[0].ctypes.data != frames.ctypes.data
        run_epoch(context, batches, 2, matches_the_file(reader, batches))


def test_quasi_random_is_unchanged_under_the_limit(paged_file):
    reader = Reader(paged_file)
    batches = quasi_batches(reader)
    manager = ProcessCacheManager(reader, memory_limit=14 * PAGE)
    unlimited = ProcessCacheManager(reader).schedule(batches)
    with manager.schedule_epoch(batches) as context:
        assert context.schedule.reload_gap is None and context.num_frames == unlimited.num_frames <= 14
        np.testing.assert_array_equal(context.schedule.load_page, unlimited.load_order)
        run_epoch(context, batches, 3, matches_the_file(reader, batches))
    assert manager.stats['reloads'] == 0 and manager.stats['loads'] == np.count_nonzero(unlimited.uses)


def test_a_limit_below_the_pages_in_flight_is_a_clear_error(paged_file):
    reader = Reader(paged_file)
    batches = batches_of(np.random.default_rng(0).permutation(reader.num_samples))
    with pytest.raises(MemoryError, match=r'paged.beton: this epoch needs at least \d+ page frames even when every '
                                          r'page is read again before each use .* more than the 2 the memory limit'):
        ProcessCacheManager(reader, prefetch=1, lookahead=1, memory_limit=2 * PAGE + 5).schedule_epoch(batches)


def test_close_mid_epoch_stops_promptly(paged_file):
    reader = Reader(paged_file)
    batches = batches_of(np.arange(reader.num_samples))
    before = threading.active_count()
    context = ProcessCacheManager(reader, prefetch=0, lookahead=0).schedule_epoch(batches)
    context.start_batch(0)
    outcome = []

    def waiter():  # batch 20's pages cannot get a frame while batch 0 holds it: this blocks
        try:
            context.start_batch(20)
            outcome.append('returned')
        except ContextClosedError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive() and not outcome
    started = time.monotonic()
    context.close()
    thread.join(2)
    assert time.monotonic() - started < 2 and not thread.is_alive()
    assert isinstance(outcome[0], ContextClosedError)
    assert threading.active_count() == before
    context.close()  # idempotent
    with pytest.raises(ContextClosedError):
        context.start_batch(1)
    with pytest.raises(ContextClosedError):
        context.state
    context.end_batch(0)  # harmless after close


def test_abandoned_context_is_closed_when_dropped(paged_file):
    reader = Reader(paged_file)
    batches = batches_of(np.arange(reader.num_samples))
    before = threading.active_count()
    context = ProcessCacheManager(reader).schedule_epoch(batches)
    context.start_batch(0)
    assert threading.active_count() > before
    del context
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_truncated_file_raises_oserror_instead_of_hanging(paged_file, tmp_beton):
    path = tmp_beton('truncated')
    shutil.copyfile(paged_file, path)
    reader = Reader(path)
    batches = batches_of(np.arange(reader.num_samples))
    context = ProcessCacheManager(reader).schedule_epoch(batches)
    with open(path, 'r+b') as fp:
        fp.truncate(reader.data_start + 3 * PAGE + 1000)
    with pytest.raises(OSError, match='truncated') as info:
        run_epoch(context, batches, 4)
    assert path in str(info.value)
    context.close()


def test_scalar_only_file_needs_no_memory(tmp_beton):
    reader = write_and_read(tmp_beton(), {'label': IntField()}, [(i,) for i in range(50)])
    before = threading.active_count()
    batches = batches_of(np.random.default_rng(0).permutation(50))
    with ProcessCacheManager(reader).schedule_epoch(batches) as context:
        assert context.num_frames == 0
        run_epoch(context, batches, 2)
        assert threading.active_count() == before


def test_end_before_start_and_bad_batch(paged_file):
    reader = Reader(paged_file)
    batches = batches_of(Sequential(types.SimpleNamespace(indices=np.arange(reader.num_samples), seed=0,
                                                          distributed=False)).sample_order(0))
    with ProcessCacheManager(reader).schedule_epoch(batches) as context:
        context.start_batch(0)
        for b in range(len(batches)):  # a loader unwinding after an error ends batches it never started
            context.end_batch(b)
        assert len(context._cache.free_frames) <= context.num_frames
        with pytest.raises(IndexError, match='out of range'):
            context.start_batch(len(batches))


def test_resumed_epoch_needs_only_its_batches(paged_file, monkeypatch):
    import ffcv.memory_managers.process_cache.context as context_module
    reader = Reader(paged_file)
    batches = batches_of(np.arange(reader.num_samples))
    manager = ProcessCacheManager(reader, prefetch=1, lookahead=1)
    with manager.schedule_epoch(batches, first_batch=30) as context:
        run_epoch(context, batches, 2, first=30)
        assert context.num_frames <= 4
    monkeypatch.setattr(context_module, '_WAIT_S', 0.05)
    with manager.schedule_epoch(batches) as context:  # resumed without saying so: frames fill with old pages
        with pytest.raises(RuntimeError, match='first_batch'):
            context.start_batch(30)


@pytest.mark.parametrize('manager_class', [OSCacheManager, ProcessCacheManager])
def test_state_type_is_the_type_of_every_state(fixtures_dir, manager_class):
    manager = manager_class(Reader(str(fixtures_dir / 'basic.beton')))
    with manager.schedule_epoch([np.arange(4)]) as context:
        assert numba.typeof(context.state) == manager.state_type
