"""`ffcv convert`: image folders and arrays to .beton, unreadable images, existing outputs, bad sources."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import photo_like
from ffcv.reader import Reader

from helpers import run_cli


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


def test_convert_unreadable_images(tmp_path, rng, capsys):
    expected = make_image_folder(tmp_path / 'train', rng)
    truncated, garbage = tmp_path / 'train' / 'cat' / '01.JPG', tmp_path / 'train' / 'dog' / '02.png'
    truncated.write_bytes(truncated.read_bytes()[:300])
    garbage.write_text('not an image')
    out_path = tmp_path / 'folder.beton'
    code, out, err = run_cli(capsys, 'convert', tmp_path / 'train', out_path, '--num-workers', 2, '--no-progress')
    assert code == 2 and out == '' and not out_path.exists()
    assert f'{truncated}: OSError: ' in err and '--skip-bad' in err  # stops at the first, names it
    code, out, _ = run_cli(capsys, 'convert', tmp_path / 'train', out_path, '--skip-bad', '--num-workers', 2,
                           '--chunksize', 3, '--no-progress')
    assert code == 0 and out.startswith('Wrote 10 samples')
    heading, first, second = out.splitlines()[1:]
    assert heading == 'Skipped 2 unreadable images (--skip-bad):' and first.startswith(f'  {truncated}: OSError: ')
    assert second == f'  {garbage}: UnidentifiedImageError: cannot identify image file'  # its path named once
    reader = Reader(out_path)
    readable = [sample for index, sample in enumerate(expected) if index not in (5, 10)]  # cat/01, dog/02
    assert reader.num_samples == len(readable)
    for index, (pixels, label) in enumerate(readable):
        sample = reader.read_sample(index)
        assert sample['label'] == label
        np.testing.assert_array_equal(sample['image'], pixels)


def test_convert_keeps_an_existing_output(tmp_path, capsys):
    np.savez(tmp_path / 'a.npz', images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.arange(2))
    out_path = tmp_path / 'out.beton'
    out_path.write_bytes(b'precious')
    code, out, err = run_cli(capsys, 'convert', tmp_path / 'a.npz', out_path, '--no-progress')
    assert code == 2 and out == ''
    assert err == f'ffcv convert: error: {out_path} already exists (add --overwrite to replace it)\n'
    assert out_path.read_bytes() == b'precious'
    code, _, _ = run_cli(capsys, 'convert', tmp_path / 'a.npz', out_path, '--no-progress', '--overwrite')
    assert code == 0 and Reader(out_path).num_samples == 2


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
    assert err.count(str(src)) == 1  # named once
    assert not (tmp_path / 'out.beton').exists()
