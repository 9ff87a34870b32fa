"""Behaviour code written for FFCV 1.0.2 relies on: exception classes, accepted inputs, documented pipelines,
`Loader.filter` (each checked against what FFCV 1.0.2 does on the same program)."""
import numpy as np
import pytest
import torch

from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline.pipeline_spec import PipelineError
from ffcv.transforms import NormalizeImage, ToTensor, ToTorchImage, View
from ffcv.traversal_order import QuasiRandom

from conftest import photo_like
from helpers import write_and_read

MEAN, STD = np.array([125.3, 123.0, 113.9]), np.array([63.0, 62.1, 66.7])


@pytest.fixture(scope='module')
def mixed_sizes(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp('mixed') / 'mixed.beton')
    samples = [(photo_like(rng, 20 + i % 3, 24), i) for i in range(12)]
    write_and_read(path, {'image': RGBImageField(write_mode='raw'), 'label': IntField()}, samples)
    return path, samples


def test_simple_decoder_on_mixed_sizes_raises_a_type_error(mixed_sizes):
    # FFCV raises TypeError here; ours is also a PipelineError naming the pipeline
    with pytest.raises(TypeError, match="pipeline 'image', decoder") as info:
        Loader(mixed_sizes[0], batch_size=4, pipelines={'image': [SimpleRGBImageDecoder()]})
    assert isinstance(info.value, PipelineError)


def test_cpu_normalisation_as_ffcv_documents_it(tmp_path):
    rng = np.random.default_rng(1)
    images = [photo_like(rng, 16, 16) for _ in range(8)]
    path = str(tmp_path / 'same.beton')
    write_and_read(path, {'image': RGBImageField(write_mode='raw')}, [(image,) for image in images])
    pipeline = [SimpleRGBImageDecoder(), NormalizeImage(MEAN, STD, np.float16), View(np.float16), ToTensor(),
                ToTorchImage()]
    (batch,), = list(Loader(path, batch_size=8, pipelines={'image': pipeline}))
    assert batch.dtype == torch.float16 and batch.shape == (8, 3, 16, 16)
    expected = ((np.stack(images).astype(np.float64) - MEAN) / STD).astype(np.float16).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(batch.numpy(), expected)  # table entries computed as the reference does


def test_view_keeps_numpy_and_torch_batches_as_they_are(tmp_path):
    path = str(tmp_path / 'ints.beton')
    write_and_read(path, {'label': IntField()}, [(i,) for i in range(8)])
    as_float = [IntDecoder(), View(np.float64), ToTensor()]  # int64 bits seen as float64, then a tensor
    (values,), = list(Loader(path, batch_size=8, pipelines={'label': as_float}))
    assert values.dtype == torch.float64
    np.testing.assert_array_equal(values.numpy().view(np.int64).ravel(), np.arange(8))
    after = [IntDecoder(), ToTensor(), View(torch.float64)]
    (same,), = list(Loader(path, batch_size=8, pipelines={'label': after}))
    assert torch.equal(same, values)


def test_filter_tests_the_loaders_own_pipeline(mixed_sizes):
    path, samples = mixed_sizes
    doubled = [IntDecoder(), ToTensor(), torch.nn.Identity(), _Double()]
    loader = Loader(path, batch_size=4, drop_last=False, pipelines={'image': None, 'label': doubled})
    kept = loader.filter('label', lambda value: int(value) % 4 == 0)  # on doubled labels: even labels pass
    labels = torch.cat([labels for (labels,) in kept]).ravel().tolist()
    assert sorted(labels) == [2 * i for i in range(12) if (2 * i) % 4 == 0]


def test_filter_keeps_order_kwargs_and_the_other_arguments(mixed_sizes):
    path, _ = mixed_sizes
    loader = Loader(path, batch_size=2, order=QuasiRandom, order_kwargs={'window': 3}, seed=5, drop_last=False,
                    pipelines={'image': None})
    kept = loader.filter('label', lambda value: int(value) < 6)
    assert kept.traversal_order.window == 3 and kept.seed == 5 and not kept.drop_last
    assert sorted(torch.cat([labels for (labels,) in kept]).ravel().tolist()) == list(range(6))
    assert kept.order_option is QuasiRandom and loader.order_option is QuasiRandom


def test_filter_on_a_random_order_gives_file_sample_ids(mixed_sizes):
    path, _ = mixed_sizes
    loader = Loader(path, batch_size=3, order=OrderOption.RANDOM, seed=1, indices=range(3, 12),
                    pipelines={'image': None})
    kept = loader.filter('label', lambda value: int(value) % 2 == 1)
    assert sorted(kept.indices.tolist()) == [3, 5, 7, 9, 11]


class _Double(torch.nn.Module):
    def forward(self, x):
        return x * 2
