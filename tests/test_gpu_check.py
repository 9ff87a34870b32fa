"""scripts/gpu_check.sh: its CPU rehearsal runs every step and reports them; its command lines are ones the recipes
accept; and the CUDA tests it runs on the day a GPU is lent (the loader's host-to-device path)."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.runs.config import parse_config, settings_of
from ffcv.transforms import Convert, ToDevice, ToTensor, ToTorchImage
from helpers import ROOT, load_script

STEPS = ['gpu', 'cuda_tests', 'cifar_data', 'cifar_train', 'cifar_bench', 'imagenet_data', 'loader', 'model',
         'imagenet_train', 'torchrun']


@pytest.fixture(scope='module')
def gpu_check():
    return load_script('scripts/gpu_check.py')


def test_published_rates(gpu_check):
    """The figures the ratios divide by: images trained per second in FFCV's published runs."""
    assert gpu_check.PUBLISHED['cifar']['images_per_s'] == pytest.approx(24 * 97 * 512 / 36)       # 33,109
    assert gpu_check.PUBLISHED['rn18']['images_per_s'] == pytest.approx(16 * 1_281_167 / 2100)     # 9,761


@pytest.mark.parametrize('mode', ['gpu', 'dry'])
def test_commands_are_ones_the_recipes_accept(gpu_check, mode, tmp_path, monkeypatch):
    """Every override parses (no misspelt key waits for the GPU day) and the GPU run is the published recipe."""
    monkeypatch.chdir(ROOT)  # the config files are named relative to the repository
    commands, size = gpu_check.commands(mode, tmp_path, tmp_path / 'runs', tmp_path), gpu_check.SIZES[mode]
    cifar, imagenet = load_script('train_cifar.py'), load_script('train_imagenet.py')
    parse_config(cifar.CONFIG, commands['cifar_train'][2:])
    s = settings_of(cifar.CONFIG)
    assert (s.training.epochs, s.training.batch_size) == (size['cifar_epochs'], size['cifar_batch'])
    if mode == 'gpu':  # FFCV's recipe as published: 24 epochs of batch 512, on the GPU the script picks
        assert (s.training.epochs, s.training.batch_size, s.training.device) == (24, 512, 'auto')
    torchrun = commands['torchrun']
    for argv in (commands['imagenet_train'][2:], torchrun[torchrun.index('--') + 1:]):
        parse_config(imagenet.CONFIG, argv)
        s = settings_of(imagenet.CONFIG)
        assert (s.model.arch, s.training.batch_size) == ('resnet18', size['imagenet_batch'])
        assert s.resolution.min_res == s.resolution.max_res == size['imagenet_res']
    assert 'gpu_check_torchrun.py' in ' '.join(torchrun) and '--nproc_per_node=1' in torchrun
    tests = commands['cuda_tests']
    assert tests[tests.index('cuda') - 1] == '-m' and 'tests/test_gpu_check.py' in tests  # pytest -m cuda


def test_a_failing_step_is_reported_and_the_run_goes_on(gpu_check, tmp_path):
    run = gpu_check.Run('dry', tmp_path / 'out', tmp_path / 'data', budget_s=8)
    run.step('gpu', 'GPU', lambda: {'status': 'ok', 'gpu': 'none'})
    run.step('cifar_data', 'CIFAR-like data', lambda: 1 / 0)
    run.step('cifar_train', 'train_cifar.py', lambda: {'status': 'ok'}, needs=['cifar_data'])
    run.commands['cifar_bench'] = ['bash', '-c', 'sleep 60 & sleep 60']  # outlives the budget, with a child
    started = time.time()
    run.step('cifar_bench', 'ffcv bench', lambda: run.program('cifar_bench'))
    assert time.time() - started < 20
    assert [s['status'] for s in run.steps] == ['ok', 'failed', 'not run', 'failed']
    assert run.steps[3]['why'].startswith('no exit within')
    summary = gpu_check.format_summary(run)
    assert 'FAILED: CIFAR-like data: ZeroDivisionError: division by zero' in summary
    assert 'NOT RUN: train_cifar.py: needs cifar_data' in summary and '1 of 4 steps ok' in summary


