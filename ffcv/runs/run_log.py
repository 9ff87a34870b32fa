"""Helpers shared by the training recipes: run folders, JSON-lines logs, checkpoints, curves.

Every run writes into its own folder::

    run.json        versions, git commit, hardware, command line, start time
    config.yaml     the resolved configuration (loadable again with --config-file)
    log.jsonl       one JSON object per epoch (and a final summary line)
    curves.png      the logged curves, drawn at the end
    checkpoint.pt   the latest checkpoint (written atomically)
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


class RunLogger:
    """Writes the run folder (see the module docstring); optionally mirrors metrics to Weights & Biases."""

    def __init__(self, folder, config: dict, enabled: bool = True, use_wandb: bool = False,
                 wandb_project: str = 'ffcv', run_name: Optional[str] = None):
        self.enabled = enabled
        self.start = time.time()
        self.history: List[Dict] = []
        self.wandb = None
        self.folder = Path(folder)
        if not enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {'started': time.strftime('%Y-%m-%dT%H:%M:%S'), 'argv': sys.argv, **environment_info()}
        (self.folder / 'run.json').write_text(json.dumps(meta, indent=2))
        import yaml
        (self.folder / 'config.yaml').write_text(yaml.safe_dump(config, sort_keys=False))
        if use_wandb:
            import wandb
            self.wandb = wandb.init(project=wandb_project, name=run_name, config=config, dir=str(self.folder))

    def log(self, record: dict) -> None:
        """Append one record (a dict of JSON-serialisable values) to log.jsonl (and wandb)."""
        record = {**record, 'elapsed_s': round(time.time() - self.start, 3)}
        self.history.append(record)
        if not self.enabled:
            return
        with open(self.folder / 'log.jsonl', 'a') as handle:
            handle.write(json.dumps(record) + '\n')
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in record.items() if isinstance(v, (int, float))})

    def finish(self, summary: dict) -> None:
        """Log the summary line, draw curves.png and close wandb."""
        self.log({'summary': True, **summary})
        if not self.enabled:
            return
        epochs = [r for r in self.history if 'epoch' in r and not r.get('summary')]
        if epochs:
            keys = [k for k, v in epochs[-1].items() if isinstance(v, float) and k not in ('elapsed_s', 'epoch')]
            draw_curves(self.folder / 'curves.png', [r['epoch'] for r in epochs],
                        {k: [r.get(k) for r in epochs] for k in keys})
        if self.wandb is not None:
            self.wandb.summary.update(summary)
            self.wandb.finish()


def draw_curves(path, x: List[float], series: Dict[str, List[Optional[float]]], size=(900, 300)) -> None:
    """One small panel per series (OpenCV drawing, no plotting library needed)."""
    import cv2
    width, height = size
    panels = []
    for name, values in series.items():
        panel = np.full((height, width, 3), 255, np.uint8)
        points = [(xv, yv) for xv, yv in zip(x, values) if yv is not None and np.isfinite(yv)]
        cv2.putText(panel, name, (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        if points:
            xs, ys = np.array(points, dtype=float).T
            x_lo, x_hi = xs.min(), max(xs.max(), xs.min() + 1e-9)
            y_lo, y_hi = ys.min(), max(ys.max(), ys.min() + 1e-9)
            px = 50 + (xs - x_lo) / (x_hi - x_lo) * (width - 70)
            py = height - 30 - (ys - y_lo) / (y_hi - y_lo) * (height - 70)
            cv2.rectangle(panel, (50, 40), (width - 20, height - 30), (200, 200, 200), 1)
            for k in range(1, len(px)):
                cv2.line(panel, (int(px[k - 1]), int(py[k - 1])), (int(px[k]), int(py[k])), (180, 90, 20), 2,
                         cv2.LINE_AA)
            for label, value, ypos in ((f'{y_hi:.4g}', y_hi, 45), (f'{y_lo:.4g}', y_lo, height - 32)):
                cv2.putText(panel, label, (2, ypos), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
            cv2.putText(panel, f'epochs {x_lo:g} to {x_hi:g}', (width - 170, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (80, 80, 80), 1, cv2.LINE_AA)
        panels.append(panel)
    cv2.imwrite(str(path), np.concatenate(panels, axis=0))
