"""benchmarks/bench_ab.py: warm processes of several checkouts alternate epochs; its JSON and its checks."""
from __future__ import annotations

import json
import math

import pytest

from helpers import ROOT, load_script

ab = load_script('benchmarks/bench_ab.py', 'ffcv_bench_ab')


@pytest.fixture(scope='module')
def photos(tmp_path_factory) -> str:
    """24 photo-like JPEGs (max side 96) with labels, as bench_loader writes them."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    path = tmp_path_factory.mktemp('ab') / 'photos.beton'
    dataset = ab_data().make_dataset('photo', 24, seed=5)
    fields = {'image': RGBImageField(write_mode='jpg', max_resolution=96, jpeg_quality=90), 'label': IntField()}
    DatasetWriter(str(path), fields, num_workers=1).from_indexed_dataset(dataset, progress=False)
    return str(path)


def ab_data():
    return load_script('benchmarks/data.py', 'ffcv_bench_ab_data')


def test_two_checkouts_alternate_and_the_json_holds_every_round(photos, tmp_path):
    """The same checkout twice (the second with numba's fast kernel loads off): every process imports the
    checkout's own ffcv, each round has a rate per checkout, the reference's ratios are exactly 1."""
    out = tmp_path / 'ab.json'
    assert ab.main([f'ref={ROOT}', f'other={ROOT}:FFCV_NUMBA_FAST_LOAD=0', '--beton', photos, '--batch-size', '8',
                    '--rounds', '3', '--processes', '1', '--num-workers', '1', '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    assert [c['name'] for c in result['checkouts']] == ['ref', 'other']
    assert result['checkouts'][1]['env'] == {'FFCV_NUMBA_FAST_LOAD': '0'}
    assert result['spec']['pipeline'] == 'train' and result['spec']['batch_size'] == 8
    ref, other = result['results']['ref'], result['results']['other']
    assert ref['ratios'] == [1.0, 1.0, 1.0] and ref['ratio_median'] == 1.0
    assert len(other['rounds']) == 3 and all(r > 0 and math.isfinite(r) for r in other['rounds'])
    assert other['ratios'] == pytest.approx([a / b for a, b in zip(other['rounds'], ref['rounds'])])


@pytest.mark.parametrize('text', ['noequals', '=path', f'x={ROOT}:NOVALUE', 'x=/nonexistent/checkout'])
def test_a_bad_checkout_is_refused(text):
    with pytest.raises(SystemExit):
        ab.main([text, f'ref={ROOT}'])


def test_one_checkout_or_repeated_names_are_refused():
    with pytest.raises(SystemExit):
        ab.main([f'a={ROOT}'])
    with pytest.raises(SystemExit):
        ab.main([f'a={ROOT}', f'a={ROOT}'])
