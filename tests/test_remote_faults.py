"""Faults between the loader and a real server (nginx behind the tests' fault-injecting TCP proxy): each
transient kind is retried and counted, permanent ones and exhausted retries are one clear error, nothing
hangs, and a run with faults gives the batches of a run without."""
from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

from ffcv.loader import Loader, OrderOption
from ffcv.remote import RemoteFile, RemoteFileError

import servers
from helpers import collect, same_batches, write_blob_file

pytest.importorskip('aiohttp', reason='the remote extra is not installed (pip install -e .[dev])')
FAST = {'retries': 3, 'backoff': 0.01, 'timeout': 10.0}  # (a loaded machine must not time out)


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """(local path, proxy): 40 samples of 20-120 KB on 2 MiB pages served by nginx through a FaultProxy."""
    path = write_blob_file(tmp_path_factory.mktemp('faults') / 'data.beton', 40, (20_000, 120_000), 5)
    server = servers.nginx()
    shutil.copy(path, os.path.join(server.root, 'faults.beton'))
    proxy = servers.FaultProxy(server.port)
    yield path, proxy
    proxy.close()


@pytest.fixture
def proxy(served):
    proxy = served[1]
    yield proxy
    proxy.reset_next = proxy.fail_next = proxy.cut_next = proxy.stall_next = 0
    proxy.latency = proxy.bandwidth = 0


@pytest.mark.parametrize('fault, kinds', [('reset_next', ('ClientOSError', 'ServerDisconnectedError',
                                                          'ClientConnectionError', 'ConnectionResetError')),
                                          ('fail_next', ('ClientResponseError',)),
                                          ('cut_next', ('ClientPayloadError', 'ContentLengthError', '_Transient'))])
def test_transient_faults_are_retried_and_counted(served, proxy, fault, kinds):
    path, _ = served
    remote = RemoteFile(proxy.url('faults.beton'), FAST)
    setattr(proxy, fault, 2)
    data = remote.read(10_000, 300_000)
    with open(path, 'rb') as handle:
        handle.seek(10_000)
        assert data == handle.read(300_000)
    # aiohttp itself retries a request once when a pooled connection turns out closed or reset
    assert 1 <= remote.stats['retries'] <= 2 if fault == 'reset_next' else remote.stats['retries'] == 2
    assert getattr(proxy, fault) == 0
    counted = {key[len('retry:'):] for key in remote.stats if key.startswith('retry:')}
    assert counted and counted <= set(kinds), counted


def test_a_large_range_is_fetched_as_concurrent_parts(served, proxy):
    """Ten parts, at most `connections` (5) in flight at once: two rounds of 0.2 s, not ten."""
    path, _ = served
    remote = RemoteFile(proxy.url('faults.beton'), {**FAST, 'part_size': 100_000, 'connections': 5})
    proxy.latency, before = 0.2, proxy.requests
    proxy.peak_connections = proxy.connections
    start = time.monotonic()
    data = remote.read(5, 1_000_000)
    assert proxy.requests - before == 10
    assert time.monotonic() - start < 1.8  # ten requests of 0.2 s latency each: five at once, not one by one
    assert proxy.peak_connections <= 5
    with open(path, 'rb') as handle:
        handle.seek(5)
        assert data == handle.read(1_000_000)


def test_read_into_fills_a_view_part_by_part_and_again_after_a_cut(served, proxy):
    """`read_into` writes each response straight into the caller's buffer (a NumPy view here), nothing
    outside it; a part cut short is fetched again into the same place."""
    path, _ = served
    remote = RemoteFile(proxy.url('faults.beton'), {**FAST, 'part_size': 100_000})
    buffer = np.zeros(700_000, np.uint8)
    proxy.cut_next = 1
    remote.read_into(20, buffer[100:600_100])
    with open(path, 'rb') as handle:
        handle.seek(20)
        assert buffer[100:600_100].tobytes() == handle.read(600_000)
    assert not buffer[:100].any() and not buffer[600_100:].any()
    assert remote.stats['retries'] == 1 and remote.stats['bytes'] == 600_000


