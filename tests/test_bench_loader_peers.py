"""The DALI and SPDL peers of benchmarks/bench_loader.py on a tiny photo .beton, and the bench's own plumbing.

The peers run only where their packages are installed (not in CI: `pip install nvidia-dali-cuda130`,
`pip install spdl` + FFmpeg's shared libraries); each is checked against the torch system's validation
transform (PIL decode, torchvision Resize + CenterCrop) on the same JPEG bytes, with the tolerance stated
at the test. The first-batch check, ratios, goals and table need no peer package.
"""
from __future__ import annotations

import importlib.util
import io
import json
import signal

import numpy as np
import pytest
import torch

from helpers import load_script

bench = load_script('benchmarks/bench_loader.py', 'ffcv_bench_loader_peers')
worker = load_script('benchmarks/loader_worker.py', 'ffcv_bench_loader_worker_peers')
spdl_loader = load_script('benchmarks/spdl_loader.py', 'ffcv_bench_spdl_loader_test')

COUNT = 20      # images in the tiny dataset
RES = {'train': 48, 'val': 56}


def missing(module: str) -> bool:
    """Whether `module` cannot be found (without importing it; a missing parent package counts)."""
    try:
        return importlib.util.find_spec(module) is None
    except ImportError:
        return True


MISSING = {'dali': missing('nvidia.dali'), 'spdl': missing('spdl')}
REASON = {'dali': 'nvidia-dali-cuda130 not installed', 'spdl': 'spdl not installed'}
PEERS = [pytest.param(system, marks=pytest.mark.skipif(MISSING[system], reason=REASON[system]))
         for system in ('dali', 'spdl')]


@pytest.fixture(autouse=True, scope='module')
def restore_sigterm():
    """SPDL's glog installs a SIGTERM handler that prints a stack trace; put the previous one back so that
    processes forked by later tests (the writer's workers) do not inherit it."""
    saved = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, signal.SIG_DFL if saved is None else saved)


@pytest.fixture(scope='module')
def tiny_photos(tmp_path_factory):
    """COUNT photo-like JPEGs (max side 96, quality 90) in a .beton and exported as the torch system reads
    them (bench_loader.export_for_torch): {'path', 'torch_data'}."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    folder = tmp_path_factory.mktemp('peers')
    path = folder / 'photos.beton'
    dataset = bench.data.make_dataset('photo', COUNT, seed=3)
    fields = {'image': RGBImageField(write_mode='jpg', max_resolution=96, jpeg_quality=90), 'label': IntField()}
    DatasetWriter(str(path), fields, num_workers=1).from_indexed_dataset(dataset, progress=False)
    torch_data = folder / 'photos.torch.npz'
    bench.export_for_torch(path, torch_data)
    return {'path': str(path), 'torch_data': str(torch_data)}


def peer_spec(photos: dict, system: str, pipeline: str, batch_size: int, epochs: int = 2) -> dict:
    return {'system': system, 'path': photos['path'], 'torch_data': photos['torch_data'], 'pipeline': pipeline,
            'res': RES[pipeline], 'batch_size': batch_size, 'num_workers': 2, 'epochs': epochs, 'seed': 0,
            'samples': None, 'torch_decoder': 'pil', 'augment': False}


def make_peer(system: str, spec: dict):
    peer = worker.peer_module(system)
    reason = peer.unavailable()
    if reason:
        pytest.skip(reason)
    return peer.make_loader(spec)


def epoch_of(loader) -> list:
    """One epoch as [(images, labels)], cloned (loaders may reuse their buffers)."""
    return [(images.clone(), labels.clone()) for images, labels in loader]


def pooled_difference(images: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Per image, the mean absolute difference of 7x7 block means ((N, 3, 56, 56) -> (N,)): blind to the
    decoders' and resize filters' pixel-level differences, not to a wrong crop, flip or channel order."""
    def blocks(batch):
        return torch.nn.functional.avg_pool2d(batch.float(), 7)
    return (blocks(images) - blocks(expected)).abs().mean(dim=(1, 2, 3))


