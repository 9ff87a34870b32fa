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
         'area_resize(np.zeros((30, 50, 3), np.uint8), 20, 20)\n'  # compiled or loaded (then without the refresh)
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


LOAD_ALL = '''
import importlib, json, pkgutil, sys
import numba
import ffcv
from ffcv.imaging import jpeg_window
jpeg_window.available()  # registers libjpeg's symbols before its kernels' module is imported
modules = []
for info in pkgutil.walk_packages(ffcv.__path__, 'ffcv.'):
    try:
        modules.append(importlib.import_module(info.name))
    except ImportError:  # a module of an optional extra that is not installed
        pass
codegen = numba.core.registry.cpu_target.target_context.codegen()
loaded, compiled = [], []
for module in modules:
    for name, value in sorted(vars(module).items()):
        cache = getattr(value, '_cache', None)
        if not isinstance(value, numba.core.registry.CPUDispatcher) or value.__module__ != module.__name__ \\
                or not hasattr(cache, '_cache_file'):
            continue
        for key in cache._cache_file._load_index():
            if key == cache._index_key(key[0], codegen) and tuple(key[0]) not in value.overloads:
                value.compile(key[0])
                hits = sum(value.stats.cache_hits.values())
                (loaded if hits else compiled).append(f'{module.__name__}.{name}{key[0]}')
print(json.dumps({'loaded': loaded, 'compiled': compiled, 'refreshed': 'numba.cpython.setobj' in sys.modules}))
'''

PIPELINE = '''
import json, sys, numpy as np, numba
from numba.core.runtime import nrtdynmod
nrt_compiles = []
original = nrtdynmod.create_nrt_module
nrtdynmod.create_nrt_module = lambda context: nrt_compiles.append(1) or original(context)
from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.transforms import RandomHorizontalFlip, ToTensor
loader = Loader(sys.argv[1], batch_size=8, num_workers=2, order=OrderOption.RANDOM, seed=1,
                pipelines={'image': [RandomResizedCropRGBImageDecoder((24, 24)), RandomHorizontalFlip(), ToTensor()],
                           'label': [IntDecoder(), ToTensor()]})
images = [batch[0].numpy().tobytes().hex() for batch in loader]
refreshed = 'numba.cpython.setobj' in sys.modules
arrayobj = 'numba.np.arrayobj' in sys.modules  # imported where a loaded kernel allocates arrays

@numba.njit
def distinct(values):  # compiled here: numba sets its target up for it, fast loads or not
    return len(set(values))

print(json.dumps({'images': images, 'refreshed': refreshed, 'distinct': distinct(np.array([3, 1, 3])),
                  'arrayobj': arrayobj, 'nrt_compiles': len(nrt_compiles)}))
'''


def run_python(code: str, *args: str, **env) -> dict:
    environment = {**os.environ, **env}
    environment.pop('NUMBA_DISABLE_JIT', None)
    out = subprocess.run([sys.executable, '-c', code, *args], env=environment, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]  # a symbol missing at load would abort the process (LLVM)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def small_photos(tmp_path_factory):
    import numpy as np
    from ffcv.fields import IntField, RGBImageField
    from conftest import photo_like
    from helpers import write_and_read
    rng = np.random.default_rng(8)
    path = str(tmp_path_factory.mktemp('fastload') / 'photos.beton')
    write_and_read(path, {'image': RGBImageField(write_mode='jpg'), 'label': IntField()},
                   [(photo_like(rng, 40 + k, 56 - k), k) for k in range(24)])
    return path


def test_package_kernels_load_without_setting_up_numba_target(small_photos):
    """`fast_package_loads`: a fresh process loads the cached kernels of a train pipeline without numba's
    target refresh, without compiling numba's runtime (`start_nrt` loads it) and without importing
    ``numba.np.arrayobj`` (no kernel of the path allocates); its batches are byte for byte those of numba's
    usual path, and code compiled afterwards in the same process (here with a set, whose implementation the
    refresh registers) still works."""
    run_python(PIPELINE, small_photos)  # compiles and caches what is not cached yet
    fast = run_python(PIPELINE, small_photos)
    usual = run_python(PIPELINE, small_photos, FFCV_NUMBA_FAST_LOAD='0')
    assert not fast['refreshed'] and usual['refreshed']
    assert fast['nrt_compiles'] == 0 and usual['nrt_compiles'] == 1
    assert not fast['arrayobj']
    assert fast['images'] == usual['images'] and len(fast['images']) == 3
    assert fast['distinct'] == usual['distinct'] == 2


