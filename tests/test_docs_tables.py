"""The measured tables of the guides say what their benchmark's committed JSON says.

Each table sits between ``<!-- bench-docs-NAME: start -->`` and ``<!-- bench-docs-NAME: end -->`` in its page;
its numbers are compared, cell by cell and rounded as printed, with the JSON that the benchmark wrote
(`benchmarks/results/`, committed). Re-running a benchmark without updating its page (or the reverse) fails here.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r'-?\d[\d,]*(?:\.\d+)?')


def table_rows(page: str, name: str) -> list:
    """The body rows of the marked table: a list of cell lists (`page` under docs/, or README.md)."""
    text = (ROOT / (page if page == 'README.md' else Path('docs') / page)).read_text()
    start, end = f'<!-- bench-docs-{name}: start -->', f'<!-- bench-docs-{name}: end -->'
    assert start in text and end in text, f'{page}: the markers of table {name!r} are missing'
    lines = [line for line in text[text.index(start):text.index(end)].splitlines() if line.startswith('|')]
    return [[cell.strip() for cell in line.strip().strip('|').split('|')] for line in lines[2:]]


def numbers(cell: str) -> list:
    return [float(match.replace(',', '')) for match in NUMBER.findall(cell)]


def printed(value: float, digits: int = 0) -> float:
    """`value` as the table prints it (rounded half to even, as Python's format does)."""
    return float(f'{value:.{digits}f}')


def results(name: str) -> dict:
    return json.loads((ROOT / 'benchmarks' / 'results' / name).read_text())


def test_working_with_images_table_matches_its_json():
    report = results('docs_images.json')
    rows = table_rows('working-with-images.md', 'images')
    assert len(rows) == len(report['results'])
    count = report['images']
    for row, case in zip(rows, report['results']):
        expected = {
            1: [printed(case['data_bytes'] / count / 1024)],
            2: [printed(case['file_bytes'] / 2 ** 20)],
            3: [printed(100 * case['jpeg_share'])],
            4: [] if math.isinf(case['psnr_db']) else [printed(case['psnr_db'], 1)],
            5: [printed(case['write_images_per_s'])],
            6: [printed(case['train_images_per_s']), printed(case['train_cpu_us_per_image'])],
            7: [printed(case['val_images_per_s']), printed(case['val_cpu_us_per_image'])],
        }
        for column, values in expected.items():
            assert numbers(row[column]) == values, (case['case'], column, row[column], values)
        assert ('exact' in row[4]) == math.isinf(case['psnr_db'])


def test_regression_table_matches_its_json():
    best = {system: r['best'] for system, r in results('docs_beyond.json')['regression'].items()}
    rows = table_rows('beyond-classification.md', 'regression')
    systems = ('torch_memory', 'torch_memmap', 'ffcv', 'ffcv_quasi')  # the order of the page's rows
    assert len(rows) == len(systems)
    for row, system in zip(rows, systems):
        assert numbers(row[1]) == [printed(best[system])], (system, row)
        assert numbers(row[2]) == [printed(best[system] / best['torch_memory'], 2)], (system, row)


@pytest.mark.parametrize('case', ['loader only', 'small CNN', 'ResNet-18'])
def test_inference_table_matches_its_json(case):
    result = results('docs_beyond.json')['inference'][case]
    rows = {row[0].split(' (')[0].lower(): row for row in table_rows('beyond-classification.md', 'inference')}
    row = rows[case.lower()]
    torch_rate, ffcv_rate = result['torch']['best'], result['ffcv']['best']
    assert numbers(row[1]) == [printed(torch_rate)]
    assert numbers(row[2]) == [printed(ffcv_rate)]
    assert numbers(row[3]) == [printed(ffcv_rate / torch_rate, 2)]


def test_multiview_table_matches_its_json():
    case = results('loader_multiview.json')['cases']['multiview']
    rows = table_rows('multiview.md', 'multiview')
    steady, first, memory = rows
    assert numbers(steady[1]) == [printed(case['ours']['steady_images_per_s'])]
    assert numbers(steady[2]) == [printed(case['ffcv']['steady_images_per_s'])]
    assert numbers(steady[3]) == [printed(case['ratios']['steady_ours_over_ffcv'], 2)]
    runs = [printed(run['steady_images_per_s']) for system in ('ours', 'ffcv') for run in case['runs'][system]]
    assert numbers(steady[0])[-6:] == runs  # the runs quoted in the row's label, ours then FFCV
    assert numbers(first[1]) == [printed(case['ours']['first_images_per_s'])]
    assert numbers(first[2]) == [printed(case['ffcv']['first_images_per_s'])]
    assert numbers(first[3]) == [printed(case['ratios']['first_ours_over_ffcv'], 1)]
    assert numbers(memory[1]) == [printed(case['ours']['peak_rss_mb'])]
    assert numbers(memory[2]) == [printed(case['ffcv']['peak_rss_mb'])]


def test_augment_table_matches_its_json():
    report = results('augment.json')
    (row,) = table_rows('augmentations.md', 'augment')
    assert numbers(row[0])[-3:] == [printed(r, 2) for r in report['steady_ours_over_torch_per_round']]
    assert numbers(row[1]) == [printed(report['summary']['ours']['steady_images_per_s'])]
    assert numbers(row[2]) == [printed(report['summary']['torch']['steady_images_per_s'])]
    assert numbers(row[3]) == [printed(report['steady_ours_over_torch'], 2)]


def test_multi_model_table_matches_its_json():
    report = results('multi_model.json')
    alone, one_by_one, shared, speedup = table_rows('multiple-models.md', 'multi-model')
    images = report['models'] * report['images'] * report['epochs']
    assert numbers(alone[1]) == [printed(report['loading_only_s'], 1)]
    assert numbers(one_by_one[1]) == [printed(report['one_after_another_s'], 1)]
    assert numbers(one_by_one[2]) == [printed(images / report['one_after_another_s'])]
    assert numbers(shared[1]) == [printed(report['shared_loader_s'], 1)]
    assert numbers(shared[2]) == [printed(images / report['shared_loader_s'])]
    assert numbers(speedup[1]) == [printed(report['speedup'], 2)]
    assert report['test_accuracy_shared'] == report['test_accuracy_one_after_another']


def test_readme_peers_table_matches_its_json():
    """README's loader table against FFCV, torch, DALI and SPDL: every number is the run's median."""
    data = results('loader_peers.json')['cases']
    systems = ('ours', 'ffcv', 'torch', 'dali', 'spdl')
    metrics = {'steady': 'steady_images_per_s', 'first epoch': 'first_images_per_s', 'peak RSS, MiB': 'peak_rss_mb',
               'first batch, s': 'first_batch_s'}
    rows = table_rows('README.md', 'loader-peers')
    assert len(rows) == 8
    for row in rows:
        case, metric = row[0].split(' ', 1)
        key, digits = metrics[metric], 2 if metric == 'first batch, s' else 0
        assert [numbers(cell)[0] for cell in row[1:6]] == [printed(data[case][system][key], digits)
                                                            for system in systems], row
        for cell, other in zip(row[6:], ('ffcv', 'dali', 'spdl')):
            if cell:
                digits = len(cell.rstrip('x').split('.')[1])
                ratio = data[case]['ours'][key] / data[case][other][key]
                assert numbers(cell)[0] == printed(ratio, digits), (row, other)
