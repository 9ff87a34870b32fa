"""rn18_configs / rn50_configs: the published values, the LR and resolution rules, strict keys."""
from pathlib import Path

import numpy as np
import pytest

from ffcv.runs.config import ConfigError, parse_config

from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = (16, 24, 32, 40, 56, 88)
CONFIGS = [(family, epochs) for family in ('rn18', 'rn50') for epochs in EPOCHS]
# ffcv-imagenet README table: (top-1, minutes).
PUBLISHED = {('rn50', 88): (0.784, 77.2), ('rn50', 56): (0.780, 49.4), ('rn50', 40): (0.772, 35.6),
             ('rn50', 32): (0.766, 28.7), ('rn50', 24): (0.756, 21.7), ('rn50', 16): (0.738, 14.9),
             ('rn18', 88): (0.724, 187.3), ('rn18', 56): (0.713, 119.4), ('rn18', 40): (0.706, 85.5),
             ('rn18', 32): (0.700, 68.9), ('rn18', 24): (0.688, 51.6), ('rn18', 16): (0.669, 35.0)}
RAMPS = {16: (11, 13), 24: (17, 20), 32: (23, 27), 40: (29, 34), 56: (41, 48), 88: (65, 76)}
FIRST_192 = {16: 12, 24: 19, 32: 25, 40: 32, 56: 45, 88: 71}  # 0-based epoch of the jump to 192 px
FAMILY = {
    'rn50': {'model.arch': 'resnet50', 'training.batch_size': 512, 'lr.lr': 1.7, 'training.weight_decay': 1e-4,
             'dist.world_size': 8, 'logging.log_level': 1},
    'rn18': {'model.arch': 'resnet18', 'training.batch_size': 1024, 'lr.lr': 0.5, 'training.weight_decay': 5e-5,
             'dist.world_size': 1, 'logging.log_level': 0},
}
COMMON = {'model.pretrained': False, 'resolution.min_res': 160, 'resolution.max_res': 192, 'data.num_workers': 12,
          'data.in_memory': True, 'lr.lr_schedule_type': 'cyclic', 'lr.lr_peak_epoch': 2,
          'validation.batch_size': 512, 'validation.resolution': 256, 'validation.lr_tta': True,
          'training.optimizer': 'sgd', 'training.momentum': 0.9, 'training.label_smoothing': 0.1,
          'training.use_blurpool': True}
ITERS = {'rn50': 312, 'rn18': 1251}  # steps per epoch of the published runs (per GPU)


@pytest.fixture(scope='module')
def recipe():
    return load_script('train_imagenet.py')


def config_path(family: str, epochs: int) -> Path:
    return ROOT / f'{family}_configs' / f'{family}_{epochs}_epochs.yaml'


def load(recipe, family: str, epochs: int) -> dict:
    parse_config(recipe.CONFIG, ['--config-file', str(config_path(family, epochs)), '--data.val_dataset=v.beton'])
    return {'.'.join(path): recipe.CONFIG[path] for path in recipe.CONFIG.entries}


def lr_function(recipe, s: dict, iters: int):
    return lambda epoch, iteration: recipe.step_lr(
        epoch, iteration, iters, schedule=s['lr.lr_schedule_type'], lr=s['lr.lr'], epochs=s['training.epochs'],
        peak_epoch=s['lr.lr_peak_epoch'], step_ratio=s['lr.step_ratio'], step_length=s['lr.step_length'])


def test_the_twelve_configs_and_nothing_else():
    on_disk = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob('rn*_configs/*.yaml'))
    assert on_disk == sorted(config_path(f, e).relative_to(ROOT).as_posix() for f, e in CONFIGS)


@pytest.mark.parametrize('family,epochs', CONFIGS)
def test_config_has_the_published_values(recipe, family, epochs):
    s = load(recipe, family, epochs)
    start_ramp, end_ramp = RAMPS[epochs]
    expected = {**COMMON, **FAMILY[family], 'training.epochs': epochs, 'resolution.start_ramp': start_ramp,
                'resolution.end_ramp': end_ramp}
    assert {key: s[key] for key in expected} == expected
    top_1, minutes = PUBLISHED[family, epochs]
    setup = '8 x A100' if family == 'rn50' else '1 x A100'
    first_line = config_path(family, epochs).read_text().splitlines()[0]
    assert first_line.startswith(f'# Published: top-1 {top_1:.3f} in {minutes:.1f} min on {setup}'), first_line


