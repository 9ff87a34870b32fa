"""Bad files, on the FFCV-written fixtures: each fails with an exception naming the file (and the sample),
at open, at `ffcv verify` or when that sample is loaded; never a crash, a hang or silent wrong data.

(test_reader.py covers the same kinds of damage on one file written by us; test_fuzz.py generates many more.)
"""
import numpy as np
import pytest

from ffcv.tools.cli import main as ffcv_command
from ffcv.imaging.jpeg import JPEGDecodeError
from ffcv.fields import IntField, RGBImageField
from ffcv.fields.decoders import CenterCropRGBImageDecoder, SimpleRGBImageDecoder
from ffcv.loader import Loader
from ffcv.reader import CorruptFileError, Reader
from ffcv.transforms import ToTensor
from ffcv.types import HeaderType

from fuzz_corruptions import FIXTURES, layout
from helpers import write_and_read


def edited(tmp_path, data: bytes, name='bad.beton') -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def put(data: bytearray, at: int, value: int, nbytes: int = 8) -> bytearray:
    data[at:at + nbytes] = int(value % 2**(8 * nbytes)).to_bytes(nbytes, 'little')
    return data


def rejected(path: str, match=None) -> CorruptFileError:
    with pytest.raises(CorruptFileError, match=match) as info:
        Reader(path)
    assert path in str(info.value)
    return info.value


def load_all(path, **kwargs):
    return [tuple(np.array(v.numpy() if hasattr(v, 'numpy') else v) for v in batch)
            for batch in Loader(path, batch_size=8, num_workers=2, **kwargs)]


@pytest.mark.parametrize('name', FIXTURES)
def test_truncated_at_every_section_boundary_and_at_random(fixtures_dir, tmp_path, name):
    lay = layout(fixtures_dir, name)
    cuts = {point + delta for point in lay.section_boundaries() for delta in (-1, 0, 1)}
    cuts |= set(np.random.default_rng(len(name)).integers(0, len(lay.data), 12).tolist())
    for cut in sorted(c for c in cuts if 0 <= c < len(lay.data)):
        rejected(edited(tmp_path, lay.data[:cut]))


@pytest.mark.parametrize('section', ['header', 'descriptors', 'metadata', 'alloc_table'])
@pytest.mark.parametrize('fill', ['zeros', 'random'])
def test_zero_or_random_filled_sections(fixtures_dir, tmp_path, section, fill):
    for name in ('basic', 'images_proportion'):
        lay = layout(fixtures_dir, name)
        start, stop = lay.sections()[section]
        content = bytes(stop - start) if fill == 'zeros' else np.random.default_rng(stop).bytes(stop - start)
        rejected(edited(tmp_path, lay.data[:start] + content + lay.data[stop:]))


@pytest.mark.parametrize('size', [0, 1, 23, 24, 1065, 10_000, 3 << 20])
def test_random_bytes_of_any_size(tmp_path, size):
    rejected(edited(tmp_path, np.random.default_rng(size).bytes(size)))
    rejected(edited(tmp_path, bytes(size)))


@pytest.mark.parametrize('name', FIXTURES)
@pytest.mark.parametrize('field, delta', [('num_samples', 1), ('num_samples', 1000), ('num_fields', 1),
                                          ('num_fields', 7), ('num_samples', -1)])
def test_header_claiming_more_or_fewer_samples_or_fields(fixtures_dir, tmp_path, name, field, delta):
    data = bytearray(layout(fixtures_dir, name).data)
    offset, nbytes = HeaderType.fields[field][1], HeaderType.fields[field][0].itemsize
    put(data, offset, int.from_bytes(data[offset:offset + nbytes], 'little') + delta, nbytes)
    rejected(edited(tmp_path, bytes(data)))


