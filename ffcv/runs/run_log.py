"""Helpers shared by the training recipes: run folders, JSON-lines logs, checkpoints, curves.

Every run writes into its own folder::

    run.json        versions, git commit, hardware, command line, start time
    config.yaml     the resolved configuration (loadable again with --config-file)
    log.jsonl       one JSON object per epoch (and a final summary line)
    steps.jsonl     one JSON object per training step: step, lr, loss (what curves.png draws per step)
    curves.png      loss, accuracy and learning rate against the step, drawn at the end (see `curves`)
    checkpoint.pt   the latest checkpoint (written atomically)

The folder is created when the run first writes into it (its first checkpoint or log line), so a run that
fails before its first step (a misspelt path, say) leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ffcv.runs.config import ConfigError
from ffcv.runs.curves import draw_curves, read_jsonl


def environment_info() -> dict:
    """Library versions, git commit and hardware of this process."""
    import ffcv
    import numba
    import torchvision
    info = {'python': platform.python_version(), 'torch': torch.__version__, 'torchvision': torchvision.__version__,
            'numpy': np.__version__, 'numba': numba.__version__, 'ffcv': ffcv.__version__,
            'platform': platform.platform(), 'cpu': platform.processor() or platform.machine(),
            'cpu_count': os.cpu_count(), 'gpus': [], 'git_commit': None, 'git_dirty': None}
    if torch.cuda.is_available():
        info['gpus'] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info['cuda'] = torch.version.cuda
    root = Path(__file__).resolve().parents[1]
    try:
        info['git_commit'] = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True, text=True,
                                            timeout=10).stdout.strip() or None
        status = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout
        info['git_dirty'] = bool(status.strip()) if info['git_commit'] else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _remove_stale_temporaries(path: Path) -> None:
    """Delete `path`.tmp<pid> files left by processes that were killed while saving."""
    for stale in path.parent.glob(path.name + '.tmp*'):
        pid = stale.name[len(path.name) + 4:]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def atomic_save(obj, path) -> None:
    """torch.save to a temporary file, fsync, then rename: a crash leaves the previous file intact."""
    path = Path(path)
    _remove_stale_temporaries(path)
    tmp = path.with_name(path.name + f'.tmp{os.getpid()}')
    try:
        with open(tmp, 'wb') as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path, setting: str, needs=('model',)) -> dict:
    """torch.load (on the CPU) of the checkpoint that `setting` names; a missing file, one torch cannot read,
    or one without the entries `needs` is a ConfigError naming the setting."""
    if not Path(path).is_file():
        raise ConfigError(f'{setting}: no checkpoint file at {path}')
    try:
        saved = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as exc:  # torch.load raises many types (pickle, zip, EOF, RuntimeError) for a bad file
        problem = ' '.join(str(exc).split())
        raise ConfigError(f'{setting}: {path} is not a checkpoint torch can read ({problem})') from exc
    missing = [key for key in needs if not isinstance(saved, dict) or key not in saved]
    if missing:
        raise ConfigError(f"{setting}: {path} has no {', '.join(missing)} (is it another kind of file?)")
    return saved


class RunLogger:
    """Writes the run folder (see the module docstring); optionally mirrors metrics to Weights & Biases.

    Nothing is written until the run first asks for a file (`file`, `log`): then the folder is created with
    run.json and config.yaml. `enabled=False` (ranks other than 0) writes nothing at all.
    """

    def __init__(self, folder, config: dict, enabled: bool = True, use_wandb: bool = False,
                 wandb_project: str = 'ffcv', run_name: Optional[str] = None):
        self.enabled = enabled
        self.folder = Path(folder)
        self.config = config
        self.start = time.time()
        self.started = time.strftime('%Y-%m-%dT%H:%M:%S')
        self.history: List[Dict] = []
        self.pending_steps: List[Dict] = []
        self.wandb = None
        self.wandb_args = {'project': wandb_project, 'name': run_name} if use_wandb else None
        self.created = False

    def _create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {'started': self.started, 'argv': sys.argv, **environment_info()}
        (self.folder / 'run.json').write_text(json.dumps(meta, indent=2))
        import yaml
        (self.folder / 'config.yaml').write_text(yaml.safe_dump(self.config, sort_keys=False))
        if self.wandb_args is not None:
            import wandb
            self.wandb = wandb.init(config=self.config, dir=str(self.folder), **self.wandb_args)
        self.created = True

    def file(self, name: str) -> Path:
        """`folder`/`name`, for the run to write (a checkpoint, say). The first call creates the run folder;
        every call writes the step records logged so far, so steps.jsonl keeps up with the checkpoints."""
        if self.enabled:
            if not self.created:
                self._create()
            self._write_steps()
        return self.folder / name

    def log_step(self, step: int, **values) -> None:
        """Record one training step (``lr=..., loss=...``; a loss may stay a device tensor: it is read when
        the records are written, all at once) for steps.jsonl."""
        if self.enabled:
            self.pending_steps.append({'step': step, **values})

    def _write_steps(self) -> None:
        if not self.pending_steps:
            return
        records, self.pending_steps = self.pending_steps, []
        held = [(record, key) for record in records for key, value in record.items() if torch.is_tensor(value)]
        if held:  # one transfer (and, on a GPU, one synchronisation) for every tensor of these steps
            values = torch.stack([record[key].detach().float().reshape(()) for record, key in held]).tolist()
            for (record, key), value in zip(held, values):
                record[key] = value
        with open(self.folder / 'steps.jsonl', 'a') as handle:
            handle.writelines(json.dumps(record) + '\n' for record in records)

    def log(self, record: dict) -> None:
        """Append one record (a dict of JSON-serialisable values) to log.jsonl (and wandb)."""
        record = {**record, 'elapsed_s': round(time.time() - self.start, 3)}
        self.history.append(record)
        if not self.enabled:
            return
        with open(self.file('log.jsonl'), 'a') as handle:
            handle.write(json.dumps(record) + '\n')
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if isinstance(v, (int, float))})

    def finish(self, summary: dict) -> None:
        """Log the summary line, draw curves.png (from the files: a resumed run's earlier steps included)
        and close wandb."""
        self.log({'summary': True, **summary})
        if not self.enabled:
            return
        steps = read_jsonl(self.folder / 'steps.jsonl')
        epochs = [r for r in read_jsonl(self.folder / 'log.jsonl') if 'epoch' in r and not r.get('summary')]
        if steps or epochs:
            draw_curves(self.folder / 'curves.png', steps, epochs)
        if self.wandb is not None:
            self.wandb.summary.update(summary)
            self.wandb.finish()
