"""train_cifar.py: configs, schedule, model, embedded data, a short run, resume, logs."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ffcv.datasets.embedded import make_arrays
from ffcv.runs.config import ConfigError, parse_config, settings_of

from helpers import load_script, write_embedded_splits

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def recipe():
    return load_script('train_cifar.py')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """256 train / 64 test images of the embedded task (real content, small)."""
    return write_embedded_splits(tmp_path_factory.mktemp('tiny'), train_count=256, test_count=64, seed=3)


def run_args(tiny, folder, *extra):
    return [f'--data.train_dataset={tiny[0]}', f'--data.val_dataset={tiny[1]}', '--data.num_workers=2',
            '--training.batch_size=32', '--training.epochs=2', '--training.lr=0.1', '--training.lr_peak_epoch=1',
            f'--logging.folder={folder}', *extra]


@pytest.mark.parametrize('name', sorted(p.name for p in (ROOT / 'examples' / 'cifar').glob('*.yaml')))
def test_every_yaml_loads(recipe, name):
    parse_config(recipe.CONFIG, ['--config-file', str(ROOT / 'examples' / 'cifar' / name)])


def test_unknown_keys_fail_loudly(recipe, tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('training:\n  learning_rate: 0.1\n')
    with pytest.raises(ConfigError, match="unknown key 'training.learning_rate' in .*bad.yaml"):
        parse_config(recipe.CONFIG, ['--config-file', str(bad)])
    with pytest.raises(ConfigError, match="unknown key 'training.epoch'.*did you mean 'training.epochs'"):
        parse_config(recipe.CONFIG, ['--training.epoch=3'])
    with pytest.raises(ConfigError, match='training.lr_tta.*true or false'):
        parse_config(recipe.CONFIG, ['--training.lr_tta=maybe'])


def test_published_recipe_values(recipe):
    parse_config(recipe.CONFIG, ['--config-file', str(ROOT / 'examples' / 'cifar' / 'cifar.yaml')])
    s = settings_of(recipe.CONFIG)
    assert (s.training.batch_size, s.training.epochs, s.training.lr, s.training.lr_peak_epoch) == (512, 24, 0.5, 5)
    assert (s.training.momentum, s.training.weight_decay, s.training.label_smoothing) == (0.9, 5e-4, 0.1)
    assert s.training.lr_tta is True


def test_plain_run_uses_the_defaults_help_shows(recipe, capsys):
    parse_config(recipe.CONFIG, [])
    s = settings_of(recipe.CONFIG)
    assert (s.data.train_dataset, s.training.batch_size, s.training.epochs, s.training.lr,
            s.training.lr_peak_epoch) == ('', 128, 5, 0.2, 1.5)  # the embedded CPU run, stated once
    with pytest.raises(SystemExit):
        parse_config(recipe.CONFIG, ['--help'])
    shown = ' '.join(capsys.readouterr().out.split())
    assert '--training.batch_size VALUE samples per step (default: 128)' in shown
    assert '--training.epochs VALUE passes over the train set (default: 5)' in shown


def test_settings_are_read_only_and_suggest_names(recipe):
    parse_config(recipe.CONFIG, [])
    s = settings_of(recipe.CONFIG)
    with pytest.raises(AttributeError, match="training has no setting 'epoch' .*did you mean 'epochs'"):
        s.training.epoch
    with pytest.raises(AttributeError, match='read-only'):
        s.data.train_dataset = 'elsewhere.beton'
    assert s.as_dict()['training']['epochs'] == 5


def test_lr_schedule_is_the_published_triangle(recipe):
    iters, epochs, peak = 97, 24, 5  # 50,000 // 512 steps per epoch
    lr = [0.5 * recipe.lr_multiplier(step, iters, epochs, peak) for step in (0, 1, 97 * 5 // 2, 485, 486, 1455, 2328)]
    expected = [0, 0.5 / 485, 0.5 * (242 / 485), 0.5, 0.5 * (1 - 1 / 1843), 0.5 * (873 / 1843), 0]
    np.testing.assert_allclose(lr, expected, rtol=1e-12, atol=1e-15)


def test_resnet9_parameter_count(recipe):
    model = recipe.resnet9()
    assert sum(p.numel() for p in model.parameters()) == 2_274_880
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_embedded_dataset_is_deterministic():
    first, labels = make_arrays('train', 40, seed=0)
    again, _ = make_arrays('train', 40, seed=0)
    other, _ = make_arrays('test', 40, seed=0)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert list(labels[:12]) == list(range(10)) + [0, 1]
    assert first.std() > 30  # photographic content, not flat images


def test_two_step_run_writes_logs(recipe, tiny, tmp_path):
    summary = recipe.main(run_args(tiny, tmp_path, '--training.max_steps=2', '--logging.run_name=two'))
    assert summary['stopped_at_step'] == 2
    run = tmp_path / 'two'
    assert (run / 'checkpoint.pt').exists() and (run / 'config.yaml').exists()
    meta = json.loads((run / 'run.json').read_text())
    assert meta['torch'] == torch.__version__ and 'git_commit' in meta


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_short_run_learns_and_logs(recipe, tiny, tmp_path):
    summary = recipe.main(run_args(tiny, tmp_path, '--logging.run_name=full', '--training.epochs=4'))
    run = tmp_path / 'full'
    lines = read_jsonl(run / 'log.jsonl')
    assert [r['epoch'] for r in lines if 'epoch' in r] == [0, 1, 2, 3]
    assert {'train_loss', 'train_acc', 'test_acc', 'lr', 'images_per_s', 'elapsed_s'} <= set(lines[0])
    assert lines[-1]['summary'] and (run / 'curves.png').stat().st_size > 1000
    steps = read_jsonl(run / 'steps.jsonl')                     # every step's LR and loss, what curves.png draws
    assert [r['step'] for r in steps] == list(range(1, 33))
    assert [r['lr'] for r in steps] == [0.1 * recipe.lr_multiplier(k, 8, 4, 1) for k in range(32)]
    assert summary['test_acc'] > 0.3  # 10 classes: chance is 0.1


def test_resume_mid_epoch_gives_identical_weights(recipe, tiny, tmp_path):
    recipe.main(run_args(tiny, tmp_path, '--logging.run_name=straight'))
    recipe.main(run_args(tiny, tmp_path, '--logging.run_name=cut', '--training.max_steps=5'))
    checkpoint = tmp_path / 'cut' / 'checkpoint.pt'
    assert torch.load(checkpoint, weights_only=False)['loader']['batches_served'] == 5
    recipe.main(run_args(tiny, tmp_path, f'--training.resume={checkpoint}'))
    straight = torch.load(tmp_path / 'straight' / 'checkpoint.pt', weights_only=False)
    resumed = torch.load(checkpoint, weights_only=False)
    assert straight['step'] == resumed['step'] == 16
    for key, value in straight['model'].items():
        assert torch.equal(value, resumed['model'][key]), key
    cut_steps = read_jsonl(tmp_path / 'cut' / 'steps.jsonl')     # steps 1-5, then 6-16 after the resume
    assert [r['step'] for r in cut_steps] == list(range(1, 17))
    assert cut_steps == read_jsonl(tmp_path / 'straight' / 'steps.jsonl')  # same LR and loss at every step


def test_wandb_offline(recipe, tiny, tmp_path, monkeypatch):
    pytest.importorskip('wandb', reason='wandb is optional for the library, installed with the recipes')
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_SILENT', 'true')
    recipe.main(run_args(tiny, tmp_path, '--training.max_steps=8', '--logging.wandb=true', '--training.epochs=1',
                         '--logging.run_name=wb'))
    offline_runs = list((tmp_path / 'wb' / 'wandb').glob('offline-run-*'))
    assert offline_runs and any(f.suffix == '.wandb' for f in offline_runs[0].iterdir())
    assert os.environ['WANDB_MODE'] == 'offline'


def test_atomic_save_removes_temporaries_of_dead_savers(tmp_path):
    import subprocess

    from ffcv.runs.run_log import atomic_save
    dead = subprocess.Popen(['true'])
    dead.wait()
    stale = tmp_path / f'checkpoint.pt.tmp{dead.pid}'
    stale.write_bytes(b'half a checkpoint')
    mine = tmp_path / f'checkpoint.pt.tmp{os.getpid()}x'  # not a pid: left alone
    mine.write_bytes(b'')
    atomic_save({'step': 3}, tmp_path / 'checkpoint.pt')
    assert not stale.exists() and mine.exists()
    assert torch.load(tmp_path / 'checkpoint.pt')['step'] == 3