@pytest.mark.parametrize('name', ['basic', 'images_jpg', 'images_raw'])
def test_allocation_entries_past_the_end_or_overlapping(fixtures_dir, tmp_path, name):
    lay = layout(fixtures_dir, name)
    table, size = lay.alloc_table_ptr, len(lay.data)
    entry = table + 24 * 3  # the fourth entry: sample_id @0, ptr @8, size @16
    ptr, length = (int.from_bytes(lay.data[entry + k:entry + k + 8], 'little') for k in (8, 16))
    edits = {'ptr past the end': (8, size + 10), 'ptr at the table': (8, table), 'size past the end': (16, size),
             'size wraps around': (16, 2**64 - ptr + 1), 'huge size': (16, 2**63), 'one byte longer': (16, length + 1),
             'shifted by one': (8, ptr + 1), 'ptr in the header': (8, 12), 'unknown sample': (0, lay.num_samples),
             'another sample': (0, (int.from_bytes(lay.data[entry:entry + 8], 'little') + 1) % lay.num_samples)}
    for what, (offset, value) in edits.items():
        if what == 'one byte longer' and ptr + length + 1 > table:
            continue
        error = rejected(edited(tmp_path, bytes(put(bytearray(lay.data), entry + offset, value))))
        assert 'sample' in str(error) or 'allocation' in str(error), what
    duplicate = bytearray(lay.data)
    duplicate[entry + 24:entry + 48] = duplicate[entry:entry + 24]
    rejected(edited(tmp_path, bytes(duplicate)))


@pytest.mark.parametrize('field, at, value', [
    ('label', 0, 0), ('value', 8, 0), ('array', 16, 2**64 - 1), ('array', 16, 4 << 20), ('array', 16, 12),
    ('blob', 24, 2**63), ('blob', 32, 301), ('meta', 40, 2**21 + 5), ('tensor', 56, 2**22)])
def test_metadata_pointers_out_of_range(fixtures_dir, tmp_path, field, at, value):
    """basic.beton rows: label @0, value @8, array ptr @16, blob ptr @24 size @32, meta ptr @40 size @48,
    tensor ptr @56. Scalars may hold anything; every pointer and size is checked against the table."""
    lay = layout(fixtures_dir, 'basic')
    data = put(bytearray(lay.data), lay.metadata_start + 5 * lay.row_size + at, value)
    path = edited(tmp_path, bytes(data))
    if field in ('label', 'value'):
        assert Reader(path).read_sample(5)[field] == 0
        return
    error = rejected(path, f"sample 5, field '{field}'")
    assert 'allocation' in str(error) or 'bytes' in str(error)


def jpeg_fixture_with(fixtures_dir, tmp_path, edit) -> tuple:
    lay = layout(fixtures_dir, 'images_jpg')
    reader = Reader(fixtures_dir / 'images_jpg.beton')
    data = bytearray(lay.data)
    edit(data, reader)
    return edited(tmp_path, bytes(data)), reader


CROPS = [lambda: CenterCropRGBImageDecoder((24, 24), 224 / 256),  # DCT-scaled decode
         lambda: CenterCropRGBImageDecoder((100, 100), 1.0, dct_scaling=False)]


@pytest.mark.parametrize('make_decoder', CROPS)
@pytest.mark.parametrize('os_cache', [True, False])
def test_corrupt_jpeg_opens_then_named_by_verify_and_at_load(fixtures_dir, tmp_path, capsys, make_decoder,
                                                            os_cache):
    def wipe(data, reader):  # entropy-coded data of sample 13 overwritten
        ptr = int(reader.metadata['f0'][13]['data_ptr'])
        data[ptr + 700:ptr + 900] = bytes(200)
    path, _ = jpeg_fixture_with(fixtures_dir, tmp_path, wipe)
    assert Reader(path).num_samples == 31  # structure intact: opens
    assert ffcv_command(['verify', '--no-progress', path]) == 1
    assert "sample 13, field 'image': JPEGDecodeError" in capsys.readouterr().out
    loader = Loader(path, batch_size=4, num_workers=2, os_cache=os_cache,
                    pipelines={'image': [make_decoder(), ToTensor()]})
    loaded = 0
    with pytest.raises(JPEGDecodeError) as info:
        for images, _ in loader:
            loaded += images.shape[0]
    assert loaded == 12  # batches 0-2 arrive, then the one holding sample 13 raises
    assert any('sample 13' in note for note in info.value.__notes__)


