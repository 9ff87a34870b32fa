"""Loader behaviour: outputs, lengths, orders, determinism, resume, custom ops, compile switch."""
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from ffcv.fields import FloatField, IntField, RGBImageField
from ffcv.fields.decoders import FloatDecoder, IntDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline import Compiler, Operation, PipelineSpec
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.transforms import Squeeze, ToTensor

from conftest import photo_like
from helpers import collect, compiled_and_python, same_batches, write_and_read


@pytest.fixture(scope='module')
def scalars(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('scalars') / 'scalars.beton')
    write_and_read(path, {'index': IntField(), 'value': FloatField()}, [(i, np.sin(i)) for i in range(600)])
    return path


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('images') / 'images.beton')
    rng = np.random.default_rng(3)
    samples = [(photo_like(rng, int(rng.integers(40, 90)), int(rng.integers(40, 90))), i) for i in range(96)]
    write_and_read(path, {'image': RGBImageField(write_mode='proportion'), 'label': IntField()}, samples)
    return path


def index_batches(loader):
    return [b[0][:, 0].tolist() for b in collect(loader)]


@pytest.mark.parametrize('batch_size, drop_last, length', [(7, True, 85), (7, False, 86), (60, True, 10),
                                                           (60, False, 10), (600, True, 1), (1000, True, 0)])