@pytest.mark.parametrize('system', PEERS)
def test_peer_val_matches_torchvision(tiny_photos, system):
    """Sequential val epoch (batches 8, 8, 4): labels exactly in file order; images as torchvision's
    Resize(64) + CenterCrop(56) of the PIL-decoded JPEG (the torch system's val), within 3 levels of 7x7
    block means on average over the images and 8 on any one. The decoders (libjpeg-turbo in PIL and DALI,
    FFmpeg's mjpeg in SPDL), the resize filters and the rounding of the crop's origin (one pixel here and
    there) differ; measured: DALI 1.1, SPDL 1.6 (ours 1.8); a mirrored, uncropped or BGR output: 10-35."""
    from PIL import Image
    from torchvision import transforms as T
    spec = peer_spec(tiny_photos, system, 'val', batch_size=8)
    loader = make_peer(system, spec)
    batches = epoch_of(loader)
    worker.check_first_batch(spec, batches[0])
    assert [b[0].shape[0] for b in batches] == [8, 8, 4]
    arrays = np.load(tiny_photos['torch_data'])
    blob, offsets = arrays['blob'], arrays['offsets']
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), arrays['labels'])
    reference = T.Compose([T.Resize(64, antialias=True), T.CenterCrop(56), T.PILToTensor()])
    expected = torch.stack([reference(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert('RGB'))
                            for i in range(COUNT)])
    images = torch.cat([b[0] for b in batches])
    assert images.shape == (COUNT, 3, 56, 56) and images.dtype == torch.uint8
    difference = pooled_difference(images, expected)
    assert float(difference.mean()) < 3 and float(difference.max()) < 8, (system, difference)
    assert float(pooled_difference(images.flip(-1), expected).mean()) > 3  # the check can fail
    if hasattr(loader, 'close'):
        loader.close()


@pytest.mark.parametrize('system', PEERS)
def test_peer_train_epochs_are_shuffled_full_batches(tiny_photos, system):
    """Train, batch 8 over 20 images: every epoch 2 full batches (drop_last) of (8, 3, 48, 48) uint8, labels
    drawn without replacement from the file's, and a different order each epoch."""
    spec = peer_spec(tiny_photos, system, 'train', batch_size=8)
    loader = make_peer(system, spec)
    labels = np.load(tiny_photos['torch_data'])['labels']
    orders = []
    for _ in range(3):
        batches = epoch_of(loader)
        worker.check_first_batch(spec, batches[0])
        assert [tuple(b[0].shape) for b in batches] == [(8, 3, 48, 48)] * 2
        epoch_labels = torch.cat([b[1] for b in batches]).numpy()
        remaining = list(labels)
        for label in epoch_labels:  # a sub-multiset of the file's labels
            remaining.remove(label)
        orders.append(tuple(epoch_labels))
    assert len(set(orders)) == 3, orders
    if hasattr(loader, 'close'):
        loader.close()


@pytest.mark.parametrize('system', PEERS)
def test_peer_measurement_in_a_fresh_process(tiny_photos, system):
    """bench_loader's own path: loader_worker.py in a fresh process gives the same fields as for the others."""
    if worker.peer_module(system).unavailable():
        pytest.skip(worker.peer_module(system).unavailable())
    spec = peer_spec(tiny_photos, system, 'train', batch_size=8)
    del spec['system']
    result = bench.run_measurement(system, spec, None, timeout=300)
    assert result['images'] == 16 and len(result['epoch_s']) == 1
    assert result['first_images_per_s'] > 0 and result['steady_images_per_s'] > 0
    assert result['peak_rss_mb'] > 50 and result['peak_tree_pss_mb'] > 0
    json.dumps(result)


def good_batch(count: int = 8, res: int = 48):
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (count, 3, res, res), dtype=np.uint8))
    return images, torch.arange(count)


