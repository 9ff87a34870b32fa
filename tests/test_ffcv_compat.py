"""Our .beton files against FFCV 1.0.2 itself, both directions (benchmarks/ffcv_compat.py).

Needs the FFCV 1.0.2 environment built outside the repo; skipped without it. About 25 s: FFCV's
Loader compiles its pipelines with numba on every run.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import load_script

compat = load_script('benchmarks/ffcv_compat.py', 'ffcv_bench_compat')
ANCHOR = compat.anchor.default_anchor_python()


@pytest.mark.slow
@pytest.mark.skipif(not Path(ANCHOR).exists(),
                    reason='FFCV 1.0.2 environment not built (bash scripts/setup_ffcv_anchor.sh)')
def test_ffcv_reads_our_files_and_we_read_ffcv_files(tmp_path):
    rows = compat.run_checks(ANCHOR, tmp_path)
    failed = [f"{r['direction']}: {r['file']} {r['field']} {r['check']}: {r['detail']}" for r in rows if not r['ok']]
    assert not failed, '\n'.join(failed)
    checked = {(r['file'], r['field']) for r in rows}
    for field in ('int', 'float', 'mat', 'vec16', 'tensor'):
        assert ('ours_scalars_arrays.beton', field) in checked
        assert ('ffcv_scalars_arrays.beton', field) in checked
    for field in ('raw', 'jpg', 'smart', 'prop'):
        assert ('ours_images_varied.beton', field) in checked
        assert ('ffcv_images.beton', field) in checked
