"""`DatasetWriter`: turns an indexed dataset (or webdataset shards) into a `.beton` file.

How it works: worker processes (forked, so the dataset need not be picklable) read and encode chunks of
samples into private buffers, using provisional heap pointers. The parent receives the chunks in row
order and lays every sample out sequentially in pages (all of a sample's heap data in one page, as the
format requires), patching the provisional pointers into absolute file offsets. The layout therefore
depends only on the data, never on the number of workers: the same dataset gives byte-identical files.

Everything is written to a temporary file beside the target, which is renamed into place only when the
file is complete; an exception, Ctrl-C or a killed process never leaves a file at the target path. The
temporary file of a killed writer is removed by the next writer of that target (see `_partial_files`).
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import struct
import tempfile
import warnings
from typing import Callable, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ._partial_files import create_partial
from .fields.base import Field
from .remote.options import is_url
from .types import (ALLOC_TABLE_TYPE, CURRENT_VERSION, DEFAULT_PAGE_SIZE, FIELD_NAME_BYTES, MAX_PAGE_SIZE,
                    MIN_PAGE_SIZE, FieldDescType, HeaderType, check_page_size, column_name, encode_field_name,
                    get_metadata_type, get_type_id)
from .utils import align_to_page, available_cpus

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from .types import TYPE_ID_HANDLER  # noqa: F401
from .utils import chunks, is_power_of_2  # noqa: F401
from .memory_allocator import MemoryAllocator  # noqa: F401

__all__ = ['DatasetWriter', 'DatasetWriteError', 'MIN_PAGE_SIZE', 'MAX_PAGE_SIZE']

logger = logging.getLogger(__name__)

# Provisional heap pointers handed out by workers: a recognisable high tag plus the allocation's number
# within its sample. Real file offsets never come near 2**63. A stored value may happen to equal a tag
# (an IntField holding 0x7FFCC5EA00000000): such a row is encoded again with the second tag, and only the
# places where both encodings hold their tag are pointers.
_PROVISIONAL_TAG = 0x7FFC_C5EA_0000_0000
_SECOND_TAG = 0x7FFB_3A15_0000_0000


class DatasetWriteError(ValueError):
    """A sample could not be written; the message names the sample and the field."""


# --- Encoding (runs in the workers) --------------------------------------------------------------

class _EncodedChunk:
    """Encoded samples of consecutive rows, as sent from a worker to the parent."""
    __slots__ = ('first_row', 'metadata', 'blob', 'sizes', 'relocations')

    def __init__(self, first_row, metadata, blob, sizes, relocations):
        self.first_row = first_row      # row of the first sample
        self.metadata = metadata        # bytes: n metadata rows, with provisional pointers
        self.blob = blob                # bytes: every sample's heap data, back to back
        self.sizes = sizes              # per sample: list of allocation sizes, in malloc order
        self.relocations = relocations  # (sample, byte offset in its row, allocation number)


class _SampleEncoder:
    """Encodes samples with a set of fields into an `_EncodedChunk`."""

    def __init__(self, fields: Mapping[str, Field], page_size: int):
        self.names = list(fields)
        self.fields = list(fields.values())
        self.metadata_type = get_metadata_type(self.fields)
        self.page_size = page_size

    def encode(self, first_row: int, samples: Iterable[Tuple[object, object]]) -> _EncodedChunk:
        """samples: (source index for messages, sample tuple) for rows first_row, first_row + 1, ..."""
        samples = list(samples)
        metadata = np.zeros(len(samples), dtype=self.metadata_type)
        blob = bytearray()
        all_sizes, relocations = [], []
        for i, (source_index, sample) in enumerate(samples):
            row = first_row + i
            buffers = self._encode_one(metadata[i:i + 1], row, source_index, sample)
            sizes = [b.size for b in buffers]
            if _footprint(sizes) > self.page_size:
                raise DatasetWriteError(
                    f'sample {source_index} (row {row}) needs {_footprint(sizes)} bytes of heap data, more than '
                    f'one page ({self.page_size} bytes); use a larger page_size (a power of two)')
            found = _tag_positions(metadata[i:i + 1].tobytes(), _PROVISIONAL_TAG, len(buffers))
            if any(len(positions) != 1 for positions in found):  # a value equal to a tag, or a custom field
                again = np.zeros(1, dtype=self.metadata_type)  # storing its pointer twice or not at all
                self._encode_one(again, row, source_index, sample, _SECOND_TAG)
                second = _tag_positions(again.tobytes(), _SECOND_TAG, len(buffers))
                found = [sorted(set(first) & set(other)) for first, other in zip(found, second)]
            relocations.extend((i, at, k) for k, positions in enumerate(found) for at in positions)
            for buffer in buffers:
                blob += buffer.data
            all_sizes.append(sizes)
        return _EncodedChunk(first_row, metadata.tobytes(), bytes(blob), all_sizes, relocations)

    def _encode_one(self, destination_row, row, source_index, sample, tag: int = _PROVISIONAL_TAG
                    ) -> List[np.ndarray]:
        if len(self.fields) == 1 and not isinstance(sample, (tuple, list)):
            sample = (sample,)
        if not isinstance(sample, (tuple, list)):
            raise DatasetWriteError(f'sample {source_index}: expected a tuple of {len(self.fields)} values '
                                    f'({", ".join(self.names)}), got {type(sample).__name__}')
        if len(sample) < len(self.fields):
            raise DatasetWriteError(f'sample {source_index}: expected {len(self.fields)} values '
                                    f'({", ".join(self.names)}), got {len(sample)}')
        buffers: List[np.ndarray] = []

        def malloc(size):
            size = int(size)
            if size < 0:
                raise ValueError(f'malloc of a negative size ({size})')
            if size > self.page_size:
                raise ValueError(f'{size} bytes do not fit in one page ({self.page_size} bytes); '
                                 'use a larger page_size')
            buffer = np.zeros(size, dtype=np.uint8)
            buffers.append(buffer)
            return tag + len(buffers) - 1, buffer

        for index, (name, field, value) in enumerate(zip(self.names, self.fields, sample)):
            try:
                field.encode_row(destination_row[column_name(index)], value, malloc, row)
            except DatasetWriteError:
                raise
            except Exception as exc:
                raise DatasetWriteError(f"sample {source_index} (row {row}), field '{name}' "
                                        f'({field.describe()}): {type(exc).__name__}: {exc}') from exc
        return buffers


def _tag_positions(row_bytes: bytes, tag: int, count: int) -> List[List[int]]:
    """For each allocation k < count, the byte offsets in the row holding the provisional pointer tag + k."""
    found = []
    for k in range(count):
        needle, positions = (tag + k).to_bytes(8, 'little'), []
        at = row_bytes.find(needle)
        while at >= 0:
            positions.append(at)
            at = row_bytes.find(needle, at + 1)
        found.append(positions)
    return found


# Worker-process globals, set by `_init_worker` (inherited through fork, never pickled).
_worker_state: dict = {}


def _init_worker(encoder: _SampleEncoder, source, single_thread_opencv: bool = False) -> None:
    """Per-process setup. `single_thread_opencv` only in spawned workers: see `_opencv_threads`."""
    if single_thread_opencv:
        cv2 = _import_cv2()
        if cv2 is not None:
            cv2.setNumThreads(1)  # one process per core already
    _worker_state['encoder'] = encoder
    _worker_state['source'] = source


def _import_cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


@contextlib.contextmanager
def _opencv_threads(count: int):
    """Set OpenCV's thread count in this process for the duration, then restore it.

    Forked workers must inherit a single-threaded OpenCV from the parent: calling
    ``cv2.setNumThreads`` inside a forked child whose parent had already run OpenCV's thread pool
    (any earlier resize in the parent, e.g. in the dataset) blocks forever in pthread_cond_destroy,
    tearing down a pool whose threads do not exist in the child.
    """
    cv2 = _import_cv2()
    if cv2 is None:
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _encode_indexed_chunk(task: Tuple[int, Sequence[int]]) -> _EncodedChunk:
    first_row, source_indices = task
    encoder, dataset = _worker_state['encoder'], _worker_state['source']
    return encoder.encode(first_row, ((int(i), _get_item(dataset, int(i))) for i in source_indices))


def _get_item(dataset, index: int):
    try:
        return dataset[index]
    except Exception as exc:
        raise DatasetWriteError(f'reading sample {index} from the dataset failed: '
                                f'{type(exc).__name__}: {exc}') from exc


def from_shard(shard: str, pipeline: Callable):
    """The samples of one webdataset shard, in order, as ``pipeline(dataset)`` decodes them."""
    import webdataset
    try:
        dataset = webdataset.WebDataset(shard, shardshuffle=False)
    except TypeError:  # older webdataset without the argument
        dataset = webdataset.WebDataset(shard)
    return pipeline(dataset)


def count_samples_in_shard(shard: str, pipeline: Callable) -> int:
    """Number of samples `from_shard` gives (by reading the shard: webdatasets have no length)."""
    return sum(1 for _ in from_shard(shard, pipeline))


def _encode_shard(task: Tuple[int, str, int]) -> _EncodedChunk:
    first_row, shard, expected = task
    encoder, pipeline = _worker_state['encoder'], _worker_state['source']
    samples = [(f'{shard}#{k}', s) for k, s in enumerate(from_shard(shard, pipeline))]
    if len(samples) != expected:
        raise DatasetWriteError(f'shard {shard} gave {len(samples)} samples, {expected} when counted')
    return encoder.encode(first_row, samples)


# --- Layout (runs in the parent) -----------------------------------------------------------------

def _footprint(sizes: Sequence[int]) -> int:
    """Bytes a sample's allocations take in a page: an empty allocation takes one (zero) byte.

    So no two allocations share an offset. FFCV 1.0.2 finds a blob's size by looking its offset up in
    the sorted allocation table; were an empty blob at the same offset as the next one (an empty
    BytesField before a JSONField, say), it could find size 0 for the non-empty one and lose its data.
    """
    return sum(size or 1 for size in sizes)


class _PageLayout:
    """Places encoded samples into pages of the output file, in row order."""

    def __init__(self, fp, num_samples: int, metadata_start: int, metadata_type: np.dtype,
                 page_size: int):
        self.fp = fp
        self.page_size = page_size
        self.row_size = metadata_type.itemsize
        self.metadata_start = metadata_start
        self.metadata = bytearray(num_samples * self.row_size)
        self.data_start = align_to_page(metadata_start + len(self.metadata), page_size)
        self.page = bytearray(page_size)
        self.page_number = 0          # relative to data_start
        self.page_used = 0
        self.any_page = False
        self.alloc_chunks: List[np.ndarray] = []

    def add(self, chunk: _EncodedChunk) -> None:
        meta = bytearray(chunk.metadata)
        ptrs: List[int] = []
        alloc_rows: List[int] = []
        alloc_sizes: List[int] = []
        blob_pos = 0
        first_alloc = []
        for i, sizes in enumerate(chunk.sizes):
            first_alloc.append(len(ptrs))
            if not sizes:
                continue
            total = sum(sizes)
            span = _footprint(sizes)
            if self.page_used + span > self.page_size:
                self._flush_page()
            self.any_page = True
            base = self.data_start + self.page_number * self.page_size + self.page_used
            if span == total:  # the usual case: the sample's data is one contiguous run
                self.page[self.page_used:self.page_used + total] = chunk.blob[blob_pos:blob_pos + total]
            else:  # an empty allocation leaves a one-byte gap (see `_footprint`)
                at, read = self.page_used, blob_pos
                for size in sizes:
                    self.page[at:at + size] = chunk.blob[read:read + size]
                    at, read = at + (size or 1), read + size
            offset = 0
            for size in sizes:
                ptrs.append(base + offset)
                alloc_sizes.append(size)
                offset += size or 1
            alloc_rows.extend([chunk.first_row + i] * len(sizes))
            self.page_used += span
            blob_pos += total
        for sample, at, k in chunk.relocations:
            struct.pack_into('<Q', meta, sample * self.row_size + at, ptrs[first_alloc[sample] + k])
        start = chunk.first_row * self.row_size
        self.metadata[start:start + len(meta)] = meta
        if ptrs:
            table = np.empty(len(ptrs), dtype=ALLOC_TABLE_TYPE)
            table['sample_id'] = alloc_rows
            table['ptr'] = ptrs
            table['size'] = alloc_sizes
            self.alloc_chunks.append(table)

    def _flush_page(self) -> None:
        self.fp.seek(self.data_start + self.page_number * self.page_size)
        self.fp.write(self.page)
        self.page_number += 1
        self.page_used = 0
        self.page[:] = bytes(self.page_size)

    def finish(self) -> int:
        """Writes the last page, the metadata and the allocation table; returns the table's offset."""
        if self.any_page:
            self._flush_page()
            alloc_table_ptr = self.data_start + self.page_number * self.page_size
        else:
            alloc_table_ptr = self.metadata_start + len(self.metadata)
        self.fp.seek(self.metadata_start)
        self.fp.write(self.metadata)
        self.fp.seek(alloc_table_ptr)
        if self.alloc_chunks:
            self.fp.write(np.concatenate(self.alloc_chunks).tobytes())
        self.fp.truncate()
        return alloc_table_ptr


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- Public API ----------------------------------------------------------------------------------

