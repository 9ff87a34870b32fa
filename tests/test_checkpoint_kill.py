"""train_cifar.py's checkpoints survive SIGKILL in the middle of a save, and training resumes from them.

Training checkpoints every step; the test watches for the temporary file of a save in progress and kills
the process with SIGKILL at that moment, a few times in a row, resuming each time from what is on disk.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import write_embedded_splits

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 8  # 64 images, batch 8


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return write_embedded_splits(tmp_path_factory.mktemp('tiny'), train_count=64, test_count=16, seed=5)


def start(tiny, folder, *extra) -> subprocess.Popen:
    args = [f'--data.train_dataset={tiny[0]}', f'--data.val_dataset={tiny[1]}', '--data.num_workers=1',
            '--training.batch_size=8', '--training.epochs=100', '--training.lr_tta=false', '--training.device=cpu',
            '--training.checkpoint_every=1', f'--logging.folder={folder}', '--logging.run_name=run', *extra]
    env = dict(os.environ, OMP_NUM_THREADS='1', WANDB_MODE='offline')
    return subprocess.Popen([sys.executable, str(ROOT / 'train_cifar.py'), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def kill_while_saving(process: subprocess.Popen, checkpoint: Path, skip: int, timeout: float = 120) -> bool:
    """SIGKILL `process` during a save (its temporary file exists), after a complete checkpoint and `skip`
    more saves; returns whether the kill left the temporary file (it landed mid-save)."""
    temporary = checkpoint.with_name(f'{checkpoint.name}.tmp{process.pid}')
    deadline = time.time() + timeout
    seen_complete, saving = False, False
    while time.time() < deadline and process.poll() is None:
        if not seen_complete:
            seen_complete = checkpoint.exists() and not temporary.exists()
        elif temporary.exists() and not saving:
            if skip == 0:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return temporary.exists()
            saving, skip = True, skip - 1
        elif saving and not temporary.exists():
            saving = False
        time.sleep(0.0005)
    process.kill()
    raise AssertionError(f'no save seen within {timeout} s; output:\n{process.communicate()[0][-3000:]}')


def load(checkpoint: Path) -> dict:
    state = torch.load(checkpoint, weights_only=False)
    assert {'model', 'optimizer', 'schedule', 'loader', 'step'} <= set(state)
    assert state['loader']['epoch'] * STEPS_PER_EPOCH + state['loader']['batches_served'] == state['step']
    return state


def kill_and_resume(tiny, tmp_path, rounds: int) -> dict:
    checkpoint = tmp_path / 'run' / 'checkpoint.pt'
    mid_save, steps = 0, []
    process = start(tiny, tmp_path)
    for round_ in range(rounds):
        mid_save += kill_while_saving(process, checkpoint, skip=round_ % 4)
        state = load(checkpoint)  # the previous checkpoint, complete
        assert not steps or state['step'] >= steps[-1]
        steps.append(state['step'])
        process = start(tiny, tmp_path, f'--training.resume={checkpoint}')
    written = checkpoint.stat().st_mtime_ns
    deadline = time.time() + 120
    while checkpoint.stat().st_mtime_ns == written and time.time() < deadline:  # training again
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)  # the last one is stopped the polite way: checkpoint and exit
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-3000:]
    final = load(checkpoint)
    assert 'stopped (SIGTERM)' in output and final['step'] > steps[-1], output[-3000:]
    leftovers = list(checkpoint.parent.glob('checkpoint.pt.tmp*'))
    print(f'{rounds} SIGKILLs ({mid_save} mid-save), steps at each kill {steps}, final step {final["step"]}, '
          f'{len(leftovers)} temporary files left')
    return {'mid_save': mid_save, 'steps': steps, 'final': final['step']}


def test_sigkill_during_checkpoint_then_resume(tiny, tmp_path):
    result = kill_and_resume(tiny, tmp_path, rounds=2)
    assert result['mid_save'] >= 1  # at least one kill really interrupted a save
    assert result['final'] >= result['steps'][-1]


@pytest.mark.slow
def test_sigkill_during_checkpoint_then_resume_many(tiny, tmp_path):
    result = kill_and_resume(tiny, tmp_path, rounds=8)
    assert result['mid_save'] >= 4