@pytest.mark.parametrize('make_decoder', CROPS)
@pytest.mark.parametrize('side, change', [('width', 2.0), ('height', 0.5), ('width', 1.01)])
def test_jpeg_whose_stored_size_disagrees(fixtures_dir, tmp_path, capsys, make_decoder, side, change):
    """Regression: with DCT scaling, a JPEG twice (or half) the stored size used to load silently."""
    def resize(data, reader):
        at = reader.metadata_start + 20 * reader.metadata_type.itemsize + (1 if side == 'width' else 3)
        stored = int.from_bytes(data[at:at + 2], 'little')
        put(data, at, max(int(stored * change), stored + 1 if change > 1 else 1), 2)
    path, _ = jpeg_fixture_with(fixtures_dir, tmp_path, resize)
    Reader(path)  # nothing to check at open: JPEG sizes live in the JPEG
    assert ffcv_command(['verify', '--no-progress', path]) == 1
    assert "sample 20, field 'image'" in capsys.readouterr().out
    with pytest.raises(JPEGDecodeError, match='metadata says') as info:
        load_all(path, pipelines={'image': [make_decoder(), ToTensor()]})
    assert any('sample 20' in note for note in info.value.__notes__)


def test_raw_image_whose_stored_size_disagrees(fixtures_dir, tmp_path):
    lay = layout(fixtures_dir, 'cifar_like')
    for offset, value in ((1, 31), (3, 33), (1, 16), (3, 64)):
        data = put(bytearray(lay.data), lay.metadata_start + 9 * lay.row_size + offset, value, 2)
        rejected(edited(tmp_path, bytes(data)), "sample 9, field 'image'.*bytes")


def test_allocation_of_another_sample_with_the_process_cache(tmp_beton, tmp_path):
    """Regression: a data pointer whose allocation-table entry names another sample made os_cache=False
    read a page it had not loaded (silently wrong pixels); the Reader now rejects it."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(32)]  # 4 pages of 2 MiB
    reader = write_and_read(tmp_beton(), {'image': RGBImageField(), 'label': IntField()},
                            [(image, i) for i, image in enumerate(images)], page_size=1 << 21)
    data = bytearray(open(reader.file_name, 'rb').read())
    first, last = (reader.alloc_table_ptr + 24 * int(np.flatnonzero(reader.alloc_table['sample_id'] == s)[0])
                   for s in (0, 31))
    put(put(data, first, 31), last, 0)  # swap the owners of sample 0's and sample 31's data
    path = edited(tmp_path, bytes(data))
    rejected(path, "sample 0, field 'image': data pointer .* allocation of sample 31")
    for os_cache in (True, False):  # the pristine file, loaded both ways, is exact
        loaded = np.concatenate([batch[0] for batch in load_all(reader.file_name, os_cache=os_cache,
                                                                pipelines={'image': [SimpleRGBImageDecoder()]})])
        np.testing.assert_array_equal(loaded, np.stack(images))


@pytest.mark.parametrize('type_id, error, message', [(9, CorruptFileError, 'unknown type id 9'),
                                                     (255, ValueError, r"custom type.*custom_fields=\{'label'")])
def test_field_of_unknown_type(fixtures_dir, tmp_path, type_id, error, message):
    lay = layout(fixtures_dir, 'cifar_like')
    data = bytearray(lay.data)
    data[24 + 1041] = type_id  # the label's descriptor
    path = edited(tmp_path, bytes(data))
    with pytest.raises(error, match=message) as info:
        Reader(path)
    assert path in str(info.value)


@pytest.mark.parametrize('os_cache', [True, False])
def test_file_replaced_or_modified_under_an_open_loader(tmp_beton, os_cache):
    """Regression: with os_cache=False an epoch after the path was replaced read the new file's pages with
    the old metadata (silently wrong). Now every epoch reads the file that was opened; a file modified in
    place is refused at the next epoch."""
    rng = np.random.default_rng(1)
    fields = {'image': RGBImageField(), 'label': IntField()}
    old, new = ([(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), i) for i in range(24)] for _ in range(2))
    path = write_and_read(tmp_beton(), fields, old).file_name
    loader = Loader(path, batch_size=8, num_workers=2, os_cache=os_cache,
                    pipelines={'image': [SimpleRGBImageDecoder()]})
    expected = np.stack([image for image, _ in old])
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate([images for images, _ in loader]), expected)
        write_and_read(path, fields, new)  # DatasetWriter replaces the path (a new file)
    loader = Loader(path, batch_size=8, num_workers=2, os_cache=os_cache)
    next(iter(loader))
    with open(path, 'r+b') as handle:  # modified in place: the loader must not read it as the file it opened
        handle.seek(0, 2)
        handle.write(b'\0' * 24)
    with pytest.raises(CorruptFileError, match='modified in place'):
        iter(loader)