def test_dry_run(tmp_path):
    """The whole check on the CPU, as on the GPU but tiny: every step ok, the table printed, results.json kept."""
    started = time.time()
    result = subprocess.run(['bash', 'scripts/gpu_check.sh', '--dry-run', '--out', str(tmp_path)], cwd=ROOT,
                            env={**os.environ, 'PYTHON': sys.executable}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert time.time() - started < 180
    out = result.stdout
    assert 'DRY RUN summary' in out and f'10 of 10 steps ok; results in {tmp_path / "results.json"}' in out
    table = out[out.index('DRY RUN summary'):].splitlines()
    for start in ('CUDA tests (pytest -m cuda)', 'CIFAR-10 ResNet-9, 1 epoch: images/s', '  loader alone',
                  'ResNet-18 at 32 px, 16 images an epoch, epoch 2: images/s', 'torchrun: train_imagenet.py',
                  'torchrun: all_reduce + 2 DDP steps over gloo', '  model alone', '  limited by'):
        assert any(line.startswith(start) for line in table), start
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['mode'] == 'dry' and [s['name'] for s in results['steps']] == STEPS
    steps = {s['name']: s for s in results['steps']}
    assert all(s['status'] == 'ok' for s in steps.values())
    assert steps['gpu']['available'] is False  # CUDA hidden: the CPU path
    assert steps['cuda_tests']['tests'] == steps['cuda_tests']['skipped'] > 0  # reported as skipped
    cifar, rn18 = steps['cifar_train'], steps['imagenet_train']
    assert cifar['epochs'] == 1 and cifar['images'] == 32 and cifar['images_per_s'] > 0
    assert cifar['ratio'] == pytest.approx(cifar['images_per_s'] / results['published']['cifar']['images_per_s'])
    assert rn18['epochs'] == 2 and rn18['resolution'] == 32 and rn18['images_per_epoch'] == 16
    assert steps['cifar_bench']['device'] is None and steps['cifar_bench']['batch_size'] == 16
    loader, model = steps['loader'], steps['model']  # the recipe's two sides apart, at its settings
    assert (loader['batch_size'], loader['resolution'], loader['workers'], loader['epochs']) == (8, 32, 2, 2)
    assert loader['images_per_epoch'] == 16 and loader['images_per_s'] == loader['epoch_images_per_s'][1] > 0
    assert (model['arch'], model['batch_size'], model['resolution'], model['steps']) == ('resnet18', 8, 32, 2)
    assert model['device'] == 'cpu' and model['images_per_s'] > 0 and np.isfinite(model['last_loss'])
    torchrun = steps['torchrun']
    assert (torchrun['ddp']['backend'], torchrun['ddp']['steps'], torchrun['stopped_at_step']) == ('gloo', 2, 2)
    rows = {row['check']: row for row in results['summary']}
    assert rows['CIFAR-10 ResNet-9, 1 epoch: images/s']['published'] == '33,109'
    assert (tmp_path / 'logs' / 'cifar_train.log').exists() and (tmp_path / 'rn18_log.jsonl').exists()


# --- The CUDA tests the check runs (skipped without a GPU) ---

def cifar_loader(path, device=None, batch_size=16):
    image = [SimpleRGBImageDecoder(), ToTensor(), *([ToDevice(device, non_blocking=True)] if device else []),
             ToTorchImage(), Convert(torch.float16)]
    label = [IntDecoder(), ToTensor(), *([ToDevice(device, non_blocking=True)] if device else [])]
    return Loader(str(path), batch_size=batch_size, num_workers=2, order=OrderOption.RANDOM, seed=3,
                  drop_last=False, pipelines={'image': image, 'label': label})


@pytest.mark.cuda
def test_to_device_batches_equal_the_cpu_ones(fixtures_dir):
    """Asynchronous copies from reused pinned buffers, with a slow consumer on the GPU: no batch is overwritten
    before it is used, and the layout stays channels-last."""
    path = fixtures_dir / 'cifar_like.beton'
    cpu_loader = cifar_loader(path)
    expected = [[t.clone() for t in batch] for _ in range(2) for batch in cpu_loader]  # two epochs
    loader = cifar_loader(path, 'cuda:0')
    seen = []
    for _ in range(2):
        for images, labels in loader:
            torch.cuda._sleep(2_000_000)  # the GPU is busy while the next batches are prepared
            assert images.is_cuda and images.is_contiguous(memory_format=torch.channels_last)
            seen.append((images.clone(), labels.clone()))
    assert len(seen) == len(expected)
    for (images, labels), (cpu_images, cpu_labels) in zip(seen, expected):
        torch.testing.assert_close(images.cpu(), cpu_images, rtol=0, atol=0)
        assert torch.equal(labels.cpu().view(-1), cpu_labels.view(-1))


@pytest.mark.cuda
def test_host_batches_are_pinned(fixtures_dir):
    """With CUDA available the loader's host buffers are pinned memory (what non_blocking copies need)."""
    loader = Loader(str(fixtures_dir / 'cifar_like.beton'), batch_size=16, num_workers=2,
                    pipelines={'image': [SimpleRGBImageDecoder(), ToTensor()], 'label': [IntDecoder(), ToTensor()]})
    images, labels = next(iter(loader))
    assert images.is_pinned() and labels.is_pinned()


@pytest.mark.cuda
def test_bench_times_the_host_to_device_copy(fixtures_dir):
    from ffcv.tools.bench import bench_file
    report = bench_file(str(fixtures_dir / 'cifar_like.beton'), batch_size=32, num_workers=2, batches=2)
    stages = {stage['stage']: stage for stage in report['fields'][0]['stages']}
    assert report['device'] == 'cuda' and stages['host-to-device (ToDevice)']['images'] == 64


@pytest.mark.cuda
def test_amp_channels_last_step_on_loader_batches(fixtures_dir):
    """What the recipes do with a batch: float16 channels-last images into a conv net under autocast."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 1000)).cuda().to(memory_format=torch.channels_last)
    optimizer, scaler = torch.optim.SGD(model.parameters(), lr=0.1), torch.amp.GradScaler('cuda')
    for images, labels in cifar_loader(fixtures_dir / 'cifar_like.beton', 'cuda:0'):
        with torch.autocast('cuda'):
            loss = torch.nn.functional.cross_entropy(model(images), labels.view(-1).long())
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert np.isfinite(loss.item())
