"""Faults in the pipeline: every one ends promptly, with the error raised in the training loop, and every
worker / page-reader thread and epoch buffer released. Both memory managers (os_cache True and False).

(test_loader_errors.py covers a Python user op, a corrupt JPEG and 200 abandoned loaders with the OS cache.)
"""
import gc
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline import Operation
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import is_compiled
from ffcv.transforms import ToTensor

from helpers import write_and_read

CACHES = [pytest.param(True, id='os_cache'), pytest.param(False, id='process_cache')]
BAD_LABEL = 137  # sample 137 (batch 13 with batch_size 10) fails in every faulty pipeline below


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """300 raw 64x64 images over 2 pages of 2 MiB, label = index."""
    path = str(tmp_path_factory.mktemp('faults') / 'data.beton')
    rng = np.random.default_rng(0)
    write_and_read(path, {'image': RGBImageField(), 'label': IntField()},
                   [(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), i) for i in range(300)], page_size=1 << 21)
    return path


def settle(baseline: int, timeout: float = 5.0) -> int:
    """Thread count once stray threads are gone (waits up to `timeout`)."""
    deadline = time.time() + timeout
    while threading.active_count() > baseline and time.time() < deadline:
        gc.collect()
        time.sleep(0.02)
    return threading.active_count()


class FailingDecoder(IntDecoder):
    """A decoder that fails on one sample (like a storage error)."""

    def generate_code(self):
        decode_labels = super().generate_code()

        def decode(indices, destination, metadata, storage_state):
            if BAD_LABEL in indices.tolist():
                raise OSError(f'cannot read sample {BAD_LABEL}')
            return decode_labels(indices, destination, metadata, storage_state)
        decode.python_code = True
        return decode


class NumbaFailingOp(Operation):
    """A compiled (numba nopython) user op raising inside the kernel."""

    def generate_code(self):
        def check(labels, destination):
            for i in range(labels.shape[0]):
                if labels[i, 0] == 137:
                    raise ValueError('label 137 rejected by a compiled op')
                destination[i] = labels[i]
            return destination
        return check

    def declare_state_and_memory(self, previous_state):
        return (replace(previous_state, jit_mode=True),
                AllocationQuery(previous_state.shape, previous_state.dtype))


class FailingModule(torch.nn.Module):
    def forward(self, labels):
        if (labels == BAD_LABEL).any():
            raise RuntimeError(f'module refuses label {BAD_LABEL}')
        return labels


PIPELINES = {
    'decoder': ([FailingDecoder(), ToTensor()], OSError, 'cannot read sample 137'),
    'numba op': ([IntDecoder(), NumbaFailingOp(), ToTensor()], ValueError, 'rejected by a compiled op'),
    'torch module': ([IntDecoder(), ToTensor(), FailingModule()], RuntimeError, 'module refuses label 137'),
}


@pytest.mark.parametrize('os_cache', CACHES)
@pytest.mark.parametrize('where', list(PIPELINES))
def test_exception_reaches_the_loop_and_frees_everything(dataset, os_cache, where):
    pipeline, error, message = PIPELINES[where]
    baseline = threading.active_count()
    loader = Loader(dataset, batch_size=10, num_workers=3, os_cache=os_cache, pipelines={'label': pipeline})
    if where == 'numba op':
        assert is_compiled(loader.pipelines[1].steps[1].function)  # really runs as numba code
    seen, start = [], time.perf_counter()
    with pytest.raises(error, match=message) as info:
        for _, labels in loader:
            seen.extend(labels.reshape(-1).tolist())
    assert time.perf_counter() - start < 10
    assert seen == list(range(130))  # every batch before the failing one, in order, then the error
    assert any('batch 13 of epoch 0' in note for note in info.value.__notes__)
    if where != 'numba op':  # the original traceback, down to the line that raised
        assert traceback.extract_tb(info.value.__traceback__)[-1].name == {'decoder': 'decode'}.get(where, 'forward')
    del info
    assert settle(baseline) == baseline
    again = [labels.reshape(-1).tolist() for _, labels in Loader(dataset, batch_size=10, num_workers=3,
                                                                 os_cache=os_cache)]
    assert sum(again, []) == list(range(300))  # a new loader on the same file works as usual


