"""`Reader`: opens a `.beton` file and validates everything in it before anything is decoded.

Every structure is checked against the file size and against the others (header, field descriptors,
metadata, allocation table, the pointers stored in the metadata), so a truncated or corrupt file raises
`CorruptFileError` naming the file and the problem instead of crashing or returning garbage later.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, Mapping, Optional, Tuple, Type, Union

import numpy as np

from .fields.base import Field
from .remote.options import is_url
from .types import (ALLOC_TABLE_TYPE, CURRENT_VERSION, CUSTOM_TYPE_ID, MAX_PAGE_SIZE, FieldDescType, HeaderType,
                    column_name, get_metadata_type, resolve_handler_class)
from .utils import decode_null_terminated_string, is_power_of_2

if TYPE_CHECKING:
    from .remote.source import RemoteFile

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from .types import get_handlers  # noqa: F401

__all__ = ['Reader', 'CorruptFileError']

_REMOTE_PREFIX_BYTES = 1 << 20  # first request of a remote file: header, field table and usually the metadata


class CorruptFileError(ValueError):
    """The file is not a valid `.beton` file (truncated, corrupt, or not one at all)."""

    def __init__(self, fname: str, problem: str):
        super().__init__(f'{fname}: {problem}')
        self.fname = fname
        self.problem = problem


class Reader:
    """Parsed and validated contents of a `.beton` file (everything but the heap data).

    Parameters
    ----------
    fname : str or RemoteFile
        Path of the file, or any fsspec URL (``s3://bucket/key``, ``https://host/path``; needs the
        ``remote`` extra), or an opened `ffcv.remote.RemoteFile`. A remote file is parsed from a few
        ranged requests (header and field table, metadata, allocation table).
    custom_handlers : Mapping[str, Type[Field]]
        Field class to read a column with, by field name (required for custom fields, type id 255).
    remote : RemoteOptions or dict, optional
        How a URL is read (timeouts, retries, storage_options); ignored for local paths.

    Attributes
    ----------
    num_samples, page_size, num_fields : int
    page_shift : int, log2 of page_size (file page of an offset: ``offset >> page_shift``)
    header : numpy record (`HeaderType`)
    field_descriptors : numpy array (`FieldDescType`)
    field_names : list of str
    handlers : dict of name -> Field instance
    metadata_type : numpy dtype of a metadata row (one member per field: `column`)
    metadata : numpy array of num_samples rows (read-only)
    alloc_table : numpy array of `ALLOC_TABLE_TYPE` entries, as stored (read-only)
    data_start : int, file offset of the first data page
    remote : RemoteFile or None, the object a URL was opened as (its ``stats`` count requests and retries)
    """

    def __init__(self, fname: Union[str, 'RemoteFile'], custom_handlers: Optional[Mapping[str, Type[Field]]] = None,
                 remote=None):
        from .remote.source import RemoteFile
        self.remote: Optional[RemoteFile] = None
        if isinstance(fname, RemoteFile):
            self.remote, fname = fname, fname.url
        elif is_url(fname):
            self.remote = RemoteFile(fname, remote)
        self._fname = os.fspath(fname)
        self.custom_handlers = dict(custom_handlers or {})
        for name, cls in self.custom_handlers.items():
            if not (isinstance(cls, type) and issubclass(cls, Field)):
                raise TypeError(f"custom field '{name}': expected a Field subclass (the class, not an instance), "
                                f'got {cls!r}')
        self._mmap = None
        self._sample_pages = None
        self._prefix = b''          # remote: the first bytes of the file, read in one request
        self._page_memo = (-1, b'')  # remote: the last page `read` fetched
        if self.remote is not None:
            self.file_stat = None
            self.file_size = self.remote.size
            self._prefix = self.remote.read(0, min(self.file_size, _REMOTE_PREFIX_BYTES))
        else:
            try:
                self.file_stat = os.stat(self._fname)  # memory managers check that they read this very file
            except OSError as exc:
                raise FileNotFoundError(f'{self._fname}: cannot open ({exc.strerror})') from None
            self.file_size = self.file_stat.st_size
            if os.path.isdir(self._fname):
                raise IsADirectoryError(f'{self._fname}: is a directory, not a .beton file')
        self.read_header()
        self.read_field_descriptors()
        self.read_metadata()
        self.read_allocation_table()
        self._check_pointers()

    @property
    def file_name(self) -> str:
        return self._fname

    def _fail(self, problem: str):
        raise CorruptFileError(self._fname, problem)

    def _load(self, dtype, count: int, offset: int) -> np.ndarray:
        """`count` items of `dtype` at `offset` (a read-only array), from the file or by a ranged request."""
        dtype = np.dtype(dtype)
        if self.remote is None:
            array = np.fromfile(self._fname, dtype=dtype, count=count, offset=offset)
        else:
            end = offset + count * dtype.itemsize
            data = self._prefix if end <= len(self._prefix) else self.remote.read(offset, end - offset)
            base = offset if end <= len(self._prefix) else 0
            array = np.frombuffer(data, dtype=dtype, count=count, offset=base).copy()
        array.setflags(write=False)
        return array

    # -- parsing, each step validated --

    def read_header(self) -> None:
        """Read and validate the header (a step of `__init__`; FFCV's name for it)."""
        if self.file_size < HeaderType.itemsize:
            self._fail(f'only {self.file_size} bytes, smaller than the {HeaderType.itemsize}-byte header '
                       '(not a .beton file, or truncated)')
        header = self._load(HeaderType, 1, 0)[0]
        if int(header['version']) != CURRENT_VERSION:
            self._fail(f"format version {int(header['version'])}, expected {CURRENT_VERSION} "
                       '(not a .beton file, or written by an incompatible version)')
        page_size = int(header['page_size'])
        if not is_power_of_2(page_size) or page_size >= MAX_PAGE_SIZE:
            self._fail(f'page size {page_size} is not a power of two below 4 GiB')
        self.header = header
        self.num_samples = int(header['num_samples'])
        self.page_size = page_size
        self.page_shift = page_size.bit_length() - 1
        self.num_fields = int(header['num_fields'])
        self.alloc_table_ptr = int(header['alloc_table_ptr'])
        if self.num_fields == 0:
            self._fail('header says the file has no fields')

    def read_field_descriptors(self) -> None:
        """Read and validate the field descriptors, and build the handlers (a step of `__init__`)."""
        end = HeaderType.itemsize + self.num_fields * FieldDescType.itemsize
        if end > self.file_size:
            self._fail(f'header announces {self.num_fields} fields, whose descriptors would end at byte '
                       f'{end}, past the end of the file ({self.file_size} bytes): truncated or corrupt')
        descriptors = self._load(FieldDescType, self.num_fields, HeaderType.itemsize)
        names = [decode_null_terminated_string(d['name']) for d in descriptors]
        if len(set(names)) != len(names):
            self._fail(f'duplicate field names {names}')
        handlers: Dict[str, Field] = {}
        for name, descriptor in zip(names, descriptors):
            try:
                cls = resolve_handler_class(int(descriptor['type_id']), name, self.custom_handlers)
            except ValueError as exc:
                if int(descriptor['type_id']) != CUSTOM_TYPE_ID:  # no writer produces other ids
                    self._fail(f'{exc} (corrupt, or not a .beton file)')
                raise ValueError(f'{self._fname}: {exc}') from None  # a custom field: the caller must help
            try:
                handlers[name] = cls.from_binary(descriptor['arguments'])
            except Exception as exc:
                self._fail(f"arguments of field '{name}' ({cls.__name__}) are unreadable: {exc}")
        self.field_descriptors = descriptors
        self.field_names = names
        self.handlers = handlers
        self.metadata_type = get_metadata_type(list(handlers.values()))

    def read_metadata(self) -> None:
        """Read and validate the metadata table (a step of `__init__`; FFCV's name for it)."""
        self.metadata_start = HeaderType.itemsize + self.num_fields * FieldDescType.itemsize
        self.metadata_end = self.metadata_start + self.num_samples * self.metadata_type.itemsize
        if self.metadata_end > self.file_size:
            self._fail(f'header announces {self.num_samples} samples whose metadata would end at byte '
                       f'{self.metadata_end}, past the end of the file ({self.file_size} bytes)')
        if not self.metadata_end <= self.alloc_table_ptr <= self.file_size:
            self._fail(f'allocation table offset {self.alloc_table_ptr} lies outside '
                       f'[{self.metadata_end}, {self.file_size}] (end of metadata, file size)')
        self.metadata = self._load(self.metadata_type, self.num_samples, self.metadata_start)
        for index, (name, handler) in enumerate(self.handlers.items()):
            problem = handler.check_column(self.column(index))
            if problem is not None:
                row, reason = problem
                self._fail(f"sample {row}, field '{name}': {reason}")

    def read_allocation_table(self) -> None:
        """Read and validate the allocation table (a step of `__init__`; FFCV's name for it)."""
        table_bytes = self.file_size - self.alloc_table_ptr
        if table_bytes % ALLOC_TABLE_TYPE.itemsize:
            self._fail(f'allocation table ({table_bytes} bytes from offset {self.alloc_table_ptr} to the '
                       f'end) is not a whole number of {ALLOC_TABLE_TYPE.itemsize}-byte entries: '
                       'truncated or corrupt')
        table = self._load(ALLOC_TABLE_TYPE, table_bytes // ALLOC_TABLE_TYPE.itemsize, self.alloc_table_ptr)
        self.alloc_table = table
        self.data_start = -(-self.metadata_end // self.page_size) * self.page_size
        if table.size == 0:
            self.sorted_ptrs = np.zeros(0, np.uint64)
            self.sorted_sizes = np.zeros(0, np.uint64)
            self._sorted_owners = np.zeros(0, np.uint64)
            return
        ptrs, sizes = table['ptr'], table['size']
        bad = np.flatnonzero(table['sample_id'] >= np.uint64(self.num_samples))
        if bad.size:
            self._fail(f"allocation entry {bad[0]} belongs to sample {int(table['sample_id'][bad[0]])}, "
                       f'but the file has {self.num_samples}')
        # ptr + size could overflow uint64 in a corrupt file: compare without adding.
        bad = np.flatnonzero((ptrs < np.uint64(self.data_start)) | (ptrs > np.uint64(self.alloc_table_ptr))
                             | (sizes > np.uint64(self.alloc_table_ptr) - ptrs))
        if bad.size:
            self._fail(f'allocation entry {bad[0]} (sample {int(table["sample_id"][bad[0]])}) spans '
                       f'[{int(ptrs[bad[0]])}, +{int(sizes[bad[0]])}) outside the data region '
                       f'[{self.data_start}, {self.alloc_table_ptr})')
        shift = np.uint64(self.page_shift)
        last = ptrs + np.maximum(sizes, np.uint64(1)) - np.uint64(1)
        bad = np.flatnonzero((ptrs >> shift) != (last >> shift))
        if bad.size:
            self._fail(f'allocation entry {bad[0]} (sample {int(table["sample_id"][bad[0]])}) crosses a '
                       'page boundary')
        order = np.lexsort((sizes, ptrs))
        self.sorted_ptrs = np.ascontiguousarray(ptrs[order])
        self.sorted_sizes = np.ascontiguousarray(sizes[order])
        self._sorted_owners = table['sample_id'][order]
        overlap = np.flatnonzero(self.sorted_ptrs[:-1] + self.sorted_sizes[:-1] > self.sorted_ptrs[1:])
        if overlap.size:
            self._fail(f'allocations at offsets {int(self.sorted_ptrs[overlap[0]])} and '
                       f'{int(self.sorted_ptrs[overlap[0] + 1])} overlap')
        self.sorted_ptrs.setflags(write=False)
        self.sorted_sizes.setflags(write=False)

    def _check_pointers(self) -> None:
        """Every heap pointer in the metadata must be an allocation of the right size."""
        for index, (name, handler) in enumerate(self.handlers.items()):
            found = handler.heap_pointers(self.column(index))
            if found is None or self.num_samples == 0:
                continue
            ptrs, sizes, known = found
            ptrs = np.asarray(ptrs, dtype=np.uint64)
            position = np.searchsorted(self.sorted_ptrs, ptrs)
            in_table = position < self.sorted_ptrs.size
            matches = in_table.copy()
            matches[in_table] = self.sorted_ptrs[position[in_table]] == ptrs[in_table]
            bad = np.flatnonzero(~matches)
            if bad.size:
                self._fail(f"sample {bad[0]}, field '{name}': data pointer {int(ptrs[bad[0]])} is not an "
                           'allocation of the file')
            self._check_owners(name, ptrs, position)
            if sizes is None:
                continue
            stored = self.sorted_sizes[position]
            # Zero-size allocations may share an offset with the next one: accept any entry at ptr.
            wrong = stored != np.asarray(sizes, dtype=np.uint64)
            if known is not None:
                wrong &= known
            for row in np.flatnonzero(wrong):
                if self._blob_size(int(ptrs[row]), int(sizes[row])) is None:
                    self._fail(f"sample {row}, field '{name}': metadata says {int(sizes[row])} bytes but "
                               f'the allocation at {int(ptrs[row])} holds {int(stored[row])}')

    def _check_owners(self, name: str, ptrs: np.ndarray, position: np.ndarray) -> None:
        """Sample i's data must be an allocation of sample i: the process cache (os_cache=False) reads
        the pages of each sample from the allocation table, so a wrong owner would mean unread memory."""
        rows = np.arange(ptrs.size, dtype=np.uint64)
        for row in np.flatnonzero(self._sorted_owners[position] != rows):
            ptr = np.uint64(ptrs[row])  # several allocations may share ptr (zero-size ones): any may match
            lo, hi = self.sorted_ptrs.searchsorted(ptr, 'left'), self.sorted_ptrs.searchsorted(ptr, 'right')
            owners = self._sorted_owners[lo:hi]
            if not (owners == np.uint64(row)).any():
                self._fail(f"sample {row}, field '{name}': data pointer {int(ptr)} is an allocation of sample "
                           f'{int(owners[0])} in the allocation table')

    def _blob_size(self, ptr: int, wanted: Optional[int] = None) -> Optional[int]:
        """Size of the allocation at ptr (the one of size `wanted` when several share ptr)."""
        if not 0 <= ptr < 2**64:
            return None
        key = np.uint64(ptr)  # a Python int would make numpy convert the whole array on every call
        lo = int(self.sorted_ptrs.searchsorted(key, 'left'))
        hi = int(self.sorted_ptrs.searchsorted(key, 'right'))
        candidates = [int(s) for s in self.sorted_sizes[lo:hi]]
        if not candidates:
            return None
        if wanted is None:
            return max(candidates)
        return wanted if wanted in candidates else None

    # -- the format's vocabulary, asked by the loader, the memory managers, the orders and the tools --

    def column(self, field) -> np.ndarray:
        """Metadata column of a field (by index in file order, or by name): one entry per sample."""
        index = self.field_names.index(field) if isinstance(field, str) else int(field)
        return self.metadata[column_name(index)]

    def sample_pages(self) -> Tuple[np.ndarray, np.ndarray, int]:
        """The file pages holding each sample's (non-empty) heap data.

        Returns ``(offsets, pages, num_pages)``: the pages of sample ``s`` are
        ``pages[offsets[s]:offsets[s + 1]]`` (sorted, normally exactly one), and ``num_pages`` is one past
        the largest page any allocation points into (the size of a page table). Zero-size allocations
        need no data, so they need no page either. Computed once, on first use.
        """
        if self._sample_pages is None:
            table = self.alloc_table
            samples = table['sample_id'].astype(np.int64)
            pages = (table['ptr'] >> np.uint64(self.page_shift)).astype(np.int64)
            num_pages = int(pages.max()) + 1 if pages.size else 0
            keep = table['size'] > 0
            keys = np.unique(samples[keep] * max(num_pages, 1) + pages[keep])
            key_samples, key_pages = np.divmod(keys, max(num_pages, 1))
            offsets = np.searchsorted(key_samples, np.arange(self.num_samples + 1))
            self._sample_pages = (offsets, key_pages, num_pages)
        return self._sample_pages

    # -- access to samples (for tools and tests; the Loader has its own compiled path) --

    def read(self, ptr: int, size: Optional[int] = None) -> np.ndarray:
        """Read-only uint8 view of the heap data at `ptr` (`size` bytes, or the allocation's size)."""
        if size is None:
            size = self._blob_size(ptr)
            if size is None:
                self._fail(f'no allocation at offset {ptr}')
        if self.remote is not None:
            return self._read_remote(ptr, size)
        if self._mmap is None:
            self._mmap = np.memmap(self._fname, dtype=np.uint8, mode='r')
        return self._mmap[ptr:ptr + size]

    def _read_remote(self, ptr: int, size: int) -> np.ndarray:
        """Heap data of a remote file: its whole page is fetched (and kept until another page is read),
        so reading samples in file order costs one request per page."""
        page = ptr >> self.page_shift
        if self._page_memo[0] != page:
            start = page << self.page_shift
            end = min(start + self.page_size, self.alloc_table_ptr)
            self._page_memo = (page, self.remote.read(start, end - start))
        data = np.frombuffer(self._page_memo[1], dtype=np.uint8)
        start = ptr - (page << self.page_shift)
        return data[start:start + size]

    def read_sample(self, index: int) -> dict:
        """Decoded values of one sample, {field name: value} (ints, floats, arrays, JSON objects)."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f'sample {index} out of range [0, {self.num_samples})')
        row = self.metadata[index]
        return {name: handler.read_value(row[column_name(i)], self.read)
                for i, (name, handler) in enumerate(self.handlers.items())}

    def close(self) -> None:
        self._mmap = None
        self._page_memo = (-1, b'')

    def __repr__(self) -> str:
        return f'Reader({self._fname!r}: {self.num_samples} samples, fields {self.field_names})'
