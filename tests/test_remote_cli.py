"""The `ffcv` command on URLs: inspect, verify and bench over HTTP (nginx), convert uploading to S3 (SeaweedFS)."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from ffcv.reader import Reader

import servers
from helpers import run_cli

pytest.importorskip('aiohttp', reason='the remote extra is not installed (pip install -e .[dev])')


@pytest.fixture(scope='module')
def served_jpegs(fixtures_dir):
    """(local path, URL) of FFCV 1.0.2's JPEG fixture served by nginx."""
    server = servers.nginx()
    local = fixtures_dir / 'images_jpg.beton'
    shutil.copy(local, os.path.join(server.root, 'images_jpg.beton'))
    return os.fspath(local), server.url('images_jpg.beton')


def test_inspect_by_url_reports_what_it_reports_locally(served_jpegs, capsys):
    local, url = served_jpegs
    code, out, err = run_cli(capsys, 'inspect', '--json', url)
    assert code == 0, err
    remote_summary, local_summary = json.loads(out), json.loads(run_cli(capsys, 'inspect', '--json', local)[1])
    assert remote_summary.pop('file') == url
    local_summary.pop('file')
    assert remote_summary == local_summary


def test_verify_by_url_decodes_every_sample(served_jpegs, capsys):
    local, url = served_jpegs
    code, out, err = run_cli(capsys, 'verify', '--no-progress', url)
    assert code == 0, err + out
    assert f'OK: {Reader(local).num_samples} samples' in out and url in out


def test_bench_by_url_measures_the_stages(served_jpegs, capsys):
    _, url = served_jpegs
    code, out, err = run_cli(capsys, 'bench', url, '--pipeline', 'val', '--res', '32', '--batches', '2',
                             '--batch-size', '4', '--num-workers', '1')
    assert code == 0, err
    assert 'decode (JPEG, full size)' in out and 'loader end to end:' in out


def test_commands_report_a_missing_url_in_one_line(served_jpegs, capsys):
    url = served_jpegs[1].replace('images_jpg', 'absent')
    for command in ('inspect', 'verify'):
        code, out, err = run_cli(capsys, command, url)
        assert code == 2
        assert f'{url}: open: not found (404)' in err
    code, _, err = run_cli(capsys, 'inspect', served_jpegs[0], '--storage-option', 'anon=true')
    assert code == 2 and '--storage-option applies to URLs' in err


def test_convert_uploads_to_s3_and_refuses_to_overwrite(tmp_path, rng, capsys):
    server = servers.seaweed()
    images = rng.integers(0, 256, (6, 16, 20, 3), dtype=np.uint8)
    np.savez(tmp_path / 'arrays.npz', images=images, labels=np.arange(6))
    url = 's3://ffcv-test/converted.beton'
    options = [arg for key, value in server.storage_options.items()
               for arg in ('--storage-option', f'{key}={value}')]
    code, out, err = run_cli(capsys, 'convert', tmp_path / 'arrays.npz', url, *options, '--num-workers', 1,
                             '--no-progress')
    assert code == 0, err
    assert f'Wrote 6 samples to {url}' in out
    reader = Reader(url, remote={'storage_options': server.storage_options})
    for index in range(6):
        np.testing.assert_array_equal(reader.read_sample(index)['image'], images[index])
    code, _, err = run_cli(capsys, 'convert', tmp_path / 'arrays.npz', url, *options, '--no-progress')
    assert code == 2 and 'already exists' in err
