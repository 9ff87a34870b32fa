"""FFCV's published recipe files (tests/data/ffcv_recipe_configs) load unchanged in our scripts and mean what
they meant: the 12 ffcv-imagenet YAMLs in train_imagenet.py, examples/cifar/default_config.yaml in train_cifar.py."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ffcv.runs.config import ConfigError, parse_config, settings_of

from helpers import load_script, write_embedded_splits

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / 'tests' / 'data' / 'ffcv_recipe_configs'
IMAGENET_FILES = sorted(p.name for p in (PUBLISHED / 'imagenet').glob('*.yaml'))
FFCV_CIFAR = PUBLISHED / 'cifar' / 'default_config.yaml'
# Keys whose published spelling is not the value's type: 0/1 for booleans, '5e-5' (a YAML string) for a float.
BOOLEANS = ('data.in_memory', 'training.use_blurpool', 'training.bn_wd', 'training.distributed', 'validation.lr_tta')
TORCHRUN_VARIABLES = ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


@pytest.fixture(scope='module')
def imagenet():
    return load_script('train_imagenet.py')


@pytest.fixture(scope='module')
def cifar():
    return load_script('train_cifar.py')


def resolved(recipe, *argv) -> dict:
    parse_config(recipe.CONFIG, list(argv))
    return {'.'.join(path): recipe.CONFIG[path] for path in recipe.CONFIG.entries}


def flat_keys(path: Path) -> set:
    return {f'{section}.{key}' for section, values in yaml.safe_load(path.read_text()).items() for key in values}


def test_the_thirteen_published_files_are_there():
    assert IMAGENET_FILES == sorted(f'{family}_{epochs}_epochs.yaml' for family in ('rn18', 'rn50')
                                    for epochs in (16, 24, 32, 40, 56, 88))
    assert FFCV_CIFAR.exists()


@pytest.mark.parametrize('name', IMAGENET_FILES)
def test_published_imagenet_file_resolves_to_our_config(imagenet, name):
    """Each file, as published, gives the settings of our annotated config of the same name, except where the
    file itself says otherwise: its log folder, and rn50's `distributed: 1` (start the 8 processes ourselves)."""
    family = name[:4]
    published = resolved(imagenet, '--config-file', str(PUBLISHED / 'imagenet' / name), '--data.val_dataset=v')
    ours = resolved(imagenet, '--config-file', str(ROOT / f'{family}_configs' / name), '--data.val_dataset=v')
    differing = {key for key in ours if (ours[key], type(ours[key])) != (published[key], type(published[key]))}
    assert differing == {'logging.folder'} | ({'training.distributed'} if family == 'rn50' else set())
    assert published['logging.folder'] == '/tmp/' and published['training.distributed'] is (family == 'rn50')
    assert all(published[key] is True for key in BOOLEANS if key not in ('training.bn_wd', 'training.distributed'))
    assert published['training.bn_wd'] is False and published['data.gpu'] == 0
    weight_decay = published['training.weight_decay']
    assert type(weight_decay) is float and weight_decay == {'rn18': 5e-5, 'rn50': 1e-4}[family]
    assert flat_keys(PUBLISHED / 'imagenet' / name) <= set(published)   # every key read, none dropped


