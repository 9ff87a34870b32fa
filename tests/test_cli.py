"""The `ffcv` command: inspect and verify, called in-process through `main` (one run as a script).

`ffcv convert`: test_cli_convert.py; `ffcv bench`: test_cli_bench.py.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ffcv.reader import Reader
from ffcv.tools.cli import main

from helpers import run_cli

FIXTURE_FILES = ['basic.beton', 'images_raw.beton', 'images_jpg.beton', 'images_proportion.beton',
                 'images_smart.beton', 'cifar_like.beton']


# --- inspect ---

@pytest.mark.parametrize('name', ['images_jpg', 'images_proportion', 'images_smart'])
def test_inspect_images_matches_expected(fixtures_dir, manifest, capsys, name):
    expected = np.load(fixtures_dir / f'{name}.expected.npz')
    code, out, _ = run_cli(capsys, 'inspect', '--json', fixtures_dir / f'{name}.beton')
    assert code == 0
    summary = json.loads(out)
    assert summary['num_samples'] == manifest['files'][f'{name}.beton']['samples'] == len(expected['labels'])
    assert summary['page_size'] == 2 ** 21
    assert sum(summary['sections'].values()) == summary['file_size']
    image, label = summary['fields']
    assert (image['name'], image['class'], image['type_id']) == ('image', 'RGBImageField', 2)
    assert (label['name'], label['class'], label['type_id']) == ('label', 'IntField', 1)
    stats, modes = image['stats'], expected['modes']
    assert (stats['jpg'], stats['raw']) == ((modes == 0).sum(), (modes == 1).sum())
    for side, key in (('width', 'widths'), ('height', 'heights')):
        assert stats[side] == {'min': int(expected[key].min()), 'median': float(np.median(expected[key])),
                               'max': int(expected[key].max())}
    raw = modes == 1
    raw_bytes = int((expected['heights'][raw].astype(int) * expected['widths'][raw] * 3).sum())
    assert raw_bytes < stats['bytes_total'] == summary['data_used']  # images are the only heap data
    assert label['stats']['min'] == expected['labels'].min()


def test_inspect_basic_text(fixtures_dir, manifest, capsys):
    expected = np.load(fixtures_dir / 'basic.expected.npz')
    code, out, err = run_cli(capsys, 'inspect', fixtures_dir / 'basic.beton')
    assert code == 0 and err == ''
    assert 'samples      97' in out
    for name, description in manifest['files']['basic.beton']['fields'].items():
        assert any(line.split()[1:2] == [name] and description.split('(')[0] in line for line in out.splitlines())
    lengths = expected['blob_lengths']
    assert f'size       min {lengths.min()}, max {lengths.max()}, mean {lengths.mean():,.1f} bytes' in out
    summary = json.loads(run_cli(capsys, 'inspect', '--json', fixtures_dir / 'basic.beton')[1])
    assert [f['name'] for f in summary['fields']] == list(manifest['files']['basic.beton']['fields'])
    assert summary['fields'][3]['stats']['bytes_total'] == int(lengths.sum())


# --- verify ---

@pytest.mark.parametrize('name', FIXTURE_FILES)
def test_verify_fixture_files(fixtures_dir, manifest, capsys, name):
    code, out, _ = run_cli(capsys, 'verify', '--no-progress', fixtures_dir / name)
    assert code == 0
    assert out.startswith(f"OK: {manifest['files'][name]['samples']} samples")


def test_verify_names_corrupt_jpegs(fixtures_dir, tmp_path, capsys):
    path = tmp_path / 'corrupt.beton'
    shutil.copy(fixtures_dir / 'images_jpg.beton', path)
    path.chmod(0o644)
    column = Reader(path).metadata['f0']
    with open(path, 'r+b') as fp:
        for sample in (7, 19):
            fp.seek(int(column[sample]['data_ptr']) + 1000)  # the middle of the entropy-coded data
            fp.write(b'\xff' * 64)
    code, out, err = run_cli(capsys, 'verify', '--max-errors', 1, path)
    assert code == 1
    assert "sample 7, field 'image': JPEGDecodeError" in out
    assert 'sample 19' not in out and '1 more error' in out
    assert 'FAILED: 2 of 31 samples bad' in out
    assert 'Verifying' in err  # the progress bar


def cut_points(reader: Reader) -> dict:
    """Where a file can end early: inside each section, and at or inside the allocation table's entries."""
    return {'header': 10, 'field table': reader.metadata_start - 5, 'metadata': reader.metadata_end - 1,
            'data': 3_000_000, 'whole table': reader.alloc_table_ptr, 'inside an entry': reader.alloc_table_ptr + 5,
            'last entry': reader.file_size - 24}


