"""Seeded corruptions of the FFCV-written fixture files (used by the fuzz runner, see test_fuzz.py).

`corrupt(seed, fixtures_dir)` is a pure function of the seed: it picks a fixture and 1-3 mutations (byte/bit
flips aimed at a section, splices, insertions, deletions, truncations, zero/random fills, edits of the header,
allocation table, metadata, image sizes, field descriptors, JPEG bytes) and returns the bytes and a description.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from ffcv.reader import Reader
from ffcv.types import ALLOC_TABLE_TYPE, FieldDescType, HeaderType, column_name

FIXTURES = ['basic', 'cifar_like', 'images_jpg', 'images_proportion', 'images_raw', 'images_smart']
HEADER_FIELDS = {name: (HeaderType.fields[name][1], HeaderType.fields[name][0].itemsize) for name in HeaderType.names}
ALLOC_FIELDS = {name: ALLOC_TABLE_TYPE.fields[name][1] for name in ALLOC_TABLE_TYPE.names}


@dataclass
class Layout:
    """Where each section of a pristine fixture lies (from its Reader)."""
    data: bytes
    num_fields: int
    num_samples: int
    page_size: int
    metadata_start: int
    metadata_end: int
    row_size: int
    alloc_table_ptr: int
    blobs: List[Tuple[int, int]]         # (ptr, size) of every allocation, sorted; then those of JPEGs
    jpeg_blobs: List[Tuple[int, int]]
    image_column_offset: int             # offset of the image struct in a row (-1: no image field)

    def sections(self) -> dict:
        end = len(self.data)
        blob_lo = self.blobs[0][0] if self.blobs else self.metadata_end
        blob_hi = self.blobs[-1][0] + self.blobs[-1][1] if self.blobs else self.metadata_end
        return {'header': (0, HeaderType.itemsize), 'descriptors': (HeaderType.itemsize, self.metadata_start),
                'metadata': (self.metadata_start, self.metadata_end), 'data': (blob_lo, max(blob_hi, blob_lo + 1)),
                'alloc_table': (self.alloc_table_ptr, end), 'anywhere': (0, end)}

    def section_boundaries(self) -> List[int]:
        """Where each section starts and ends (first and last few allocation-table entries included)."""
        table = [self.alloc_table_ptr + 24 * k for k in range(len(self.blobs) + 1)]
        points = {0, HeaderType.itemsize, self.metadata_start, self.metadata_end, len(self.data),
                  -(-self.metadata_end // self.page_size) * self.page_size, *table[:3], *table[-3:]}
        points.update(HeaderType.itemsize + FieldDescType.itemsize * k for k in range(self.num_fields))
        if self.blobs:
            points.update((self.blobs[0][0], self.blobs[-1][0] + self.blobs[-1][1]))
        return sorted(points)

    def boundaries(self) -> List[int]:
        """Section boundaries plus both ends of every allocation and allocation-table entry."""
        points = set(self.section_boundaries()) | {p for ptr, size in self.blobs for p in (ptr, ptr + size)}
        return sorted(points | {self.alloc_table_ptr + 24 * k for k in range(len(self.blobs) + 1)})


_layouts: dict = {}


def layout(fixtures_dir, name: str) -> Layout:
    key = (str(fixtures_dir), name)
    if key not in _layouts:
        path = Path(fixtures_dir) / f'{name}.beton'
        reader = Reader(path)
        blobs = [(int(p), int(s)) for p, s in zip(reader.sorted_ptrs, reader.sorted_sizes)]
        jpeg, image_offset = [], -1
        if 'image' in reader.field_names:
            index = reader.field_names.index('image')
            image_offset = reader.metadata_type.fields[column_name(index)][1]
            column, sizes = reader.column(index), dict(blobs)
            jpeg = [(int(p), sizes[int(p)]) for p, m in zip(column['data_ptr'], column['mode']) if m == 0]
        _layouts[key] = Layout(path.read_bytes(), reader.num_fields, reader.num_samples, reader.page_size,
                               reader.metadata_start, reader.metadata_end, reader.metadata_type.itemsize,
                               reader.alloc_table_ptr, blobs, jpeg, image_offset)
    return _layouts[key]


def _interesting(rng, current: int, lay: Layout) -> int:
    """A value likely to expose off-by-one and overflow bugs, as an unsigned 64-bit int."""
    choices = [0, 1, current + 1, current - 1, current + 24, current - 24, 2**31, 2**32, 2**63, 2**64 - 1,
               2**16 - 1, len(lay.data), len(lay.data) - 1, len(lay.data) + 1, lay.page_size, lay.alloc_table_ptr,
               lay.metadata_end, int(rng.integers(0, 2**63))]
    if lay.blobs:
        ptr, size = lay.blobs[int(rng.integers(len(lay.blobs)))]
        choices += [ptr, ptr + 1, ptr + size, size]
    return choices[int(rng.integers(len(choices)))] % 2**64


def _put(data: bytearray, at: int, value: int, nbytes: int) -> None:
    data[at:at + nbytes] = (value % 2**(8 * nbytes)).to_bytes(nbytes, 'little')


def _get(data: bytearray, at: int, nbytes: int) -> int:
    return int.from_bytes(data[at:at + nbytes], 'little')


def _region(data, lay, rng) -> Tuple[str, int, int]:
    """A section of the pristine layout, clipped to the (possibly already shortened) data."""
    region, (lo, hi) = list(lay.sections().items())[int(rng.integers(6))]
    hi = min(max(hi, lo + 1), len(data))
    return region, min(lo, hi - 1), hi


def _flip(data, lay, rng, bits: bool) -> str:
    region, lo, hi = _region(data, lay, rng)
    count = 1 if bits else int(rng.integers(1, 9))
    where = sorted(int(x) for x in rng.integers(lo, hi, count))
    for at in where:
        data[at] ^= (1 << int(rng.integers(8))) if bits else int(rng.integers(1, 256))
    return f"{'bit' if bits else 'byte'} flip in {region} at {where}"


def _header(data, lay, rng) -> str:
    name = list(HEADER_FIELDS)[int(rng.integers(len(HEADER_FIELDS)))]
    offset, nbytes = HEADER_FIELDS[name]
    value = _interesting(rng, _get(data, offset, nbytes), lay)
    _put(data, offset, value, nbytes)
    return f'header {name} := {value % 2**(8 * nbytes)}'


def _alloc(data, lay, rng) -> str:
    if not (count := len(lay.blobs)):
        return _header(data, lay, rng)
    entry = lay.alloc_table_ptr + int(rng.integers(count)) * ALLOC_TABLE_TYPE.itemsize
    kind = int(rng.integers(4))
    if kind == 3 and count > 1:  # copy another entry over this one (duplicate / overlap)
        other = lay.alloc_table_ptr + int(rng.integers(count)) * ALLOC_TABLE_TYPE.itemsize
        data[entry:entry + 24] = data[other:other + 24]
        return f'alloc entry at {entry} := copy of entry at {other}'
    name = list(ALLOC_FIELDS)[kind % 3]
    value = _interesting(rng, _get(data, entry + ALLOC_FIELDS[name], 8), lay)
    _put(data, entry + ALLOC_FIELDS[name], value, 8)
    return f'alloc entry at {entry}: {name} := {value}'


def _metadata(data, lay, rng) -> str:
    row = lay.metadata_start + int(rng.integers(max(lay.num_samples, 1))) * lay.row_size
    if lay.image_column_offset >= 0 and rng.random() < 0.6:
        at = row + lay.image_column_offset
        name, offset, nbytes = [('mode', 0, 1), ('width', 1, 2), ('height', 3, 2), ('data_ptr', 5, 8)][
            int(rng.integers(4))]
        value = _interesting(rng, _get(data, at + offset, nbytes), lay)
        _put(data, at + offset, value, nbytes)
        return f'metadata row at {row}: image {name} := {value % 2**(8 * nbytes)}'
    at = row + 8 * int(rng.integers(max(lay.row_size // 8, 1)))
    value = _interesting(rng, _get(data, at, 8), lay)
    _put(data, at, value, 8)
    return f'metadata word at {at} := {value}'


def _image_size(data, lay, rng) -> str:
    """Stored width or height disagreeing a little (or 2x) with the image's bytes."""
    if lay.image_column_offset < 0:
        return _metadata(data, lay, rng)
    row = lay.metadata_start + int(rng.integers(lay.num_samples)) * lay.row_size
    side, offset = [('width', 1), ('height', 3)][int(rng.integers(2))]
    old = _get(data, row + lay.image_column_offset + offset, 2)
    new = [old + 1, old - 1, old + 8, old * 2, old // 2, old + 16][int(rng.integers(6))]
    _put(data, row + lay.image_column_offset + offset, new, 2)
    return f'metadata row at {row}: image {side} {old} := {new % 2**16}'


def _descriptor(data, lay, rng) -> str:
    base = HeaderType.itemsize + int(rng.integers(lay.num_fields)) * FieldDescType.itemsize
    kind = int(rng.integers(3))
    if base + FieldDescType.itemsize > len(data):
        return _truncate(data, lay, rng)
    if kind == 0:
        value = [0, 1, 2, 3, 4, 5, 6, 7, 255, int(rng.integers(256))][int(rng.integers(10))]
        data[base] = value
        return f'descriptor at {base}: type_id := {value}'
    if kind == 1:  # name
        data[base + 1:base + 17] = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
        return f'descriptor at {base}: random name'
    at = base + 17 + int(rng.integers(0, 300))  # arguments (NDArray shape / dtype JSON live here)
    data[at] = int(rng.integers(256))
    return f'descriptor at {base}: argument byte {at - base - 17} := {data[at]}'


def _splice(data, lay, rng) -> str:
    size = max(len(data), 1)  # an earlier corruption of the same case may have emptied the file
    length = int(rng.integers(1, 4097))
    source, target = (int(x) for x in rng.integers(0, size, 2))
    kind = int(rng.integers(3))
    if kind == 0:
        chunk = bytes(data[source:source + length])
        data[target:target + len(chunk)] = chunk
        return f'copy {len(chunk)} bytes from {source} to {target}'
    if kind == 1:
        data[target:target] = bytes(rng.integers(0, 256, length, dtype=np.uint8))
        return f'insert {length} random bytes at {target}'
    del data[target:target + length]
    return f'delete {length} bytes at {target}'


def _truncate(data, lay, rng) -> str:
    if rng.random() < 0.5:
        points = lay.boundaries()
        cut = points[int(rng.integers(len(points)))] + int(rng.integers(-2, 3))
    else:
        cut = int(rng.integers(0, len(data)))
    cut = min(max(cut, 0), len(data) - 1)
    del data[cut:]
    return f'truncate at {cut}'


def _fill(data, lay, rng) -> str:
    region, lo, hi = _region(data, lay, rng)
    if rng.random() < 0.2:
        start, stop = lo, hi
    else:
        start = int(rng.integers(lo, hi))
        stop = min(hi, start + int(rng.integers(1, 2049)))
    zeros = rng.random() < 0.5
    data[start:stop] = bytes(stop - start) if zeros else bytes(rng.integers(0, 256, stop - start, dtype=np.uint8))
    return f"{'zero' if zeros else 'random'} fill of {region} [{start}, {stop})"


def _jpeg(data, lay, rng) -> str:
    if not lay.jpeg_blobs:
        return _flip(data, lay, rng, bits=False)
    ptr, size = lay.jpeg_blobs[int(rng.integers(len(lay.jpeg_blobs)))]
    start = ptr + int(rng.integers(0, min(size, 600)) if rng.random() < 0.5 else rng.integers(0, size))
    stop = min(ptr + size, start + int(rng.integers(1, 64)))
    data[start:stop] = bytes(rng.integers(0, 256, stop - start, dtype=np.uint8))
    return f'JPEG at {ptr} ({size} B): random bytes [{start - ptr}, {stop - ptr})'


MUTATIONS = [('flip', lambda d, lay, r: _flip(d, lay, r, False)), ('bitflip', lambda d, lay, r: _flip(d, lay, r, True)),
             ('header', _header), ('alloc', _alloc), ('metadata', _metadata), ('descriptor', _descriptor),
             ('splice', _splice), ('truncate', _truncate), ('fill', _fill), ('jpeg', _jpeg),
             ('image_size', _image_size)]


def corrupt(seed: int, fixtures_dir) -> Tuple[str, bytes, str]:
    """(fixture name, corrupted bytes, description) for `seed`; one to three mutations."""
    rng = np.random.default_rng([0xBE70, seed])
    name = FIXTURES[seed % len(FIXTURES)]
    lay = layout(fixtures_dir, name)
    data = bytearray(lay.data)
    done = []
    for _ in range(1 if rng.random() < 0.7 else int(rng.integers(2, 4))):
        kind, mutate = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        done.append(f'{kind}: {mutate(data, lay, rng)}')
    return name, bytes(data), '; '.join(done)