@pytest.mark.parametrize('family,epochs', CONFIGS)
def test_resolution_at_every_epoch(recipe, family, epochs):
    s = load(recipe, family, epochs)
    ramp = (s['resolution.min_res'], s['resolution.max_res'], s['resolution.start_ramp'], s['resolution.end_ramp'])
    sides = [recipe.train_resolution(epoch, *ramp) for epoch in range(epochs)]
    assert sides == [160] * FIRST_192[epochs] + [192] * (epochs - FIRST_192[epochs])


def test_resolution_rounds_half_to_even_multiples_of_32(recipe):
    assert recipe.train_resolution(12, 160, 192, 11, 13) == 192          # 176 / 32 = 5.5 -> 6
    assert recipe.train_resolution(1, 192, 224, 0, 2) == 192             # 208 / 32 = 6.5 -> 6, not 7
    assert [recipe.train_resolution(e, 160, 256, 0, 3) for e in range(5)] == [160, 192, 224, 256, 256]


@pytest.mark.parametrize('family,epochs', CONFIGS)
def test_lr_at_chosen_iterations(recipe, family, epochs):
    s = load(recipe, family, epochs)
    iters, peak = ITERS[family], s['lr.lr']
    lr = lr_function(recipe, s, iters)
    start, end_of_0 = 1e-4 * peak, 1e-4 * peak + (peak - 1e-4 * peak) / 2        # anchors of epochs 0 and 1
    assert lr(0, 0) == pytest.approx(start, rel=1e-12)                             # starts at 1e-4 x peak
    assert lr(0, iters // 2) == pytest.approx(start + (end_of_0 - start) * (iters // 2) / iters, rel=1e-12)
    assert lr(2, 0) == pytest.approx(peak, rel=1e-12)                              # peak at epoch 2
    anchor = peak * (epochs - 5) / (epochs - 2)                                    # start of epoch 5
    assert lr(5, 0) == pytest.approx(anchor, rel=1e-12)
    last = peak / (epochs - 2) / iters                                             # anchor(E - 1) / iters
    assert lr(epochs - 1, iters - 1) == pytest.approx(last, rel=1e-12)
    values = [lr(e, i) for e in range(epochs) for i in range(0, iters, iters // 3)]
    top = int(np.argmax(values))
    assert np.all(np.diff(values[:top + 1]) > 0) and np.all(np.diff(values[top:]) < 0)


def test_lr_matches_the_published_logs(recipe):
    for epochs in EPOCHS:
        rn50 = lr_function(recipe, load(recipe, 'rn50', epochs), 312)
        assert rn50(0, 311) == pytest.approx(0.8473609, rel=1e-7)   # logged at the end of epoch 0
        assert rn50(1, 311) == pytest.approx(1.697276, rel=1e-7)    # ... and of epoch 1
        rn18 = lr_function(recipe, load(recipe, 'rn18', epochs), 1251)
        assert rn18(0, 1250) == pytest.approx(0.2498252, rel=1e-7)
    rn50_88 = lr_function(recipe, load(recipe, 'rn50', 88), 312)
    assert round(rn50_88(87, 311), 6) == 0.000063


def test_step_schedule(recipe):
    lr = lambda e, i: recipe.step_lr(e, i, 100, schedule='step', lr=1.0, epochs=90, peak_epoch=2,  # noqa: E731
                                     step_ratio=0.1, step_length=30)
    assert lr(0, 0) == 1.0 and lr(29, 50) == pytest.approx(0.55) and lr(30, 0) == pytest.approx(0.1)
    assert lr(60, 0) == pytest.approx(0.01) and lr(89, 50) == pytest.approx(0.005)


def test_world_size_guard_names_the_linear_rule(recipe):
    recipe.check_world_size(8, 8, 512, 1.7)
    with pytest.raises(ConfigError, match=r'global batch 4096.*--dist.world_size=1.*--lr.lr=0.2125'):
        recipe.check_world_size(8, 1, 512, 1.7)


def test_booleans_and_choices_are_checked(recipe):
    path = str(config_path('rn18', 16))
    with pytest.raises(ConfigError, match='training.use_blurpool'):
        parse_config(recipe.CONFIG, ['-C', path, '--data.val_dataset=v', '--training.use_blurpool=maybe'])
    with pytest.raises(ConfigError, match='lr.lr_schedule_type'):
        parse_config(recipe.CONFIG, ['-C', path, '--data.val_dataset=v', '--lr.lr_schedule_type=cosine'])
    parse_config(recipe.CONFIG, ['-C', path, '--data.val_dataset=v', '--data.in_memory=0'])
    assert recipe.CONFIG['data', 'in_memory'] is False