def test_lengths_and_partial_batches(scalars, batch_size, drop_last, length):
    loader = Loader(scalars, batch_size=batch_size, drop_last=drop_last)
    batches = index_batches(loader)
    assert len(loader) == len(batches) == length
    sizes = [len(b) for b in batches]
    assert all(s == batch_size for s in sizes[:-1])
    if batches:
        assert sum(sizes) == (600 // batch_size * batch_size if drop_last else 600)


def test_default_pipelines_and_outputs(scalars):
    index, value = next(iter(Loader(scalars, batch_size=8)))
    assert index.dtype == torch.int64 and index.shape == (8, 1) and index[:, 0].tolist() == list(range(8))
    np.testing.assert_allclose(value[:, 0].numpy(), np.sin(np.arange(8)))
    (only,) = next(iter(Loader(scalars, batch_size=8, pipelines={'index': None})))
    assert only.dtype == torch.float64
    twice = {'value': None, 'index': [IntDecoder(), ToTensor(), Squeeze()],
             'copy': PipelineSpec('index', IntDecoder(), [ToTensor()])}
    index, copy = next(iter(Loader(scalars, batch_size=4, pipelines=twice)))
    assert index.tolist() == [0, 1, 2, 3] and copy.shape == (4, 1)


def test_orders_and_indices(scalars):
    sequential = Loader(scalars, batch_size=50, order=OrderOption.SEQUENTIAL)
    assert index_batches(sequential) == index_batches(sequential)
    random = Loader(scalars, batch_size=50, order=OrderOption.RANDOM, seed=4)
    first, second = index_batches(random), index_batches(random)
    assert first != second and sorted(sum(first, [])) == list(range(600))
    assert sum(first, []) == np.random.default_rng(4).permutation(600).tolist()  # FFCV's order for the seed
    subset = Loader(scalars, batch_size=5, order=OrderOption.RANDOM, seed=1, indices=[3, 9, 27, 81, 243])
    assert sorted(index_batches(subset)[0]) == [3, 9, 27, 81, 243]


def test_same_seed_same_batches_whatever_the_threads(images):
    def run(workers, seed=11):
        decoder = RandomResizedCropRGBImageDecoder((32, 32))
        loader = Loader(images, batch_size=16, num_workers=workers, order=OrderOption.RANDOM, seed=seed,
                        pipelines={'image': [decoder, ToTensor()]})
        return [collect(loader) for _ in range(2)]  # two epochs

    reference = run(1)
    for workers in (2, 8):
        again = run(workers)
        for epoch_a, epoch_b in zip(reference, again):
            assert same_batches(epoch_a, epoch_b)
    assert not torch.equal(reference[0][0][0], reference[1][0][0])  # epochs differ
    assert not torch.equal(reference[0][0][0], run(2, seed=12)[0][0][0])  # seeds differ


RESUME_SCRIPT = r'''
import sys, torch
from ffcv.loader import Loader, OrderOption
from ffcv.fields.decoders import RandomResizedCropRGBImageDecoder
from ffcv.transforms import ToTensor
path, state_file, out_file = sys.argv[1:4]
loader = Loader(path, batch_size=16, num_workers=2, order=OrderOption.RANDOM,
                pipelines={'image': [RandomResizedCropRGBImageDecoder((24, 24)), ToTensor()]})
loader.load_state_dict(torch.load(state_file))
batches = []
for _ in range(2):
    batches += [tuple(t.clone() for t in b) for b in loader]
torch.save(batches, out_file)
'''


def test_resume_mid_epoch_in_a_new_process(images, tmp_path):
    def make(seed=None):
        return Loader(images, batch_size=16, num_workers=2, order=OrderOption.RANDOM, seed=seed,
                      pipelines={'image': [RandomResizedCropRGBImageDecoder((24, 24)), ToTensor()]})

    loader = make(seed=21)
    uninterrupted = collect(loader) + collect(loader) + collect(loader)   # epochs 0, 1, 2
    interrupted = make(seed=21)
    collect(interrupted)                                                 # epoch 0
    iterator = iter(interrupted)
    for _ in range(2):
        next(iterator)                                                   # 2 batches of epoch 1
    state = interrupted.state_dict()
    assert state['epoch'] == 1 and state['batches_served'] == 2
    del iterator
    torch.save(state, tmp_path / 'state.pt')
    subprocess.run([sys.executable, '-c', RESUME_SCRIPT, images, str(tmp_path / 'state.pt'),
                    str(tmp_path / 'out.pt')], check=True)
    resumed = torch.load(tmp_path / 'out.pt')
    expected = uninterrupted[len(interrupted) + 2:]
    assert same_batches(resumed, expected)


class Doubler(Operation):
    """An FFCV-style custom op: numba-compiled, prange loop, own allocation."""

    def generate_code(self):
        parallel_range = Compiler.get_iterator()

        def double(values, destination):
            for i in parallel_range(values.shape[0]):
                destination[i] = 2 * values[i]
            return destination
        double.is_parallel = True
        return double

    def declare_state_and_memory(self, previous_state):
        return previous_state, AllocationQuery(previous_state.shape, previous_state.dtype)


class AddIndex(Operation):
    def generate_code(self):
        def add(values, destination, indices):
            for i in range(values.shape[0]):
                destination[i, 0] = values[i, 0] + indices[i]
            return destination
        add.with_indices = True
        return add

    def declare_state_and_memory(self, previous_state):
        return replace(previous_state, dtype=np.dtype('float64')), AllocationQuery((1,), np.dtype('float64'))


@pytest.mark.parametrize('jit', [True, False])
def test_custom_ffcv_style_operations(scalars, jit):
    Compiler.set_enabled(jit)
    try:
        loader = Loader(scalars, batch_size=8, pipelines={
            'value': [FloatDecoder(), Doubler(), AddIndex(), ToTensor()], 'index': None})
        (values,) = next(iter(loader))
    finally:
        Compiler.set_enabled(True)
    np.testing.assert_allclose(values[:, 0].numpy(), 2 * np.sin(np.arange(8)) + np.arange(8))
    step = loader.pipelines[0].steps[1]
    assert hasattr(step.function, 'py_func') == jit  # compiled with numba only when enabled


def test_jit_disabled_gives_identical_batches(images):
    def run():
        return collect(Loader(images, batch_size=16, order=OrderOption.RANDOM, seed=2,
                              pipelines={'image': [RandomResizedCropRGBImageDecoder((20, 20)), ToTensor()]}))
    compiled, python = compiled_and_python(run)
    assert same_batches(compiled, python)


def test_filter(scalars):
    loader = Loader(scalars, batch_size=10, pipelines={'value': None}).filter('value', lambda v: v[0] > 0.5)
    kept = sum(index_batches(Loader(scalars, batch_size=10, indices=loader.indices, pipelines={'value': None})), [])
    assert len(kept) > 0 and all(np.sin(i) > 0.5 for i in kept)
    assert len(loader.indices) == int((np.sin(np.arange(600)) > 0.5).sum())


def test_state_dict_positions(scalars):
    loader = Loader(scalars, batch_size=100, order=OrderOption.RANDOM, seed=0)
    assert loader.state_dict()['epoch'] == 0 and loader.state_dict()['batches_served'] == 0
    collect(loader)                                   # epoch 0 to its end
    assert (loader.state_dict()['epoch'], loader.state_dict()['batches_served']) == (1, 0)
    for i, _ in enumerate(loader):                    # epoch 1, abandoned after 2 batches
        if i == 1:
            break
    assert (loader.state_dict()['epoch'], loader.state_dict()['batches_served']) == (1, 2)
    fresh = Loader(scalars, batch_size=100, order=OrderOption.RANDOM, seed=5)
    fresh.load_state_dict(loader.state_dict())
    assert fresh.state_dict()['batches_served'] == 2 and fresh.seed == 0
    assert len(collect(fresh)) == 4                   # the 4 batches epoch 1 still owed
    with pytest.raises(ValueError, match='batch_size'):
        Loader(scalars, batch_size=50).load_state_dict(loader.state_dict())
