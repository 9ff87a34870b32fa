"""What the recipes tell the user: a start-up line and a progress bar on stderr (results stay on stdout),
one line and exit code 2 for a configuration or path mistake (and no run folder left behind), --help with
the defaults a plain run uses and '(required)', and curves.png drawn from a per-step log."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ffcv.runs.config import parse_config
from ffcv.runs.console import run_as_program
from ffcv.runs.curves import LEFT, PANEL, RIGHT, curve_panels, draw_curves

from helpers import load_script, write_embedded_splits

ROOT = Path(__file__).resolve().parents[1]
RN18_16 = str(ROOT / 'rn18_configs' / 'rn18_16_epochs.yaml')
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', WANDB_MODE='offline')
IMAGENET_REQUIRED = {'data.val_dataset', 'data.num_workers', 'data.in_memory', 'logging.folder'}


@pytest.fixture(scope='module')
def cifar():
    return load_script('train_cifar.py')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """64 train / 16 test images of the embedded task: 4 steps per epoch at batch 16."""
    return write_embedded_splits(tmp_path_factory.mktemp('tiny'), train_count=64, test_count=16, seed=4)


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)


# --- Mistakes: one line on stderr, exit code 2, no run folder ---
def test_a_misspelt_key_ends_in_one_line_and_exit_code_2(tmp_path):
    done = run_script('train_cifar.py', '--training.epoch=3', cwd=tmp_path)   # default folder: runs/cifar here
    assert (done.returncode, done.stdout) == (2, '')
    assert done.stderr.splitlines() == ["train_cifar.py: error: unknown key 'training.epoch' in the command line "
                                        "(did you mean 'training.epochs'?)"]
    assert list(tmp_path.iterdir()) == []


def test_a_missing_dataset_ends_in_one_line_and_leaves_no_run_folder(tmp_path):
    missing = tmp_path / 'data' / 'train.beton'
    done = run_script('train_imagenet.py', '--config-file', RN18_16, f'--data.train_dataset={missing}',
                      f'--data.val_dataset={tmp_path / "data" / "val.beton"}', '--data.num_workers=1',
                      f'--logging.folder={tmp_path / "runs"}', cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, '')
    assert done.stderr.splitlines() == [f'train_imagenet.py: error: {missing}: cannot open (No such file or '
                                        'directory)']
    assert list(tmp_path.iterdir()) == []


def mistake(case: str, tiny, tmp_path: Path) -> tuple:
    """(argv, the error line's text after 'error: ') for one kind of mistake."""
    if case == 'val file not given':
        return [f'--data.train_dataset={tiny[0]}'], 'data.val_dataset is required with data.train_dataset'
    if case == 'not a .beton file':
        junk = tmp_path / 'junk.beton'
        junk.write_bytes(b'not a dataset' * 100)
        return [f'--data.train_dataset={junk}', f'--data.val_dataset={tiny[1]}'], f'{junk}: format version'
    if case == 'no checkpoint at the resume path':
        path = tmp_path / 'old' / 'checkpoint.pt'
        return [*data_args(tiny), f'--training.resume={path}'], f'training.resume: no checkpoint file at {path}'
    if case == 'resume path is not a checkpoint':
        path = tmp_path / 'old' / 'checkpoint.pt'
        path.parent.mkdir()
        path.write_text('a note, not a checkpoint')
        return [*data_args(tiny), f'--training.resume={path}'], f'training.resume: {path} is not a checkpoint'
    if case == 'missing config file':
        return ['--config-file', str(tmp_path / 'nope.yaml')], f'--config-file {tmp_path / "nope.yaml"}: no such'
    assert case == 'option without its value'
    return ['--training.epochs'], 'command line: argument --training.epochs: expected one argument'


def data_args(tiny) -> list:
    return [f'--data.train_dataset={tiny[0]}', f'--data.val_dataset={tiny[1]}', '--data.num_workers=1',
            '--training.batch_size=16', '--training.device=cpu']


@pytest.mark.parametrize('case', ['val file not given', 'not a .beton file', 'no checkpoint at the resume path',
                                  'resume path is not a checkpoint', 'missing config file',
                                  'option without its value'])
def test_config_and_path_mistakes_end_in_one_line_and_exit_code_2(cifar, tiny, tmp_path, capsys, case):
    argv, message = mistake(case, tiny, tmp_path)
    before = sorted(tmp_path.rglob('*'))
    with pytest.raises(SystemExit) as exit_:
        run_as_program(cifar.main, [*argv, f'--logging.folder={tmp_path / "runs"}'])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == ''
    assert len(err.splitlines()) == 1 and re.fullmatch(r'\S+: error: ' + re.escape(message) + r'.*\n', err), err
    assert sorted(tmp_path.rglob('*')) == before                  # no run folder, nothing added to the old one


def test_a_run_failing_before_its_first_step_leaves_no_folder_and_a_resumed_one_keeps_its_own(
        cifar, tiny, tmp_path, monkeypatch):
    folder = tmp_path / 'runs'
    cifar.main([*data_args(tiny), '--training.max_steps=2', f'--logging.folder={folder}', '--logging.run_name=kept'])
    kept = sorted(p.name for p in (folder / 'kept').iterdir())
    real_resnet9 = cifar.resnet9

    def refuse(module, args):
        raise RuntimeError('broken model')

    def broken_resnet9():                              # the same weights (a checkpoint loads), but no step runs
        model = real_resnet9()
        model.register_forward_pre_hook(refuse)
        return model
    monkeypatch.setattr(cifar, 'resnet9', broken_resnet9)
    with pytest.raises(RuntimeError, match='broken model'):
        cifar.main([*data_args(tiny), f'--logging.folder={folder}', '--logging.run_name=fresh'])
    assert not (folder / 'fresh').exists()
    with pytest.raises(RuntimeError, match='broken model'):
        cifar.main([*data_args(tiny), f'--training.resume={folder / "kept" / "checkpoint.pt"}'])
    assert sorted(p.name for p in (folder / 'kept').iterdir()) == kept and 'checkpoint.pt' in kept


# --- --help ---
def shown(value) -> str:
    """How --help should write a default: true/false, 'not set', 'empty', else the value."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return 'not set'
    return 'empty' if value == '' else str(value)


@pytest.mark.parametrize('script,required', [('train_cifar.py', set()), ('train_imagenet.py', IMAGENET_REQUIRED)])
def test_help_shows_what_a_plain_run_uses_and_marks_the_required(script, required, capsys):
    recipe = load_script(script)
    with pytest.raises(SystemExit) as exit_:
        parse_config(recipe.CONFIG, ['--help'])
    assert exit_.value.code == 0
    help_text = ' '.join(capsys.readouterr().out.split())
    # a plain run (given only what is required) resolves every other parameter to the value --help shows
    parse_config(recipe.CONFIG, [f'--{name}=1' for name in sorted(required)])
    for path, param in recipe.CONFIG.entries.items():
        name = '.'.join(path)
        entry = re.search(rf'--{re.escape(name)} VALUE (.*?)(?= --[a-z]|$)', help_text).group(1)
        if name in required:
            assert entry.endswith('(required)'), entry
        else:
            assert entry.endswith(f'(default: {shown(recipe.CONFIG[path])})'), entry
    assert {'.'.join(p) for p, param in recipe.CONFIG.entries.items() if param.required} == required
    if script == 'train_cifar.py':
        assert '--training.lr_tta VALUE test-time augmentation: add the logits of the flipped image (default: true)' \
            in help_text
        assert '(FFCV\'s script read only this one) (default: not set)' in help_text


# --- A short run: start-up line, progress bar, per-step log, curves ---
def test_a_short_run_announces_itself_shows_a_progress_bar_and_logs_every_step(cifar, tiny, tmp_path):
    folder = tmp_path / 'runs' / 'short'
    done = run_script('train_cifar.py', *data_args(tiny), '--training.epochs=2', '--training.lr_peak_epoch=1',
                      f'--logging.folder={tmp_path / "runs"}', '--logging.run_name=short', cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines()[0] == (f'train_cifar.py: train {tiny[0]} (64 samples), val {tiny[1]} '
                                           f'(16 samples) on cpu, writing to {folder}')
    for epoch in (0, 1):
        assert re.search(rf'^epoch {epoch}: 100%\|[^|]*\| 4/4 \[[^]]*, loss \d+\.\d{{3}}, [\d,]+ images/s\]$',
                         done.stderr, re.MULTILINE), done.stderr   # (text mode turns the bar's \r into \n)
    assert '%|' not in done.stdout and done.stdout.count('run folder:') == 1   # results alone on stdout
    steps = [json.loads(line) for line in (folder / 'steps.jsonl').read_text().splitlines()]
    assert [r['step'] for r in steps] == list(range(1, 9))                    # one record per step
    warm_up = [0.2 * cifar.lr_multiplier(k, 4, 2, 1) for k in range(8)]       # default peak LR 0.2 at epoch 1
    np.testing.assert_allclose([r['lr'] for r in steps], warm_up, rtol=1e-12)
    assert all(np.isfinite(r['loss']) and r['loss'] > 0 for r in steps)
    assert cv2.imread(str(folder / 'curves.png')).shape == (PANEL[1], 3 * PANEL[0], 3)


def synthetic_run(steps_count: int = 200, peak_step: int = 50) -> tuple:
    lr = np.interp(np.arange(steps_count), [0, peak_step, steps_count], [0, 0.4, 0])
    steps = [{'step': k + 1, 'lr': lr[k], 'loss': 2.3 - k / 200 + 0.05 * (-1) ** k} for k in range(steps_count)]
    steps.append({'step': 101, 'lr': lr[100], 'loss': 1.75})       # redone after a resume: the last one counts
    epochs = [{'epoch': e, 'step': 50 * (e + 1), 'train_acc': 0.5 + e / 10, 'test_acc': 0.4 + e / 10,
               'train_loss': 2 - e / 4} for e in range(4)]
    return lr, steps, epochs


def test_curve_panels_give_each_quantity_its_own_scale_and_every_step():
    lr, steps, epochs = synthetic_run()
    x_range, (loss, accuracy, rates) = curve_panels(steps, epochs)
    assert x_range == (0, 200) and (loss.title, accuracy.title, rates.title) == ('loss', 'accuracy', 'learning rate')
    assert accuracy.y_range == (0.0, 1.0)
    assert [label for label, *_ in accuracy.series] == ['train accuracy', 'test accuracy']   # one axis
    assert loss.y_range[0] == 0 and 2.35 < loss.y_range[1] <= 3                 # from 0, not min..max of the noise
    assert rates.y_range == (0.0, 0.5)
    (_, xs, ys, _, _), = rates.series
    assert list(xs) == list(range(1, 201)) and list(ys) == list(lr)             # one point per step
    (_, _, raw, _, _), (_, _, smoothed, _, _), _ = loss.series
    assert raw[100] == 1.75 and np.abs(np.diff(smoothed)).max() < np.abs(np.diff(raw)).max() / 3


def test_curves_png_has_three_panels_and_shows_the_warm_up(tmp_path):
    _, steps, epochs = synthetic_run()
    draw_curves(tmp_path / 'curves.png', steps, epochs)
    image = cv2.imread(str(tmp_path / 'curves.png')).astype(int)
    assert image.shape == (PANEL[1], 3 * PANEL[0], 3)
    lr_panel = image[:, 2 * PANEL[0]:]

    def line_row(step: int) -> int:                                            # the green LR line's row at `step`
        column = LEFT + round(step / 200 * (PANEL[0] - LEFT - RIGHT))
        hits = np.flatnonzero(np.abs(lr_panel[:, column] - (44, 160, 44)).sum(axis=1) < 60)
        assert len(hits), step
        return hits.mean()
    rows = [line_row(step) for step in (5, 25, 50, 100, 150)]
    assert rows[0] > rows[1] > rows[2] and rows[2] < rows[3] < rows[4]          # up during warm-up, then down
    for panel in range(3):                                                      # every panel has ink on it
        assert (image[:, panel * PANEL[0]:(panel + 1) * PANEL[0]] < 200).any(axis=2).sum() > 2000