def test_read_into_announces_bytes_as_they_arrive(served, proxy, monkeypatch):
    """``on_part(start, stop)``: `start` is where a part begins, `stop` grows as it arrives (every 64 KiB here,
    slowly: 2 MB/s), and the announced bytes are in the buffer when announced."""
    from ffcv.remote import source
    monkeypatch.setattr(source, '_PROGRESS_STEP', 64 << 10)
    path, _ = served
    with open(path, 'rb') as handle:
        expected = np.frombuffer(handle.read(2_500_000), np.uint8)
    remote = RemoteFile(proxy.url('faults.beton'), {**FAST, 'part_size': 2_000_000})
    buffer = np.zeros(2_500_000, np.uint8)
    announced, wrong = [], []

    def on_part(start, stop):
        announced.append((start, stop))
        if not np.array_equal(buffer[start:stop], expected[start:stop]):
            wrong.append((start, stop))
    proxy.bandwidth = 2e6
    remote.read_into(0, buffer, on_part)
    assert not wrong and np.array_equal(buffer, expected)
    first = [stop for start, stop in announced if start == 0]
    assert first == sorted(first) and first[-1] == 2_000_000 and len(first) > 1  # also before its end
    assert max(stop for start, stop in announced if start == 2_000_000) == 2_500_000
    assert {start for start, _ in announced} == {0, 2_000_000}


def test_a_failed_read_leaves_no_part_writing_into_the_buffer(served, proxy):
    """One part fails at once while the others are still under way: once `read_into` has raised, none of
    them writes into the buffer any more (the loader hands the frame to another page)."""
    remote = RemoteFile(proxy.url('faults.beton'), {**FAST, 'retries': 0, 'part_size': 50_000})
    buffer = np.zeros(400_000, np.uint8)
    proxy.latency, proxy.fail_next = 0.3, 1
    with pytest.raises(RemoteFileError, match='503'):
        remote.read_into(2 << 20, buffer)  # (random bytes: the first page of data)
    buffer[:] = 0
    time.sleep(0.8)  # the other parts' answers would have arrived by now
    assert not buffer.any()


def test_a_stalled_answer_times_out_and_is_retried(served, proxy):
    remote = RemoteFile(proxy.url('faults.beton'), {**FAST, 'timeout': 0.5})
    proxy.stall_next = 1
    start = time.monotonic()
    assert len(remote.read(0, 4096)) == 4096
    assert time.monotonic() - start < 5
    assert remote.stats['retries'] >= 1 and remote.stats['retry:FSTimeoutError'] + remote.stats[
        'retry:ServerTimeoutError'] + remote.stats['retry:TimeoutError'] >= 1


def test_retries_run_out_into_one_error_naming_the_url(served, proxy):
    remote = RemoteFile(proxy.url('faults.beton'), FAST)
    proxy.fail_next = 100
    with pytest.raises(RemoteFileError, match=r'faults.beton: reading bytes \[0, 100\) failed 4 times.*503'):
        remote.read(0, 100)
    assert remote.stats['retries'] == 4


def test_forbidden_is_permanent_and_not_retried(served, proxy):
    before = proxy.requests
    with pytest.raises(RemoteFileError, match='forbidden/data.beton: open: access denied'):
        RemoteFile(proxy.url('forbidden/data.beton'), FAST)
    assert proxy.requests - before == 1


def test_a_run_with_faults_gives_the_batches_of_a_run_without(served, proxy):
    path, _ = served
    kwargs = dict(batch_size=4, num_workers=2, seed=9, order=OrderOption.QUASI_RANDOM)
    remote = Loader(proxy.url('faults.beton'), remote={**FAST, 'connections': 2}, **kwargs)
    proxy.latency, proxy.reset_next, proxy.fail_next, proxy.cut_next = 0.01, 1, 1, 1
    assert same_batches(collect(remote), collect(Loader(path, **kwargs)))
    assert 2 <= remote.memory_manager.stats['retries'] <= 3  # (aiohttp may absorb the reset)
    assert proxy.reset_next == proxy.fail_next == proxy.cut_next == 0