@pytest.mark.parametrize('damage, message', [
    (lambda b: (b[0].float(), b[1]), 'torch.uint8'),
    (lambda b: (b[0][:, :, :40], b[1]), 'shape'),
    (lambda b: (b[0][:5], b[1][:5]), 'shape'),            # train must give full batches
    (lambda b: (b[0], b[1][:7]), 'labels of shape'),
    (lambda b: (b[0], b[1].float()), 'labels of shape'),
    (lambda b: (torch.zeros_like(b[0]), b[1]), 'implausible pixels'),
    (lambda b: (b[0][:1].expand(8, -1, -1, -1), b[1]), 'first two equal: True'),
])
def test_check_first_batch_rejects_bad_batches(damage, message):
    spec = {'system': 'dali', 'pipeline': 'train', 'res': 48, 'batch_size': 8}
    worker.check_first_batch(spec, good_batch())
    with pytest.raises(RuntimeError, match=message) as raised:
        worker.check_first_batch(spec, damage(good_batch()))
    assert "dali, pipeline 'train', first batch" in str(raised.value)
    worker.check_first_batch(dict(spec, pipeline='val'), good_batch(count=5))  # val: a last, partial batch


def test_ratios_goals_and_table_cover_the_peers(capsys):
    def system(first, steady, rss, wait):
        return {'first_images_per_s': first, 'steady_images_per_s': steady, 'peak_rss_mb': rss, 'runs_quiet': 1,
                'peak_tree_pss_mb': rss, 'first_batch_s': wait}
    summary = {'ours': system(2000, 6000, 500, 0.5), 'torch': system(500, 1800, 600, 2.0),
               'dali': system(2500, 3000, 640, 0.75), 'spdl': system(1000, 1500, 400, 0.25)}
    summary['ratios'] = bench.ratios(summary)
    assert summary['ratios']['steady_ours_over_dali'] == pytest.approx(2.0)
    assert summary['ratios']['first_ours_over_spdl'] == pytest.approx(2.0)
    assert summary['ratios']['rss_spdl_over_ours'] == pytest.approx(0.8)
    assert summary['ratios']['first_batch_dali_over_ours'] == pytest.approx(1.5)  # a wait: other / ours
    summary['goals'] = bench.check_goals('train', summary)
    met = {(g['metric'], g['versus']): g['met'] for g in summary['goals']}
    assert met[('first', 'dali')] is False and met[('rss', 'dali')] is True and met[('rss', 'spdl')] is False
    assert met[('first_batch', 'dali')] is True
    bench.print_table({'train': summary}, 2)
    table = capsys.readouterr().out
    assert 'ours/DALI' in table and 'ours/SPDL' in table and '2.00x' in table
    assert '<= SPDL MISSED' in table and '1.0x dali MISSED' in table
    assert '1st b.' in table and '0.75' in table and '1.50x' in table and '<= DALI ok' in table
    del summary['spdl']['first_batch_s']  # a result without the wait (an older JSON): no ratio, no row
    assert 'first_batch_spdl_over_ours' not in bench.ratios(summary)


def test_spdl_random_resized_crop_matches_torchvision_statistics():
    """SPDL's crop draw (Python, per image) against torchvision's RandomResizedCrop.get_params on a 96x72
    image, 4,000 draws each: windows inside the image; mean area share and mean log aspect ratio within
    0.02 / 0.03 of torchvision's (sampling error about 0.005 / 0.01)."""
    from torchvision.transforms import RandomResizedCrop
    height, width, draws = 72, 96, 4000
    rng = np.random.default_rng(0)
    ours = np.array([spdl_loader.random_resized_crop(rng, height, width) for _ in range(draws)])
    x, y, w, h = ours.T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= width).all() and (y + h <= height).all()
    torch.manual_seed(0)
    image = torch.zeros(3, height, width)
    theirs = np.array([RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3)) for _ in range(draws)])
    their_h, their_w = theirs[:, 2], theirs[:, 3]  # (top, left, height, width)
    area = (w * h).mean() / (height * width)
    assert abs(area - (their_w * their_h).mean() / (height * width)) < 0.02
    assert abs(np.log(w / h).mean() - np.log(their_w / their_h).mean()) < 0.03
    assert spdl_loader.center_crop(72, 96) == ((96 - 63) // 2, (72 - 63) // 2, 63, 63)