def test_every_cached_kernel_of_the_package_loads_through_the_fast_path(small_photos):
    """Every kernel of the package in the on-disk cache (those this run has used so far, the train pipeline's
    at least) loads in a fresh process without the target refresh and without compiling: a symbol missing
    at load would abort the process."""
    run_python(PIPELINE, small_photos)
    result = run_python(LOAD_ALL)
    assert result['compiled'] == [] and not result['refreshed']
    names = {entry.split('(')[0] for entry in result['loaded']}
    assert {'ffcv.pipeline.seeding.fill_seeds', 'ffcv.imaging.crop.random_resized_crop_windows',
            'ffcv.transforms.flip.flip_rows'} <= names, sorted(names)


def test_fast_loads_are_installed_once_and_can_be_turned_off():
    from numba.core import caching
    assert _numba_cache.fast_package_loads()
    assert _numba_cache.fast_package_loads()  # idempotent: one wrapper
    wrapper = caching.Cache.load_overload
    assert wrapper.ffcv_fast_load and not getattr(wrapper.__wrapped__, 'ffcv_fast_load', False)
    result = run_python('import json, ffcv\nfrom numba.core import caching\n'
                        'print(json.dumps({"fast": hasattr(caching.Cache.load_overload, "ffcv_fast_load")}))',
                        FFCV_NUMBA_FAST_LOAD='0')
    assert result == {'fast': False}


NRT = '''
import glob, json, os, numpy as np, numba
from numba.core.runtime import nrt, nrtdynmod
nrt_compiles = []
original = nrtdynmod.create_nrt_module
nrtdynmod.create_nrt_module = lambda context: nrt_compiles.append(1) or original(context)
from ffcv.pipeline.seeding import batch_seeds
seeds = batch_seeds(np.uint64(1), np.uint64(0), np.arange(4), np.uint64(3))  # a package kernel: starts the NRT

@numba.njit
def fresh(n):  # compiled in this process: linked against the NRT, allocates through it
    values = np.empty(n)
    values[:] = 1.5
    return values, [k * 2 for k in range(n)]

before = nrt.rtsys.get_allocation_stats()
values, doubled = fresh(5)
result = {'sum': float(values.sum()), 'doubled': doubled}
del values
after = nrt.rtsys.get_allocation_stats()
files = sorted(glob.glob(os.path.join(os.environ['NUMBA_CACHE_DIR'], '**', 'ffcv-nrt-*.nbc'), recursive=True))
print(json.dumps({**result, 'seeds': seeds.tolist(), 'nrt_compiles': len(nrt_compiles), 'files': files,
                  'allocated': after.alloc - before.alloc, 'freed': after.free - before.free}))
'''


def test_numba_runtime_is_loaded_from_the_cache_and_rebuilt_when_unreadable(tmp_path):
    """`start_nrt`: the first process compiles numba's runtime and saves its machine code beside the package's
    cached kernels; the next loads it instead of compiling. Code compiled afterwards allocates and frees
    through it (numba's allocation statistics balance), and a damaged file is compiled and written again."""
    cache = str(tmp_path / 'numba-cache')
    first = run_python(NRT, NUMBA_CACHE_DIR=cache, NUMBA_NRT_STATS='1')
    assert first['nrt_compiles'] == 1 and len(first['files']) == 1
    second = run_python(NRT, NUMBA_CACHE_DIR=cache, NUMBA_NRT_STATS='1')
    assert second['nrt_compiles'] == 0 and second['files'] == first['files']
    for result in (first, second):
        assert result['sum'] == 7.5 and result['doubled'] == [0, 2, 4, 6, 8] and result['seeds'] == first['seeds']
        assert result['allocated'] == result['freed'] > 0
    saved = Path(first['files'][0])
    good = saved.read_bytes()
    saved.write_bytes(good[:100])  # truncated
    damaged = run_python(NRT, NUMBA_CACHE_DIR=cache, NUMBA_NRT_STATS='1')
    assert damaged['nrt_compiles'] == 1 and damaged['seeds'] == first['seeds'] and damaged['sum'] == 7.5
    assert saved.stat().st_size == len(good)  # written again (loaded by the next process)
    assert run_python(NRT, NUMBA_CACHE_DIR=cache, NUMBA_NRT_STATS='1')['nrt_compiles'] == 0