@pytest.mark.parametrize('where', ['header', 'field table', 'metadata', 'data', 'whole table', 'inside an entry',
                                   'last entry'])
@pytest.mark.parametrize('command', ['inspect', 'verify'])
def test_truncated_file_says_truncated(fixtures_dir, tmp_path, capsys, command, where):
    source = fixtures_dir / 'images_raw.beton'
    path = tmp_path / 'cut.beton'
    path.write_bytes(source.read_bytes()[:cut_points(Reader(source))[where]])
    code, out, err = run_cli(capsys, command, '--no-progress' if command == 'verify' else '--json', path)
    assert code == 2 and out == '' and err.count('\n') == 1
    prefix, message = err.split(f'{path}: ')  # the path, named once, then the problem
    assert prefix == f'ffcv {command}: error: ' and 'truncated' in message
    if where in ('data', 'metadata'):
        assert 'allocation table starts at byte 4,194,304' in message


def test_corrupt_complete_file_is_not_called_truncated(fixtures_dir, tmp_path, capsys):
    path = tmp_path / 'corrupt.beton'
    path.write_bytes((fixtures_dir / 'images_raw.beton').read_bytes())
    reader = Reader(path)
    image = reader.metadata_type.fields['f0']  # (dtype, offset) of the image column
    with open(path, 'r+b') as fp:  # sample 3's data pointer, in a file of full length
        fp.seek(reader.metadata_start + 3 * reader.metadata_type.itemsize + image[1] + image[0].fields['data_ptr'][1])
        fp.write((12345).to_bytes(8, 'little'))
    code, _, err = run_cli(capsys, 'verify', path)
    assert code == 2 and "sample 3, field 'image'" in err and 'truncated' not in err.split(str(path))[1]
    (tmp_path / 'text.beton').write_text('not a beton file, just some text long enough to hold a header')
    code, _, err = run_cli(capsys, 'inspect', tmp_path / 'text.beton')
    assert code == 2 and 'not a .beton file' in err and 'truncated' not in err.split('text.beton')[1]


def test_missing_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, 'verify', tmp_path / 'missing.beton')
    assert code == 2 and 'missing.beton' in err


OPAQUE_FIELD = '''
import numpy as np
from ffcv.fields.base import Field, empty_arguments


class OpaqueField(Field):
    """A custom field without read_value."""
    metadata_type = np.dtype('<u8')

    @staticmethod
    def from_binary(binary):
        return OpaqueField()

    def to_binary(self):
        return empty_arguments()

    def encode(self, destination, field, malloc):
        destination[0] = field

    def get_decoder_class(self):
        return None
'''


def test_verify_custom_field(tmp_path, monkeypatch, capsys):
    from ffcv.fields import IntField
    from ffcv.writer import DatasetWriter
    (tmp_path / 'opaque_field.py').write_text(OPAQUE_FIELD)
    monkeypatch.syspath_prepend(str(tmp_path))
    from opaque_field import OpaqueField
    path = tmp_path / 'custom.beton'
    DatasetWriter(str(path), {'blob': OpaqueField(), 'label': IntField()}, num_workers=1).from_indexed_dataset(
        [(i, i) for i in range(5)], progress=False)
    code, _, err = run_cli(capsys, 'verify', path)
    assert code == 2 and '--custom-field' in err
    code, out, _ = run_cli(capsys, 'verify', '--no-progress', '--custom-field', 'blob=opaque_field:OpaqueField', path)
    assert code == 0
    assert out.count('cannot decode custom field') == 1
    assert 'OK: 5 samples x 1 field decoded' in out


# --- convert ---

def test_usage_errors_return_2(capsys):
    assert main([]) == 2
    assert main(['convert', 'a', 'b', '--write-mode', 'png']) == 2
    assert 'invalid choice' in capsys.readouterr().err


def test_console_script(fixtures_dir):
    script = Path(sys.executable).parent / 'ffcv'
    assert script.exists(), 'the ffcv console script is not installed (pip install -e .)'
    result = subprocess.run([str(script), 'inspect', '--json', str(fixtures_dir / 'cifar_like.beton')],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)['num_samples'] == 64
