"""No hangs, no leaks, and errors in the user's terms."""
import gc
import threading
import time
import traceback
from dataclasses import replace

import numpy as np
import psutil
import pytest
import torch

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import FloatDecoder, IntDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline import Operation
from ffcv.pipeline.graph import PipelineError
from ffcv.reader import Reader
from ffcv.transforms import ToTensor, ToTorchImage

from helpers import write_and_read


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('errors') / 'data.beton')
    rng = np.random.default_rng(0)
    write_and_read(path, {'image': RGBImageField(write_mode='jpg'), 'label': IntField()},
                   [(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), i) for i in range(200)])
    return path


class Explode(Operation):
    """Raises for one sample (a Python-level user op)."""

    def __init__(self, bad_index):
        super().__init__()
        self.bad_index = bad_index

    def generate_code(self):
        bad_index = self.bad_index

        def explode(batch, destination, indices):
            if bad_index in indices.tolist():
                raise ValueError(f'cannot handle sample {bad_index}')
            return batch
        explode.with_indices = True
        explode.python_code = True
        return explode

    def declare_state_and_memory(self, previous_state):
        return previous_state, None


def test_user_op_exception_reaches_the_loop(dataset):
    loader = Loader(dataset, batch_size=10, num_workers=2, pipelines={'label': [IntDecoder(), Explode(57), ToTensor()]})
    seen = 0
    start = time.perf_counter()
    with pytest.raises(ValueError, match='cannot handle sample 57') as info:
        for _ in loader:
            seen += 1
    assert time.perf_counter() - start < 5
    assert seen == 5  # batches 0-4 arrive, batch 5 (samples 50-59) raises
    assert 'explode' in ''.join(traceback.format_tb(info.value.__traceback__))  # original traceback kept
    assert any('batch 5 of epoch 0' in note for note in info.value.__notes__)


def test_corrupt_jpeg_names_the_sample(dataset, tmp_path):
    reader = Reader(dataset)
    ptr = int(reader.metadata['f0'][33]['data_ptr'])
    data = bytearray(open(dataset, 'rb').read())
    data[ptr + 2:ptr + 200] = b'\x00' * 198  # wipe the JPEG headers
    corrupt = tmp_path / 'corrupt.beton'
    corrupt.write_bytes(bytes(data))
    loader = Loader(str(corrupt), batch_size=8, num_workers=2)
    with pytest.raises(ValueError) as info:
        for _ in loader:
            pass
    assert any('sample 33' in note for note in info.value.__notes__)


def thread_count():
    return threading.active_count()


def test_break_and_del_free_threads(dataset):
    baseline = thread_count()
    loader = Loader(dataset, batch_size=4, num_workers=4, batches_ahead=2)
    for i, _ in enumerate(loader):
        if i == 3:
            break
    gc.collect()
    deadline = time.time() + 5
    while thread_count() > baseline and time.time() < deadline:
        time.sleep(0.05)
    assert thread_count() == baseline
    iterator = iter(loader)
    next(iterator)
    assert thread_count() > baseline
    del iterator
    assert thread_count() == baseline


def test_200_abandoned_loaders_stay_flat(dataset):
    process = psutil.Process()

    def cycle():
        loader = Loader(dataset, batch_size=8, num_workers=3, order=OrderOption.RANDOM, seed=1)
        iterator = iter(loader)
        next(iterator)
        next(iterator)

    for _ in range(20):  # warm up allocators and caches
        cycle()
    gc.collect()
    threads, rss = thread_count(), process.memory_info().rss
    for _ in range(200):
        cycle()
    gc.collect()
    assert thread_count() == threads
    assert process.memory_info().rss - rss < 30 * 2**20


class NumpyOp(Operation):
    def generate_code(self):
        return lambda batch, destination: batch

    def declare_state_and_memory(self, previous_state):
        return replace(previous_state, jit_mode=True, dtype=np.dtype('uint8')), None

    def __repr__(self):
        return 'NumpyOp()'


class TorchModuleFirst(torch.nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize('pipeline, message', [
    ([SimpleRGBImageDecoder(), TorchModuleFirst(), ToTensor()],
     r"pipeline 'image', step 1 \(ModuleWrapper\(TorchModuleFirst\)\).*NumPy array; insert ToTensor\(\)"),
    ([SimpleRGBImageDecoder(), ToTorchImage()], r"step 1 \(ToTorchImage\(\)\).*insert ToTensor\(\)"),
    ([SimpleRGBImageDecoder(), ToTensor(), ToTensor()], r'step 2.*ToTensor\(\) is needed only once'),
    ([SimpleRGBImageDecoder(), ToTensor(), NumpyOp()], r'step 2 \(NumpyOp.*works on NumPy arrays.*before ToTensor'),
    ([FloatDecoder()], r"starts with FloatDecoder, which cannot decode field 'image'"),
])
def test_wrong_pipelines_fail_at_construction(dataset, pipeline, message):
    with pytest.raises(PipelineError, match=message):
        Loader(dataset, batch_size=4, pipelines={'image': pipeline})


def test_unknown_field_and_bad_arguments(dataset):
    with pytest.raises(PipelineError, match="'imag', which is not a field.*did you mean 'image'"):
        Loader(dataset, batch_size=4, pipelines={'imag': [ToTensor()]})
    for kwargs, error in [({'batch_size': 0}, ValueError), ({'batch_size': 4, 'num_workers': 1.5}, ValueError),
                          ({'batch_size': 4, 'order': 'random'}, ValueError),
                          ({'batch_size': 4, 'indices': [5, 200]}, IndexError),
                          ({'batch_size': 4, 'batches_ahead': 0}, ValueError)]:
        with pytest.raises(error):
            Loader(dataset, **kwargs)
    with pytest.raises(RuntimeError, match='init_process_group'):
        Loader(dataset, batch_size=4, distributed=True)
