"""Cached kernels recompile when a file they depend on changes, not only their own (`ffcv._numba_cache`).

numba alone stamps a cached function with its own file: `draw_jitter` (ffcv/transforms/color_jitter.py)
inlines `uniform` (ffcv/pipeline/seeding.py), so after an edit of seeding.py alone its cached code would load
and draw from the old `uniform`. The test edits a copy of the package and checks that the draws change.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ffcv
from ffcv import _numba_cache

PACKAGE = Path(ffcv.__file__).parent
DRAW = ('import json, numpy as np\n'
        'from ffcv.transforms.color_jitter import draw_jitter\n'
        'from ffcv._numba_cache import PACKAGE_DIR\n'
        'apply, factors = draw_jitter(np.arange(4, dtype=np.uint64), 1.0, 0.5)\n'
        'print(json.dumps({"package": PACKAGE_DIR, "factors": factors.tolist(),\n'
        '                  "cached": bool(draw_jitter.stats.cache_hits)}))\n')


def draw(root: Path) -> dict:
    env = {**os.environ, 'PYTHONPATH': str(root)}
    env.pop('NUMBA_CACHE_DIR', None)
    env.pop('NUMBA_DISABLE_JIT', None)
    out = subprocess.run([sys.executable, '-c', DRAW], env=env, cwd=root, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_editing_an_inlined_callee_recompiles_its_callers(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / 'ffcv', ignore=shutil.ignore_patterns('__pycache__'))
    first = draw(tmp_path)
    assert Path(first['package']) == tmp_path / 'ffcv'  # the copy, not the installed package
    again = draw(tmp_path)
    assert again == {**first, 'cached': True}  # unchanged sources: loaded from the cache
    seeding = tmp_path / 'ffcv' / 'pipeline' / 'seeding.py'
    text = seeding.read_text()
    assert text.count('_TO_UNIT = 1.0 / 9007199254740992.0') == 1
    seeding.write_text(text.replace('_TO_UNIT = 1.0 / 9007199254740992.0', '_TO_UNIT = 0.5 / 9007199254740992.0'))
    edited = draw(tmp_path)
    assert not edited['cached']
    # uniform() now lies in [0, 0.5): factors = 0.5 + 1.0 * u fall in [0.5, 1.0) instead of [0.5, 1.5)
    assert edited['factors'] != first['factors'] and max(edited['factors']) < 1.0


def test_package_locators_serve_only_the_package(tmp_path):
    assert _numba_cache.install()  # idempotent: still one set of package locators
    classes = _numba_cache.locator_classes()
    assert sum(getattr(cls, 'ffcv_package_locator', False) for cls in classes) == 3
    outside = tmp_path / 'mine.py'
    outside.write_text('def f():\n    return 1\n')
    assert all(cls.from_function(None, str(outside)) is None
               for cls in classes if getattr(cls, 'ffcv_package_locator', False))
    assert _numba_cache.in_package(str(PACKAGE / 'pipeline' / 'seeding.py'))
    assert not _numba_cache.in_package(str(outside))


START = ('import json, sys, numpy as np, numba\n'
         'import ffcv\n'
         'from ffcv.imaging.area_resize import area_resize\n'
         'area_resize(np.zeros((30, 50, 3), np.uint8), 20, 20)\n'  # numba's CPU target is set up by now
         'import numba.np.arraymath as arraymath\n'
         'started = {"scipy_linalg": "scipy.linalg" in sys.modules, "have_blas": arraymath._HAVE_BLAS}\n'
         '@numba.njit\n'
         'def dot(a, b):\n'
         '    return np.dot(a, b)\n'
         'value = float(dot(np.arange(3.0), np.arange(3.0)))\n'
         'print(json.dumps({**started, "dot": value, "scipy_after_dot": "scipy.linalg" in sys.modules}))\n')


def test_numba_starts_without_scipy_and_keeps_blas():
    """`defer_scipy`: setting up numba's target for our kernels imports no scipy.linalg, numba still knows
    BLAS is there (as its own check would find with scipy installed), and a kernel calling np.dot works."""
    import importlib.util
    if importlib.util.find_spec('scipy') is None:
        pytest.skip('scipy is not installed: there is no import to defer')
    out = subprocess.run([sys.executable, '-c', START], capture_output=True, text=True, timeout=300, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {'scipy_linalg': False, 'have_blas': True, 'dot': 5.0, 'scipy_after_dot': True}


def test_defer_scipy_is_idempotent_and_steps_aside_once_numba_is_set_up():
    import numba.np.arraymath  # noqa: F401 (set up in this process already)
    before = list(sys.meta_path)
    _numba_cache.defer_scipy()
    _numba_cache.defer_scipy()
    assert sys.meta_path == before
