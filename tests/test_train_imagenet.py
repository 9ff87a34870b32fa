"""train_imagenet.py on CPU: BlurPool, the weight-decay split, short runs (1 process and 2-process gloo DDP
under torchrun), eval_only, and resume after a stop giving the same weights as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ffcv.runs.config import ConfigError
from ffcv.fields.rgb_image import IMAGE_MODES
from ffcv.reader import Reader

from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
RN18_16 = str(ROOT / 'rn18_configs' / 'rn18_16_epochs.yaml')


@pytest.fixture(scope='module')
def recipe():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra threads only contend on a shared 2-core machine
    yield load_script('train_imagenet.py')
    torch.set_num_threads(previous)


def run_args(imagenet_tiny, folder, name, *extra):
    return ['--config-file', RN18_16, f'--data.train_dataset={imagenet_tiny[0]}',
            f'--data.val_dataset={imagenet_tiny[1]}', '--data.num_workers=1', '--training.batch_size=8',
            '--validation.batch_size=8', '--lr.lr=0.02',
            '--resolution.min_res=32', '--resolution.max_res=32', '--validation.resolution=32',
            f'--logging.folder={folder}', f'--logging.run_name={name}', *extra]


def read_log(folder: Path, name: str = 'log.jsonl') -> list:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


@pytest.mark.parametrize('arch,strided', [('resnet18', 'conv1'), ('resnet50', 'conv2')])
def test_blurpool_wraps_exactly_the_six_strided_convs(recipe, arch, strided):
    model = recipe.build_model(arch, pretrained=False, use_blurpool=True)
    wrapped = sorted(name for name, m in model.named_modules() if isinstance(m, recipe.BlurPoolConv2d))
    assert wrapped == sorted([f'layer{i}.0.{strided}' for i in (2, 3, 4)] +
                             [f'layer{i}.0.downsample.0' for i in (2, 3, 4)])
    assert type(model.conv1) is nn.Conv2d and model.conv1.stride == (2, 2)     # 3-channel stem: untouched
    block = getattr(model.layer2[0], strided)
    assert block.conv.stride == (2, 2) and 'blur_filter' in dict(block.named_buffers())
    assert not any('blur' in name for name, _ in model.named_parameters())      # the blur is not trained
    expected = torch.tensor([[1., 2., 1.], [2., 4., 2.], [1., 2., 1.]]) / 16
    assert torch.equal(block.blur_filter[5, 0], expected) and block.blur_filter.shape[0] == block.conv.in_channels
    x = torch.randn(1, block.conv.in_channels, 8, 8)
    blurred = nn.functional.conv2d(x, block.blur_filter, padding=1, groups=block.conv.in_channels)
    torch.testing.assert_close(block(x), block.conv(blurred))
    assert recipe.build_model(arch, False, True).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)


@pytest.mark.parametrize('arch,batchnorms,downsample', [('resnet18', 17, 3), ('resnet50', 49, 4)])
def test_weight_decay_skips_exactly_the_bn_named_parameters(recipe, arch, batchnorms, downsample):
    model = recipe.build_model(arch, pretrained=False, use_blurpool=True)
    no_decay, decay = recipe.param_groups(model, 5e-5)
    assert (no_decay['weight_decay'], decay['weight_decay']) == (0.0, 5e-5)
    names = {id(p): name for name, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay['params']}
    decayed = {names[id(p)] for p in decay['params']}
    assert skipped | decayed == set(names.values()) and not skipped & decayed
    bn_named = {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
                and name.split('.')[-1].startswith('bn')}
    assert len(bn_named) == batchnorms
    assert skipped == {f'{m}.{p}' for m in bn_named for p in ('weight', 'bias')}
    kept_bn = [n for n in decayed if '.downsample.1.' in n]                     # downsample BNs keep their decay
    assert len(kept_bn) == 2 * downsample and 'fc.bias' in decayed and 'layer2.0.downsample.0.conv.weight' in decayed


def test_two_step_run_then_eval_only(recipe, imagenet_tiny, tmp_path):
    summary = recipe.main(run_args(imagenet_tiny, tmp_path, 'one', '--training.epochs=1', '--training.batch_size=16'))
    run = tmp_path / 'one'
    assert summary['steps'] == 2 and summary['val_images'] == 20 and summary['world_size'] == 1
    lines = read_log(run)
    assert lines[0]['epoch'] == 0 and lines[0]['resolution'] == 32 and lines[-1]['summary']
    assert {'train_loss', 'current_lr', 'images_per_s', 'epoch_time_s', 'relative_time'} <= set(lines[0])
    assert {'config.yaml', 'run.json', 'checkpoint.pt', 'final_weights.pt', 'curves.png'} <= {
        p.name for p in run.iterdir()}
    steps = read_log(run, 'steps.jsonl')                                        # per step: the LR, rank 0's loss
    assert [r['step'] for r in steps] == [1, 2] and all(r['loss'] > 0 for r in steps)
    assert [r['lr'] for r in steps] == [recipe.step_lr(0, i, 2, schedule='cyclic', lr=0.02, epochs=1, peak_epoch=2,
                                                       step_ratio=0.1, step_length=30) for i in (0, 1)]
    weights = torch.load(run / 'final_weights.pt')
    torch.save({f'module.{k}': v for k, v in weights.items()}, tmp_path / 'ddp_style.pt')   # DDP-prefixed names
    again = recipe.main(['--config-file', RN18_16, f'--data.val_dataset={imagenet_tiny[1]}', '--data.num_workers=1',
                         '--validation.batch_size=8', '--validation.resolution=32', f'--logging.folder={tmp_path}',
                         '--training.eval_only=true', f'--training.checkpoint={tmp_path / "ddp_style.pt"}'])
    assert (again['top_1'], again['top_5'], again['val_images']) == (summary['top_1'], summary['top_5'], 20)
    assert again['val_loss'] == pytest.approx(summary['val_loss'], rel=1e-5)
    with pytest.raises(ConfigError, match='use_blurpool=true'):
        recipe.main(['--config-file', RN18_16, f'--data.val_dataset={imagenet_tiny[1]}', '--data.num_workers=1',
                     f'--logging.folder={tmp_path}', '--training.eval_only=true', '--training.use_blurpool=false',
                     f'--training.checkpoint={run / "final_weights.pt"}'])


def test_rn50_config_on_one_process_is_refused(recipe, imagenet_tiny, tmp_path):
    with pytest.raises(ConfigError, match='dist.world_size=8.*1 were launched'):
        recipe.main(['--config-file', str(ROOT / 'rn50_configs' / 'rn50_16_epochs.yaml'),
                     f'--data.train_dataset={imagenet_tiny[0]}', f'--data.val_dataset={imagenet_tiny[1]}',
                     '--data.num_workers=1',
                     f'--logging.folder={tmp_path}'])


def test_two_process_gloo_ddp_under_torchrun(imagenet_tiny, tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore'}
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
               str(ROOT / 'train_imagenet.py'), *run_args(imagenet_tiny, tmp_path, 'ddp', '--training.epochs=1',
                                                          '--dist.world_size=2')]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = read_log(tmp_path / 'ddp')[-1]
    # 40 images over 2 ranks of batch 8: 2 steps; every val image counted once across the ranks
    assert (summary['steps'], summary['world_size'], summary['val_images'], summary['global_batch_size']) == (
        2, 2, 20, 16)
    checkpoint = torch.load(tmp_path / 'ddp' / 'checkpoint.pt', weights_only=False)
    assert checkpoint['world_size'] == 2 and checkpoint['loader']['epoch'] == 1
    assert not any(key.startswith('module.') for key in checkpoint['model'])
    assert done.stdout.count('run folder:') == 1                                 # only rank 0 reports
    assert done.stderr.count('train_imagenet.py: train ') == 1                   # ... its start-up line
    assert 'on cpu (rank 0 of 2 processes)' in done.stderr
    assert done.stderr.count('epoch 0: 100%') == 1                               # ... and its progress bar


RESUME_ARGS = ('--training.epochs=2', '--resolution.max_res=64', '--resolution.start_ramp=0',
               '--resolution.end_ramp=1', '--logging.log_level=1')  # 5 steps per epoch, 32 px then 64 px


@pytest.fixture(scope='module')
def uninterrupted(recipe, imagenet_tiny, tmp_path_factory):
    folder, real_step, sides = tmp_path_factory.mktemp('straight'), recipe.train_step, []

    def recording_step(model, images, *args, **kwargs):
        sides.append(tuple(images.shape[2:]))
        return real_step(model, images, *args, **kwargs)
    recipe.train_step = recording_step
    try:
        recipe.main(run_args(imagenet_tiny, folder, 'straight', *RESUME_ARGS))
    finally:
        recipe.train_step = real_step
    assert sides == [(32, 32)] * 5 + [(64, 64)] * 5                           # progressive resizing applied
    return folder / 'straight'


def test_signals_stop_after_the_step_and_a_second_ctrl_c_interrupts(recipe):
    process = recipe.Process(0, 0, 1, torch.device('cpu'))
    with recipe.StopOnSignal() as stop:
        assert recipe.stop_reason(1, 0, stop, process) is None
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)                                     # torchrun's follow-up: waits
        assert recipe.stop_reason(2, 0, stop, process) == 'SIGINT'
        assert recipe.stop_reason(2, 2, stop, process) == 'max_steps'
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize('how,stop_step', [('sigterm', 3), ('max_steps', 7)])
def test_resume_after_a_stop_gives_the_uninterrupted_weights(recipe, imagenet_tiny, tmp_path, uninterrupted,
                                                            monkeypatch, how, stop_step):
    extra = list(RESUME_ARGS)
    if how == 'sigterm':  # the signal lands in the middle of step 3: that step completes, then the run stops
        real_step, calls = recipe.train_step, []

        def step_with_signal(*args, **kwargs):
            calls.append(1)
            if len(calls) == stop_step:
                signal.raise_signal(signal.SIGTERM)
            return real_step(*args, **kwargs)
        monkeypatch.setattr(recipe, 'train_step', step_with_signal)
    else:
        extra.append(f'--training.max_steps={stop_step}')
    stopped = recipe.main(run_args(imagenet_tiny, tmp_path, 'cut', *extra))
    assert stopped['stopped_at_step'] == stop_step
    monkeypatch.undo()
    checkpoint = tmp_path / 'cut' / 'checkpoint.pt'
    state = torch.load(checkpoint, weights_only=False)
    assert (state['step'], state['loader']['epoch'], state['loader']['batches_served']) == (
        stop_step, stop_step // 5, stop_step % 5)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL                  # handlers restored
    recipe.main(run_args(imagenet_tiny, tmp_path, 'cut', *RESUME_ARGS, f'--training.resume={checkpoint}'))
    straight = torch.load(uninterrupted / 'final_weights.pt')
    resumed = torch.load(tmp_path / 'cut' / 'final_weights.pt')
    assert straight.keys() == resumed.keys()
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
    expected, got = read_log(uninterrupted), read_log(tmp_path / 'cut')
    assert [r['resolution'] for r in got if 'epoch' in r] == [32, 64]
    for want, have in zip(expected[:2], [r for r in got if 'epoch' in r]):
        assert have['train_loss'] == pytest.approx(want['train_loss'], rel=1e-6)   # stopped epoch's loss carried
        assert (have['top_1'], have['step']) == (want['top_1'], want['step'])


def test_write_imagenet_presets_and_names(imagenet_tiny):
    writer = load_script('examples/imagenet/write_imagenet.py')
    assert writer.PRESETS['rn50'] == {'max_resolution': 500, 'compress_probability': 0.5, 'jpeg_quality': 90}
    assert writer.PRESETS['rn18'] == {'max_resolution': 400, 'compress_probability': 0.1, 'jpeg_quality': 90}
    assert writer.output_name('train', 500, 0.5, 90) == 'train_500_0.50_90.beton'
    train, val = Reader(imagenet_tiny[0]), Reader(imagenet_tiny[1])
    assert (train.num_samples, val.num_samples) == (40, 20)
    images = train.metadata['f0']                                               # the 'image' field
    assert max(images['height'].max(), images['width'].max()) == 64               # longer sides capped at 64
    assert 1 <= (images['mode'] == IMAGE_MODES['jpg']).sum() <= 10                # 'proportion' mode, 10% JPEG
    assert list(train.metadata['f1']) == [label for label in range(4) for _ in range(10)]
