"""The `ffcv` command: inspect, verify and convert, called in-process through `main` (one run as a script)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import photo_like
from ffcv.tools.cli import main
from ffcv.reader import Reader

FIXTURE_FILES = ['basic.beton', 'images_raw.beton', 'images_jpg.beton', 'images_proportion.beton',
                 'images_smart.beton', 'cifar_like.beton']


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `ffcv argv...`."""
    code = main([str(a) for a in argv])
    return (code, *capsys.readouterr())


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


def test_verify_truncated_file(fixtures_dir, tmp_path, capsys):
    path = tmp_path / 'truncated.beton'
    path.write_bytes((fixtures_dir / 'images_raw.beton').read_bytes()[:3_000_000])
    code, out, err = run_cli(capsys, 'verify', '--no-progress', path)
    assert code == 2 and out == ''
    assert str(path) in err and 'allocation table' in err
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

def make_image_folder(root: Path, rng) -> list:
    """3 class folders (created unsorted) of PNG and JPEG files; returns [(pixels, label)] in file order."""
    expected = []
    for label, name in sorted(enumerate(['bird', 'cat', 'dog']), key=lambda item: item[1][::-1]):
        (root / name).mkdir(parents=True)
        for k, suffix in enumerate(['.png', '.JPG', '.png', '.jpeg']):
            image = Image.fromarray(photo_like(rng, 12 + 3 * k, 20 - 2 * k + label))
            path = root / name / f'{k:02d}{suffix}'
            image.save(path)
            expected.append((label, k, np.asarray(Image.open(path).convert('RGB'))))
        (root / name / 'notes.txt').write_text('not an image')
    return [(pixels, label) for label, _, pixels in sorted(expected, key=lambda item: item[:2])]


def test_convert_image_folder_raw(tmp_path, rng, capsys):
    expected = make_image_folder(tmp_path / 'train', rng)
    out_path = tmp_path / 'folder.beton'
    code, out, _ = run_cli(capsys, 'convert', tmp_path / 'train', out_path, '--num-workers', 2, '--chunksize', 5,
                           '--no-progress')
    assert code == 0 and out.startswith('Wrote 12 samples')
    reader = Reader(out_path)
    assert reader.num_samples == 12 and reader.field_names == ['image', 'label']
    for index, (pixels, label) in enumerate(expected):
        sample = reader.read_sample(index)
        assert sample['label'] == label
        np.testing.assert_array_equal(sample['image'], pixels)


def test_convert_npz_jpg_max_resolution_shuffled(tmp_path, rng, capsys):
    images = np.stack([photo_like(rng, 40, 64) for _ in range(9)])
    labels = np.arange(9) * 10
    np.savez(tmp_path / 'arrays.npz', pixels=images, targets=labels)
    out_path = tmp_path / 'arrays.beton'
    code, _, _ = run_cli(capsys, 'convert', tmp_path / 'arrays.npz', out_path, '--images-key', 'pixels',
                         '--labels-key', 'targets', '--write-mode', 'jpg', '--max-resolution', 32,
                         '--jpeg-quality', 95, '--shuffle', '--seed', 3, '--num-workers', 1, '--no-progress')
    assert code == 0
    summary = json.loads(run_cli(capsys, 'inspect', '--json', out_path)[1])
    assert summary['fields'][0]['stats']['jpg'] == 9
    order = np.random.default_rng(3).permutation(9)
    reader = Reader(out_path)
    for index in range(9):
        sample = reader.read_sample(index)
        assert sample['label'] == labels[order[index]]
        assert sample['image'].shape == (20, 32, 3)  # longer side 64 -> 32, aspect ratio kept
        source = images[order[index]].reshape(20, 2, 32, 2, 3).mean(axis=(1, 3))
        assert np.abs(sample['image'] - source).mean() < 6


def test_convert_npy_with_labels(tmp_path, rng, capsys):
    np.save(tmp_path / 'images.npy', rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8))
    np.save(tmp_path / 'labels.npy', np.array([3, 1, 4, 1]))
    out_path = tmp_path / 'npy.beton'
    code, _, _ = run_cli(capsys, 'convert', tmp_path / 'images.npy', out_path, '--labels', tmp_path / 'labels.npy',
                         '--num-workers', 1, '--no-progress', '--page-size', '4M')
    assert code == 0
    assert Reader(out_path).page_size == 4 << 20
    assert [Reader(out_path).read_sample(i)['label'] for i in range(4)] == [3, 1, 4, 1]


def make_bad_source(case: str, folder: Path) -> Path:
    """A conversion source that `ffcv convert` must refuse."""
    zeros = np.zeros((2, 4, 4, 3), np.uint8)
    if case == 'missing':
        return folder / 'nothing'
    if case == 'no images':
        (folder / 'cls').mkdir()
        (folder / 'cls' / 'a.txt').write_text('')
    elif case == 'npz keys':
        np.savez(folder / 'a.npz', images=zeros)
    elif case == 'length mismatch':
        np.savez(folder / 'a.npz', images=zeros, labels=np.arange(3))
    elif case == 'float images':
        np.savez(folder / 'a.npz', images=zeros.astype(np.float32), labels=np.arange(2))
    elif case == 'npy without labels':
        np.save(folder / 'a.npy', zeros)
        return folder / 'a.npy'
    return folder / 'a.npz' if (folder / 'a.npz').exists() else folder


@pytest.mark.parametrize('case, message', [
    ('missing', 'no such file or folder'), ('empty folder', 'no class sub-folders'),
    ('no images', 'no image files'), ('npz keys', "no array named 'labels'"),
    ('length mismatch', '2 images but 3 labels'), ('float images', 'images must be uint8'),
    ('npy without labels', 'needs --labels')])
def test_convert_errors(case, message, tmp_path, capsys):
    (tmp_path / 'src').mkdir()
    src = make_bad_source(case, tmp_path / 'src')
    code, out, err = run_cli(capsys, 'convert', src, tmp_path / 'out.beton', '--no-progress')
    assert code == 2 and out == ''
    assert err.startswith('ffcv convert: error: ') and message in err
    assert not (tmp_path / 'out.beton').exists()


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
