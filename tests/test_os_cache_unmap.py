"""The OS-cache manager unmaps the file after batches whose samples are slow to build (JPEG decoding), and the
image decoders read their bytes with preadv instead of through the map, so a process maps only what its
batches in flight touch instead of every page of the file it has read; the data stays in the OS page cache
and reads the same."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ffcv.fields import _decoding, image_decoders
from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.memory_managers import OSCacheManager
from ffcv.memory_managers import os_cache
from ffcv.pipeline.storage import read_blob
from ffcv.reader import Reader
from ffcv.transforms import ToTensor

from helpers import collect, same_batches, write_blob_file

pytestmark = pytest.mark.skipif(not os.path.exists('/proc/self/smaps'), reason='reads /proc/self/smaps (Linux)')


def mapped_kb(path, memory=None) -> int:
    """KiB of `path` mapped into this process (Rss in /proc/self/smaps): of the mapping holding array `memory`
    when given, else of all its mappings (earlier tests' managers may still hold some)."""
    path, total, current = os.path.realpath(path), 0, None
    address = None if memory is None else memory.ctypes.data
    with open('/proc/self/smaps') as handle:
        for line in handle:
            parts = line.split()
            if '-' in parts[0] and not parts[0].endswith(':'):
                low, high = (int(x, 16) for x in parts[0].split('-'))
                current = len(parts) >= 6 and parts[-1] == path and (address is None or low <= address < high)
            elif parts[0] == 'Rss:' and current:
                total += int(parts[1])
    return total


def data_kb(reader) -> int:
    return int(reader.alloc_table['size'].sum()) // 1024


@pytest.fixture(scope='module')
def blobs(tmp_path_factory):
    """300 samples of 20-60 KB (about 12 MB)."""
    return write_blob_file(tmp_path_factory.mktemp('unmap') / 'blobs.beton', 300, (20_000, 60_000), 4)


def test_unmap_drops_the_mapping_and_the_data_reads_the_same(blobs):
    reader = Reader(blobs)
    manager = OSCacheManager(reader)
    state = manager.state
    ptrs = reader.metadata['f0']['ptr']
    before = [read_blob(ptrs[i], state).copy() for i in range(reader.num_samples)]
    assert mapped_kb(blobs, state[0]) > data_kb(reader) * 0.9  # every page read is mapped
    manager.unmap()
    assert mapped_kb(blobs, state[0]) < 64
    after = [read_blob(ptrs[i], state) for i in range(reader.num_samples)]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize('seconds_per_sample, unmapped', [(0.0, True), (float('inf'), False)])
def test_a_batch_is_followed_by_unmap_only_when_slow_enough(blobs, monkeypatch, seconds_per_sample, unmapped):
    monkeypatch.setattr(os_cache, 'UNMAP_MIN_SECONDS_PER_SAMPLE', seconds_per_sample)
    reader = Reader(blobs)
    manager = OSCacheManager(reader)
    batches = [np.arange(i, min(i + 50, reader.num_samples)) for i in range(0, reader.num_samples, 50)]
    context = manager.schedule_epoch(batches)
    ptrs = reader.metadata['f0']['ptr']
    for b, batch in enumerate(batches):
        context.start_batch(b)
        for i in batch:
            read_blob(ptrs[i], context.state).sum()
        context.end_batch(b)
    mapped = mapped_kb(blobs, context.state[0])
    assert (mapped < 64) if unmapped else (mapped > data_kb(reader) * 0.9), mapped


@pytest.fixture(scope='module')
def photos(tmp_path_factory) -> str:
    """400 photo-like JPEGs (300x400, noisy: ~80 KB each), labels i % 10."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:300, 0:400]
    base = np.stack([(xs * 255 // 400), (ys * 255 // 300), ((xs + ys) % 256)], -1).astype(np.uint8)

    class Photos:
        def __len__(self):
            return 400

        def __getitem__(self, i):
            noise = rng.integers(0, 40, base.shape, dtype=np.uint8)
            return np.roll(base, i * 7, axis=1) // 2 + noise, i % 10

    path = str(tmp_path_factory.mktemp('unmap_photos') / 'photos.beton')
    DatasetWriter(path, {'image': RGBImageField(write_mode='jpg', jpeg_quality=90), 'label': IntField()},
                  num_workers=1).from_indexed_dataset(Photos())
    return path


def photo_loader(path, **kwargs):
    kwargs = {'batch_size': 32, 'num_workers': 2, 'order': OrderOption.RANDOM, 'seed': 3, **kwargs}
    return Loader(path, os_cache=True, pipelines={'image': [RandomResizedCropRGBImageDecoder((64, 64)), ToTensor()],
                                                  'label': [IntDecoder(), ToTensor()]}, **kwargs)


def read_through_the_map(patch):
    """Image decoders read their bytes from the file's map (as before `BlobReads`), which maps their pages."""
    patch.setattr(_decoding.BlobReads, 'read', lambda self, start, size: self.memory[start:start + size])


def test_a_jpeg_epoch_leaves_little_of_the_file_mapped(photos):
    """RANDOM order over 400 photo-like JPEGs: after the epoch little of the file is mapped, even with the
    manager's unmapping off (the decoders never map what they read), and the batches are those of a run that
    reads through the map (which then maps most of the file)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os_cache, 'UNMAP_MIN_SECONDS_PER_SAMPLE', float('inf'))
        loader = photo_loader(photos)
        batches = collect(loader)
        assert mapped_kb(photos, loader.memory_manager.state[0]) < os.path.getsize(photos) // 1024 // 8
        read_through_the_map(patch)
        mapped_loader = photo_loader(photos)
        assert same_batches(batches, collect(mapped_loader))
        assert mapped_kb(photos, mapped_loader.memory_manager.state[0]) > os.path.getsize(photos) // 1024 // 2


@pytest.mark.parametrize('through_the_map', [False, True])
def test_the_decoder_maps_nothing_it_reads(photos, monkeypatch, through_the_map):
    """One batch of the whole file, the manager's unmapping off: the decoder's reads never map the file
    (read through the map instead, all of it is mapped by the batch's end), and it decodes from a copy."""
    monkeypatch.setattr(os_cache, 'UNMAP_MIN_SECONDS_PER_SAMPLE', float('inf'))
    if through_the_map:
        read_through_the_map(monkeypatch)
    seen, blobs = [], []
    crop = image_decoders.jpeg_crop
    loader = photo_loader(photos, batch_size=400, num_workers=1, order=OrderOption.SEQUENTIAL)
    memory = loader.memory_manager.state[0]

    def watched_crop(blob, *args, **kwargs):
        blobs.append(np.shares_memory(blob, memory))
        if len(blobs) % 10 == 0:  # reading smaps takes tens of ms
            seen.append(mapped_kb(photos, memory))  # of this loader's map (an earlier test's may still be open)
        return crop(blob, *args, **kwargs)

    monkeypatch.setattr(image_decoders, 'jpeg_crop', watched_crop)
    (images, labels), = collect(loader)
    assert len(blobs) == 400 and images.shape == (400, 64, 64, 3)
    file_kb = os.path.getsize(photos) // 1024
    if through_the_map:
        assert all(blobs) and seen[-1] > file_kb // 3, (seen[-1], file_kb)  # (window decoding skips rows)
    else:
        assert not any(blobs) and max(seen) < 64, (max(seen), file_kb)


def test_blob_reads_copy_from_a_file_map_and_slice_other_memory(blobs):
    """`BlobReads` on the OS cache's map: the bytes of every sample, copied (the map stays unmapped), one read
    per sample when they lie far apart, their span in one read when close; a read past the end of the file
    gives what the map holds; on other memory (the process cache's frames):
    views of it."""
    reader = Reader(blobs)
    state = OSCacheManager(reader).state
    ptrs = reader.metadata['f0']['ptr']
    memory, starts, sizes = _decoding.batch_blobs(ptrs, state)
    reads = _decoding.BlobReads(memory, starts[::3], sizes[::3])  # far apart: one read per sample
    assert reads.span_start is None and reads.buffer.size == sizes[::3].max()
    with open(blobs, 'rb') as handle:
        file = handle.read()
    for i in range(0, reader.num_samples, 3):
        data = reads.read(int(starts[i]), int(sizes[i]))
        assert not np.shares_memory(data, memory)
        assert data.tobytes() == file[int(starts[i]):int(starts[i] + sizes[i])]
    assert mapped_kb(blobs, memory) < 64
    span = _decoding.BlobReads(memory, starts[10:20], sizes[10:20])  # neighbours: their span in one read
    assert span.span_start == starts[10] and span.buffer.size == int(starts[19] + sizes[19] - starts[10])
    for i in range(10, 20):
        data = span.read(int(starts[i]), int(sizes[i]))
        assert data.tobytes() == file[int(starts[i]):int(starts[i] + sizes[i])]
    assert mapped_kb(blobs, memory) < 64
    end = memory.size
    assert np.array_equal(reads.read(end - 10, 10), memory[end - 10:])  # the whole read: copied
    assert reads.read(end - 10, 20).size == 10  # past the end: the map's 10 bytes, as a slice would give

    frames = np.frombuffer(bytearray(b'\x07' * 2**20), np.uint8)
    reads = _decoding.BlobReads(frames, np.array([4096]), np.array([100], np.uint64))
    assert reads.fd is None and reads.buffer is None
    data = reads.read(4096, 100)
    assert np.shares_memory(data, frames) and data.size == 100 and (data == 7).all()