class DatasetWriter:
    """Writes a dataset to a `.beton` file.

    Parameters
    ----------
    fname : str
        Output path. Written to a temporary file beside it and renamed into place when complete. A URL
        (``s3://bucket/train.beton``, any fsspec URL; needs the ``remote`` extra) is written to a local
        temporary file (in ``$TMPDIR``) and then uploaded: the object appears only when complete.
    fields : Mapping[str, Field]
        Field of each sample element, in the order of the sample tuples (names: ASCII, at most 16 bytes).
    page_size : int
        Page size in bytes: a power of two, at least 2 MiB (default 8 MiB). All heap data of one sample
        must fit in one page.
    num_workers : int
        Encoding processes; < 1 means every CPU this process may use. The output does not depend on it.
    remote : RemoteOptions or dict, optional
        For a URL target: fsspec's ``storage_options`` (credentials, endpoint).

    Examples
    --------
    >>> writer = DatasetWriter('data.beton', {'image': RGBImageField(), 'label': IntField()})
    >>> writer.from_indexed_dataset(my_dataset)  # my_dataset[i] -> (image, label)
    """

    def __init__(self, fname: str, fields: Mapping[str, Field], page_size: int = DEFAULT_PAGE_SIZE,
                 num_workers: int = -1, remote=None):
        check_page_size(page_size)
        if not fields:
            raise ValueError('fields is empty: give at least one {name: Field}')
        names = set()
        for name, field in fields.items():
            if not isinstance(field, Field):
                raise TypeError(f"field '{name}' must be a Field instance (e.g. IntField()), "
                                f'got {type(field).__name__}')
            if not isinstance(name, str) or not name or not name.isascii() or '\0' in name:
                raise ValueError(f'field names must be non-empty ASCII strings, got {name!r}')
            if len(name) > FIELD_NAME_BYTES:
                warnings.warn(f"field name '{name}' is longer than {FIELD_NAME_BYTES} bytes and is stored "
                              f"as '{name[:FIELD_NAME_BYTES]}'", stacklevel=2)
            if name[:FIELD_NAME_BYTES] in names:
                raise ValueError(f"two fields share the stored name '{name[:FIELD_NAME_BYTES]}'")
            names.add(name[:FIELD_NAME_BYTES])
        self.url, self.remote = None, remote
        if is_url(fname):  # written locally, uploaded when complete (see _write)
            self.url = fname
            fname = os.path.join(tempfile.mkdtemp(prefix='ffcv-upload-'), os.path.basename(fname) or 'data.beton')
        self.fname = os.fspath(fname)
        folder = os.path.dirname(os.path.abspath(self.fname))
        if os.path.isdir(self.fname):
            raise IsADirectoryError(f'{self.fname} is a directory; give the path of the .beton file to write')
        if not os.path.isdir(folder):
            raise FileNotFoundError(f'cannot write {self.fname}: the folder {folder} does not exist')
        self.fields = dict(fields)
        self.page_size = int(page_size)
        self.num_workers = available_cpus() if num_workers < 1 else int(num_workers)
        self.metadata_type = get_metadata_type(list(self.fields.values()))

    def from_indexed_dataset(self, dataset, indices: Optional[Sequence[int]] = None, chunksize: int = 100,
                             shuffle_indices: bool = False, progress: bool = True) -> None:
        """Write ``dataset[i]`` for each i in `indices` (default: all) as rows 0, 1, 2, ...

        Parameters
        ----------
        dataset
            Anything with ``__len__`` and ``__getitem__`` returning a tuple (one element per field).
        indices : sequence of int, optional
            Subset (and order) of the dataset to write.
        chunksize : int
            Samples per work item.
        shuffle_indices : bool
            Shuffle `indices` with NumPy's global generator before writing (seed it for a reproducible file).
        progress : bool
            Show a progress bar.
        """
        if indices is None:
            indices = np.arange(len(dataset))
        indices = np.array(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(dataset)):
            raise IndexError(f'indices must lie in [0, {len(dataset)}), got {indices.min()}..{indices.max()}')
        if shuffle_indices:
            np.random.shuffle(indices)
        if chunksize < 1:
            raise ValueError(f'chunksize must be >= 1, got {chunksize}')
        tasks = [(start, indices[start:start + chunksize].tolist())
                 for start in range(0, len(indices), chunksize)]
        self._write(len(indices), tasks, _encode_indexed_chunk, dataset, progress,
                    lambda task: len(task[1]))

    def from_webdataset(self, shards: List[str], pipeline: Callable, progress: bool = True) -> None:
        """Write every sample of webdataset `shards` (in shard order), decoded by ``pipeline(dataset)``.

        Requires the optional `webdataset` package. Each shard is read twice (once to count).
        Example pipeline: ``lambda ds: ds.decode('rgb8').to_tuple('jpg;png', 'cls')``.
        """
        from concurrent.futures import ThreadPoolExecutor
        try:
            import webdataset  # noqa: F401
        except ImportError:
            raise ImportError('from_webdataset needs the webdataset package: pip install webdataset') from None
        with ThreadPoolExecutor(self.num_workers) as pool:
            counts = list(pool.map(count_samples_in_shard, shards, [pipeline] * len(shards)))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        tasks = [(int(offsets[i]), shard, counts[i]) for i, shard in enumerate(shards)]
        self._write(int(offsets[-1]), tasks, _encode_shard, pipeline, progress, lambda task: task[2])

    # -- internals --

    def _descriptors(self) -> np.ndarray:
        descriptors = np.zeros(len(self.fields), dtype=FieldDescType)
        for i, (name, field) in enumerate(self.fields.items()):
            descriptors[i]['type_id'] = get_type_id(field)
            descriptors[i]['name'] = encode_field_name(name)
            descriptors[i]['arguments'][:] = field.to_binary()[0]
        return descriptors

    def _write(self, num_samples: int, tasks: list, work_fn: Callable, source, progress: bool,
               task_size: Callable) -> None:
        descriptors = self._descriptors()
        encoder = _SampleEncoder(self.fields, self.page_size)
        if self.url is not None:  # (the staging folder of a URL target goes after each upload)
            os.makedirs(os.path.dirname(self.fname), exist_ok=True)
        fd, tmp_name = create_partial(self.fname)  # locked; also removes files of dead writers
        try:
            with os.fdopen(fd, 'w+b') as fp:
                header = np.zeros(1, dtype=HeaderType)
                header['version'] = CURRENT_VERSION
                header['num_fields'] = len(self.fields)
                header['page_size'] = self.page_size
                header['num_samples'] = num_samples
                fp.write(header.tobytes())
                fp.write(descriptors.tobytes())
                layout = _PageLayout(fp, num_samples, fp.tell(), self.metadata_type, self.page_size)
                with tqdm(total=num_samples, unit='samples', disable=not progress,
                          desc=f'Writing {os.path.basename(self.fname)}') as bar:
                    for chunk, size in self._run(tasks, work_fn, encoder, source, task_size):
                        layout.add(chunk)
                        bar.update(size)
                header['alloc_table_ptr'] = layout.finish()
                fp.seek(0)
                fp.write(header.tobytes())
                fp.flush()
                os.chmod(tmp_name, 0o666 & ~_current_umask())  # mkstemp creates 0600; a dataset is shared
                os.fsync(fp.fileno())
            os.replace(tmp_name, self.fname)
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            self._drop_staging()
            raise
        if self.url is not None:
            from .remote.upload import upload_file
            try:
                upload_file(self.fname, self.url, self.remote)
            finally:
                self._drop_staging()

    def _drop_staging(self) -> None:
        """Remove the local copy of a URL target (and its temporary folder)."""
        if self.url is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.fname)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.fname))

    def _run(self, tasks, work_fn, encoder, source, task_size):
        """Yields (encoded chunk, number of samples) in task order."""
        if self.num_workers == 1 or len(tasks) <= 1:
            _init_worker(encoder, source)
            try:
                for task in tasks:
                    yield work_fn(task), task_size(task)
            finally:
                _worker_state.clear()
            return
        method = 'fork' if 'fork' in multiprocessing.get_all_start_methods() else 'spawn'
        for field in encoder.fields:  # JIT-compiled encoders compile here once, not in every worker
            getattr(field, '_warm_up', lambda: None)()
        context = multiprocessing.get_context(method)
        with _opencv_threads(1):  # forked workers inherit it (see `_opencv_threads`)
            pool = context.Pool(min(self.num_workers, len(tasks)), initializer=_init_worker,
                                initargs=(encoder, source, method != 'fork'))
        try:
            for task, chunk in zip(tasks, pool.imap(work_fn, tasks, chunksize=1)):
                yield chunk, task_size(task)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
