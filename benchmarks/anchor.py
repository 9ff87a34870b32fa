"""Running FFCV 1.0.2 (the original, in its own virtual environment) from our benchmarks and checks.

Both packages are imported as `ffcv`, so they can never share an interpreter. The anchor interpreter
is started with ``-I`` (isolated: no PYTHONPATH, no user site, not even the script's folder on
sys.path), with PYTHONPATH and virtual-env variables removed from its environment and with its working
directory outside this repository, so `import ffcv` there can only find FFCV 1.0.2. Its helper scripts
load `benchmarks/data.py` by path.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import List, Optional, Sequence

HERE = Path(__file__).resolve().parent
DEFAULT_ANCHOR_PYTHON = '/root/.venvs/ffcv-anchor/bin/python'
SETUP_HINT = 'bash scripts/setup_ffcv_anchor.sh'


def default_anchor_python() -> str:
    """$FFCV_ANCHOR_PYTHON, else the path `setup_ffcv_anchor.sh` builds."""
    return os.environ.get('FFCV_ANCHOR_PYTHON', DEFAULT_ANCHOR_PYTHON)


def anchor_available(python: Optional[str] = None) -> bool:
    return Path(python or default_anchor_python()).exists()


def clean_env() -> dict:
    """This process's environment without anything that could put our `ffcv` on the anchor's path."""
    drop = {'PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'PYTHONUSERBASE', 'VIRTUAL_ENV', '__PYVENV_LAUNCHER__'}
    return {key: value for key, value in os.environ.items() if key not in drop}


def anchor_command(python: str, script: str, args: Sequence[str] = ()) -> List[str]:
    """Command line running benchmarks/`script` under the anchor interpreter, isolated."""
    return [python, '-I', str(HERE / script), *map(str, args)]


def run_anchor(python: str, script: str, args: Sequence[str], cwd: str,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an anchor helper to completion (stdout and stderr captured as text)."""
    return subprocess.run(anchor_command(python, script, args), cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def load_sibling(name: str) -> ModuleType:
    """benchmarks/<name>.py as module `ffcv_bench_<name>` (loaded by path, cached in sys.modules)."""
    module_name = f'ffcv_bench_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, HERE / f'{name}.py')
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def environment_info(anchor_python: Optional[str]) -> dict:
    """Where a benchmark ran: date, git commit, Python, platform, CPUs, library versions, the anchor used."""
    import cv2
    import numpy
    import torch
    import ffcv
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=HERE, capture_output=True,
                                text=True).stdout.strip() or None
    except OSError:
        commit = None
    return {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'git_commit': commit,
            'python': platform.python_version(), 'platform': platform.platform(),
            'cpus_available': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
            'ffcv_ours': ffcv.__version__, 'numpy': numpy.__version__, 'opencv': cv2.__version__,
            'torch': torch.__version__, 'anchor_python': anchor_python}


def write_report(report: dict, path: str) -> None:
    """Write a benchmark's JSON report (creating its folder) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + '\n')
    print(f'\nresults written to {out}')