@pytest.mark.parametrize('os_cache', CACHES)
def test_keyboard_interrupt_in_the_loop(dataset, os_cache):
    baseline = threading.active_count()
    loader = Loader(dataset, batch_size=10, num_workers=3, os_cache=os_cache)
    for epoch in range(3):
        with pytest.raises(KeyboardInterrupt):
            for i, _ in enumerate(loader):
                if i == 4 + epoch:
                    raise KeyboardInterrupt
        assert settle(baseline) == baseline
        assert loader.state_dict()['batches_served'] == 5 + epoch  # the interrupted epoch is still owed
        loader.load_state_dict({**loader.state_dict(), 'batches_served': 0})


SIGINT_SCRIPT = '''
import signal, sys, threading, time
from ffcv.loader import Loader
from ffcv.fields.decoders import IntDecoder
from ffcv.pipeline import Operation
from dataclasses import replace

class Slow(Operation):  # keeps the consumer waiting for batches
    def generate_code(self):
        def slow(batch, destination):
            time.sleep(0.05)
            return batch
        slow.python_code = True
        return slow
    def declare_state_and_memory(self, state):
        return state, None

baseline = threading.active_count()
loader = Loader(sys.argv[1], batch_size=10, num_workers=2, os_cache=sys.argv[2] == 'True',
                pipelines={'label': [IntDecoder(), Slow()]})
threading.Timer(float(sys.argv[3]), signal.raise_signal, (signal.SIGINT,)).start()
start = time.time()
try:
    while True:
        for batch in loader:
            pass
except KeyboardInterrupt:
    stopped = time.time() - start
    deadline = time.time() + 5
    while threading.active_count() > baseline and time.time() < deadline:
        time.sleep(0.01)
    print('INTERRUPTED', round(stopped, 2), threading.active_count() - baseline, flush=True)
'''


@pytest.mark.parametrize('os_cache', CACHES)
def test_sigint_from_another_thread_stops_a_waiting_consumer(dataset, os_cache):
    """Ctrl-C (SIGINT) arrives while the consumer waits for a slow batch: it stops at once, no threads left."""
    result = subprocess.run([sys.executable, '-c', SIGINT_SCRIPT, dataset, str(os_cache), '0.6'],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr[-2000:]
    word, stopped, leftover = result.stdout.split()
    assert word == 'INTERRUPTED' and float(stopped) < 5 and int(leftover) == 0


@pytest.mark.parametrize('os_cache', CACHES)
def test_break_and_delete_mid_epoch_free_threads_and_memory(dataset, os_cache):
    baseline = threading.active_count()
    loader = Loader(dataset, batch_size=10, num_workers=3, os_cache=os_cache, order=OrderOption.RANDOM, seed=1)
    next(iter(loader))  # first epoch: allocations of the loader itself
    assert settle(baseline) == baseline
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for epoch in range(12):
            for i, _ in enumerate(loader):
                if i == epoch:
                    break
            assert settle(baseline) == baseline
        iterator = iter(loader)
        next(iterator)
        del loader  # the running epoch keeps what it needs
        assert sum(1 for _ in iterator) == 29
        iterator = None
        assert settle(baseline) == baseline
        leaked = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert leaked < 1 << 20  # the process cache's 2 MiB pages are gone with their epoch


@pytest.mark.parametrize('os_cache', CACHES)
def test_consumer_much_slower_than_the_loader(dataset, os_cache):
    """Workers stay at most `batches_ahead` batches ahead and never overwrite a batch still held."""
    baseline = threading.active_count()
    loader = Loader(dataset, batch_size=10, num_workers=3, os_cache=os_cache, batches_ahead=2,
                    pipelines={'image': [SimpleRGBImageDecoder()]})
    reference = [images.copy() for images, _ in Loader(dataset, batch_size=10, num_workers=1,
                                                       pipelines={'image': [SimpleRGBImageDecoder()]})]
    iterator = iter(loader)
    state = iterator._state
    for k, (images, labels) in enumerate(iterator):
        time.sleep(0.03)  # a slow training step, holding the batch
        np.testing.assert_array_equal(images, reference[k])  # not overwritten while held
        assert labels.reshape(-1).tolist() == list(range(10 * k, 10 * k + 10))
        with state.condition:
            assert state.next_batch <= k + 1 + state.slots  # bounded look-ahead
        if k == 15:
            break
    del state, iterator
    assert settle(baseline) == baseline