def test_keys_neither_we_nor_ffcv_know_are_still_refused(imagenet, tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text((PUBLISHED / 'imagenet' / 'rn18_16_epochs.yaml').read_text().replace('  bn_wd: 0', '  bn_wdd: 0'))
    with pytest.raises(ConfigError, match="unknown key 'training.bn_wdd'.*did you mean 'training.bn_wd'"):
        parse_config(imagenet.CONFIG, ['--config-file', str(bad), '--data.val_dataset=v'])


@pytest.mark.parametrize('bn_wd', [False, True])
def test_bn_wd_decides_which_parameters_decay(imagenet, bn_wd):
    rn18 = str(PUBLISHED / 'imagenet' / 'rn18_16_epochs.yaml')
    parse_config(imagenet.CONFIG, ['-C', rn18, '--data.val_dataset=v', f'--training.bn_wd={int(bn_wd)}'])
    s = settings_of(imagenet.CONFIG)
    model = imagenet.build_model(s.model.arch, False, s.training.use_blurpool)
    exempt, decayed = imagenet.param_groups(model, s.training.weight_decay, s.training.bn_wd)
    names = {id(p): name for name, p in model.named_parameters()}
    assert (exempt['weight_decay'], decayed['weight_decay']) == (0.0, 5e-5)
    bn_named = {name for name in names.values() if 'bn' in name}                # bn1/bn2 weights and biases
    assert len(bn_named) == 2 * 17
    assert {names[id(p)] for p in exempt['params']} == (set() if bn_wd else bn_named)
    assert {names[id(p)] for p in decayed['params']} == set(names.values()) - (set() if bn_wd else bn_named)


def test_data_gpu_is_the_device_of_a_single_process(imagenet, cifar, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert imagenet.pick_device(3, 1, 0) == torch.device('cuda', 3)         # one process: data.gpu
    assert imagenet.pick_device(3, 2, 1) == torch.device('cuda', 1)         # several: each its local rank
    assert cifar.pick_device('auto', 2) == cifar.pick_device('cuda', 2) == torch.device('cuda', 2)
    assert cifar.pick_device('cpu', 2) == torch.device('cpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert imagenet.pick_device(3, 1, 0) == cifar.pick_device('auto', 3) == torch.device('cpu')


@pytest.mark.parametrize('name,torchrun,spawns', [('rn50_16_epochs.yaml', False, True),    # distributed: 1
                                                  ('rn50_16_epochs.yaml', True, False),    # torchrun started us
                                                  ('rn18_16_epochs.yaml', False, False)])  # distributed: 0
def test_distributed_spawns_only_without_torchrun(imagenet, monkeypatch, tmp_path, name, torchrun, spawns):
    calls = []
    monkeypatch.setattr(imagenet, 'spawn_processes', lambda *args: calls.append(args) or {'spawned': args[1]})
    for variable in TORCHRUN_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    if torchrun:                                                   # torchrun's environment, here a world of 1
        monkeypatch.setenv('RANK', '0')
        monkeypatch.setenv('WORLD_SIZE', '1')
    argv = ['-C', str(PUBLISHED / 'imagenet' / name), '--data.train_dataset=t.beton', '--data.val_dataset=v.beton',
            '--dist.world_size=2', f'--logging.folder={tmp_path}']
    if spawns:
        assert imagenet.main(argv) == {'spawned': 2}
        assert calls == [(argv, 2, 'localhost', 12355)]
    else:                                                          # one process of the two the config asks for
        with pytest.raises(ConfigError, match='dist.world_size=2 .*but 1 were launched'):
            imagenet.main(argv)
        assert calls == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('localhost', 0))
        return probe.getsockname()[1]


def test_published_file_with_distributed_starts_two_gloo_processes(imagenet_tiny, tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in TORCHRUN_VARIABLES}
    env.update(OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    command = [sys.executable, str(ROOT / 'train_imagenet.py'),
               '--config-file', str(PUBLISHED / 'imagenet' / 'rn18_16_epochs.yaml'),
               f'--data.train_dataset={imagenet_tiny[0]}', f'--data.val_dataset={imagenet_tiny[1]}',
               '--data.num_workers=1',
               '--training.batch_size=8', '--validation.batch_size=8', '--lr.lr=0.02', '--training.epochs=1',
               '--resolution.min_res=32', '--resolution.max_res=32', '--validation.resolution=32',
               '--training.distributed=1', '--dist.world_size=2', f'--dist.port={free_port()}',
               f'--logging.folder={tmp_path}', '--logging.run_name=spawned']
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / 'spawned' / 'log.jsonl').read_text().splitlines()[-1])
    # 40 images over 2 ranks of batch 8: 2 steps; every val image counted once across the ranks
    assert (summary['steps'], summary['world_size'], summary['val_images'], summary['global_batch_size']) == (
        2, 2, 20, 16)
    checkpoint = torch.load(tmp_path / 'spawned' / 'checkpoint.pt', weights_only=False)
    assert checkpoint['world_size'] == 2 and checkpoint['settings']['training']['distributed'] is True
    assert done.stdout.count('run folder:') == 1                                 # only rank 0 reports


def test_ffcv_cifar_config_resolves_to_its_meaning(cifar):
    s = resolved(cifar, '--config-file', str(FFCV_CIFAR))
    expected = {'data.train_dataset': '/tmp/cifar_train.beton', 'data.val_dataset': '/tmp/cifar_test.beton',
                'data.gpu': 0, 'data.num_workers': 8, 'training.num_workers': 8, 'training.batch_size': 512,
                'training.epochs': 24, 'training.lr': 0.5, 'training.lr_peak_epoch': 5.0, 'training.momentum': 0.9,
                'training.weight_decay': 5e-4, 'training.label_smoothing': 0.1, 'training.lr_tta': True}
    assert {key: (s[key], type(s[key])) for key in expected} == {k: (v, type(v)) for k, v in expected.items()}
    assert flat_keys(FFCV_CIFAR) == set(expected)                               # every key of the file checked
    ours = resolved(cifar, '--config-file', str(ROOT / 'examples' / 'cifar' / 'cifar.yaml'))
    training = [key for key in expected if key.startswith('training.') and key != 'training.num_workers']
    assert {key: ours[key] for key in training} == {key: s[key] for key in training}  # our copy of the recipe


def test_training_num_workers_is_ffcvs_name_for_the_loader_threads(cifar):
    assert cifar.loader_threads(-1, None) == -1 and cifar.loader_threads(3, None) == 3
    assert cifar.loader_threads(-1, 4) == 4 and cifar.loader_threads(4, 4) == 4
    with pytest.warns(UserWarning, match=r'data.num_workers=2 is ignored: training.num_workers=4'):
        assert cifar.loader_threads(2, 4) == 4


def test_ffcv_cifar_config_runs_two_steps(cifar, tmp_path):
    train, test = write_embedded_splits(tmp_path, train_count=64, test_count=32, seed=5)
    argv = ['--config-file', str(FFCV_CIFAR), f'--data.train_dataset={train}', f'--data.val_dataset={test}',
            '--training.num_workers=1', '--training.batch_size=32', '--training.max_steps=2',
            f'--logging.folder={tmp_path}', '--logging.run_name=ffcv']
    with pytest.warns(UserWarning, match='data.num_workers=8 is ignored'):   # the file's, which FFCV ignored too
        summary = cifar.main(argv)
    assert summary['stopped_at_step'] == 2
    saved = torch.load(tmp_path / 'ffcv' / 'checkpoint.pt', weights_only=False)
    assert saved['step'] == 2 and saved['loader']['batches_served'] == 2
    assert saved['settings']['training']['num_workers'] == 1 and saved['settings']['data']['gpu'] == 0
