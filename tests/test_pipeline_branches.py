"""Pipelines that branch off another pipeline's operation (FFCV's graphs: `PipelineSpec(source=operation)`):
several views of one decoded image, each equal to the same chain run on its own, decoded once per batch."""
import numpy as np
import pytest
import torch

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import CenterCropRGBImageDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline import PipelineSpec
from ffcv.pipeline.pipeline_spec import PipelineError
from ffcv.transforms import RandomHorizontalFlip, RandomResizedCrop, ToTensor, ToTorchImage

from conftest import photo_like
from helpers import collect, same_batches, write_and_read


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    rng = np.random.default_rng(3)
    path = str(tmp_path_factory.mktemp('branches') / 'photos.beton')
    samples = [(photo_like(rng, int(rng.integers(40, 70)), int(rng.integers(40, 70))), i) for i in range(24)]
    write_and_read(path, {'image': RGBImageField(write_mode='jpg'), 'label': IntField()}, samples)
    return path


def snapshot(loader) -> list:
    """One epoch, every output copied (NumPy arrays too: an output may be the decoder's own buffer)."""
    return [tuple(torch.from_numpy(t.copy()) if isinstance(t, np.ndarray) else t.clone() for t in batch)
            for batch in loader]


def view(size: int) -> list:
    return [RandomResizedCrop((0.25, 1.0), (3 / 4, 4 / 3), size), RandomHorizontalFlip(), ToTensor(), ToTorchImage()]


def loader(path, pipelines, num_workers=2):
    return Loader(path, batch_size=8, num_workers=num_workers, order=OrderOption.RANDOM, seed=5, pipelines=pipelines)


def test_views_branch_off_one_decoder_and_equal_their_chains_run_alone(photos):
    decoder = CenterCropRGBImageDecoder((48, 48), 1.0)
    graph = {'image': PipelineSpec('image', decoder=decoder, transforms=[]),
             **{f'v{k}': PipelineSpec(decoder, transforms=view(32 if k < 2 else 16)) for k in range(4)}}
    branched = snapshot(loader(photos, graph))
    shapes = [(8, 48, 48, 3), (8, 1)] + [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 2
    assert [tuple(t.shape) for t in branched[0]] == shapes
    assert not torch.equal(branched[0][2], branched[0][3])  # each view draws its own crops
    for k in range(4):  # the same output name and positions give the same seeds: the same pixels
        alone = collect(loader(photos, {'label': None, 'image': None,
                                        f'v{k}': PipelineSpec('image', decoder=CenterCropRGBImageDecoder((48, 48), 1.0),
                                                              transforms=view(32 if k < 2 else 16))}))
        assert all(torch.equal(a[0], b[2 + k]) for a, b in zip(alone, branched))
    plain = collect(loader(photos, {'label': None, 'image': [CenterCropRGBImageDecoder((48, 48), 1.0), ToTensor()]}))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(plain, branched))


class CountingDecoder(SimpleRGBImageDecoder):
    calls = 0

    def generate_code(self):
        decode = super().generate_code()

        def counted(*args):
            CountingDecoder.calls += 1
            return decode(*args)
        counted.python_code = True
        return counted


def test_the_shared_step_runs_once_per_batch(tmp_path):
    path = str(tmp_path / 'same.beton')
    rng = np.random.default_rng(0)
    write_and_read(path, {'image': RGBImageField()}, [(photo_like(rng, 24, 24),) for _ in range(32)])
    decoder = CountingDecoder()
    graph = {'image': PipelineSpec('image', decoder=decoder, transforms=[ToTensor()]),
             **{f'v{k}': PipelineSpec(decoder, transforms=view(16)) for k in range(6)}}
    CountingDecoder.calls = 0
    assert len(collect(loader(path, graph))) == 4
    assert CountingDecoder.calls == 4


def test_in_place_operations_get_their_own_copy(photos):
    decoder = CenterCropRGBImageDecoder((40, 40), 1.0)
    graph = {'image': PipelineSpec('image', decoder=decoder, transforms=[]),
             'flipped': PipelineSpec(decoder, transforms=[RandomHorizontalFlip(flip_prob=1.0)]),
             'again': PipelineSpec(decoder, transforms=[RandomHorizontalFlip(flip_prob=1.0), ToTensor()])}
    for image, _, flipped, again in loader(photos, graph):
        np.testing.assert_array_equal(flipped, image[:, :, ::-1])  # flipped once, from the unflipped decode
        np.testing.assert_array_equal(again.numpy(), image[:, :, ::-1])


def test_a_branch_may_start_from_a_branch_declared_later(photos):
    decoder = CenterCropRGBImageDecoder((40, 40), 1.0)
    crop = RandomResizedCrop((0.5, 1.0), (3 / 4, 4 / 3), 24)
    graph = {'label': None, 'image': None, 'tensor': PipelineSpec(crop, transforms=[ToTensor()]),  # source: next
             'crop': PipelineSpec('image', decoder=decoder, transforms=[crop])}
    for tensor, crop_batch in loader(photos, graph):
        assert tensor.shape == (8, 24, 24, 3) and np.array_equal(tensor.numpy(), crop_batch)


def test_branches_give_the_same_batches_for_any_thread_count(photos):
    def graph():
        decoder = CenterCropRGBImageDecoder((48, 48), 1.0)
        return {'label': None, 'image': PipelineSpec('image', decoder=decoder, transforms=[ToTensor()]),
                **{f'v{k}': PipelineSpec(decoder, transforms=view(24)) for k in range(3)}}
    assert same_batches(collect(loader(photos, graph(), num_workers=1)),
                        collect(loader(photos, graph(), num_workers=2)))


def test_sources_that_cannot_be_resolved_are_clear_errors(photos):
    decoder = CenterCropRGBImageDecoder((40, 40), 1.0)
    with pytest.raises(PipelineError, match="pipeline 'v' starts from .*not an operation of any other pipeline"):
        Loader(photos, batch_size=8, pipelines={'image': None, 'v': PipelineSpec(decoder, transforms=view(16))})
    shared = RandomHorizontalFlip()
    with pytest.raises(PipelineError, match="several pipelines use .*ambiguous"):
        Loader(photos, batch_size=8, pipelines={
            'image': None,
            'a': PipelineSpec('image', decoder=CenterCropRGBImageDecoder((40, 40), 1.0), transforms=[shared]),
            'b': PipelineSpec('image', decoder=CenterCropRGBImageDecoder((40, 40), 1.0), transforms=[shared]),
            'c': PipelineSpec(shared, transforms=[ToTensor()])})
    with pytest.raises(PipelineError, match="cannot have a decoder too"):
        Loader(photos, batch_size=8, pipelines={'image': PipelineSpec('image', decoder=decoder),
                                                'v': PipelineSpec(decoder, decoder=decoder)})
