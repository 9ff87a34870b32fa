"""``ffcv convert SRC OUT``: an image folder (one sub-folder per class) or arrays (.npz / .npy) to a `.beton`.

By default the first unreadable image stops the conversion, naming the file; ``--skip-bad`` leaves unreadable
images out and lists them at the end. An existing output is replaced only with ``--overwrite``.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import time
import zipfile
from typing import List, Sequence

import numpy as np
from tqdm import tqdm

from ..fields import IntField, RGBImageField
from ..fields.rgb_image import WRITE_MODES
from ..remote.source import RemoteFileError
from ..types import DEFAULT_PAGE_SIZE
from .common import EXIT_OK, CommandError, add_storage_option, human_bytes, naming, parse_size, plural, remote_options
def add_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        'convert', help='write an image folder or .npz/.npy arrays to a .beton file',
        description="Write SRC to OUT with fields {'image': RGBImageField, 'label': IntField}. SRC is a folder "
                    'in ImageFolder layout (SRC/<class>/<image>, classes sorted by name give the labels), a '
                    '.npz with (N, H, W, 3) uint8 images and (N,) integer labels, or a .npy of images with '
                    '--labels FILE.npy.')
    parser.add_argument('src', help='image folder, .npz or .npy file')
    parser.add_argument('out', help='output .beton file (a path, or a URL such as s3://bucket/train.beton: written '
                                    'locally, then uploaded; it appears only when complete)')
    add_storage_option(parser)
    source = parser.add_argument_group('array sources')
    source.add_argument('--images-key', default='images', help='images array in a .npz (default: images)')
    source.add_argument('--labels-key', default='labels', help='labels array in a .npz (default: labels)')
    source.add_argument('--labels', metavar='FILE.npy', help='labels of a .npy images file')
    image = parser.add_argument_group('image field (RGBImageField options)')
    image.add_argument('--write-mode', choices=WRITE_MODES, default='raw', help='default: raw')
    image.add_argument('--max-resolution', type=int, help='downscale so the longer side is at most this')
    image.add_argument('--smart-threshold', type=int, help="'smart': JPEG when H*W*3 exceeds this many bytes")
    image.add_argument('--jpeg-quality', type=int, default=90, help='0-100 (default 90)')
    image.add_argument('--compress-probability', type=float, default=0.5,
                       help="'proportion': probability of JPEG (default 0.5)")
    writer = parser.add_argument_group('writer')
    writer.add_argument('--num-workers', type=int, default=0, help='encoding processes (default: every CPU)')
    writer.add_argument('--page-size', type=parse_size, default=DEFAULT_PAGE_SIZE,
                        help='power of two >= 2M, e.g. 8M (default 8M)')
    writer.add_argument('--chunksize', type=int, default=100, help='samples per work item (default 100)')
    writer.add_argument('--shuffle', action='store_true', help='write the samples in a random order')
    writer.add_argument('--seed', type=int, default=0, help='seed of --shuffle (default 0)')
    writer.add_argument('--no-progress', action='store_true', help='no progress bar')
    writer.add_argument('--overwrite', action='store_true', help='replace OUT if it exists (default: refuse)')
    writer.add_argument('--skip-bad', action='store_true',
                        help='leave out the images of a folder that cannot be read, and list them at the end '
                             '(a first pass opens every image: each is decoded twice)')
    parser.set_defaults(handler=_run_convert)


class UnreadableImage(Exception):
    """An image of a folder that cannot be read; the message names the file."""


class _NamedFolder:
    """An `ImageFolderDataset` whose read failures name the file (Pillow's do not always: 'image file is
    truncated') and, unless `hint` is empty, say how to go on without it."""

    def __init__(self, dataset, hint: str = ''):
        self.dataset = dataset
        self.hint = hint

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except Exception as exc:
            path = self.dataset.samples[index][0]
            reason = str(exc).replace(f' {path!r}', '')  # Pillow often quotes the path: it is named first
            raise UnreadableImage(f'{path}: {type(exc).__name__}: {reason}{self.hint}') from exc


_scanned: dict = {}  # the dataset `_read_chunk` reads, set before the pool forks (or by its initializer)


def _read_chunk(indices: Sequence[int]) -> List[tuple]:
    """(index, message) of each sample in `indices` that cannot be read."""
    bad = []
    for index in indices:
        try:
            _scanned['dataset'][index]
        except UnreadableImage as exc:
            bad.append((index, str(exc)))
    return bad


def _set_scanned(dataset) -> None:
    _scanned['dataset'] = dataset


def _readable(dataset: _NamedFolder, num_workers: int, chunksize: int, progress: bool) -> tuple:
    """(indices of the readable samples in order, messages of the unreadable ones): every image opened."""
    from ..utils import available_cpus
    chunks = [range(start, min(start + chunksize, len(dataset))) for start in range(0, len(dataset), chunksize)]
    workers = min(available_cpus() if num_workers < 1 else num_workers, len(chunks))
    bar = tqdm(total=len(dataset), disable=not progress, file=sys.stderr, unit='images', desc='Checking images')
    bad: List[tuple] = []
    with bar:
        if workers <= 1:
            _set_scanned(dataset)
            results = map(_read_chunk, chunks)
        else:
            method = 'fork' if 'fork' in multiprocessing.get_all_start_methods() else 'spawn'
            pool = multiprocessing.get_context(method).Pool(workers, _set_scanned, (dataset,))
            results = pool.imap(_read_chunk, chunks)
        try:
            for chunk, found in zip(chunks, results):
                bad += found
                bar.update(len(chunk))
        finally:
            _scanned.clear()
            if workers > 1:
                pool.terminate()
                pool.join()
    skipped = {index for index, _ in bad}
    return np.array([i for i in range(len(dataset)) if i not in skipped], np.int64), [message for _, message in bad]


def _open_source(args):
    """The dataset of (image, label) samples that `args.src` names."""
    from ..datasets import ArrayDataset, ImageFolderDataset
    src = args.src
    if not os.path.exists(src):
        raise CommandError(f'{src}: no such file or folder')
    try:
        if os.path.isdir(src):
            return ImageFolderDataset(src)
        if src.lower().endswith('.npz'):
            with np.load(src) as arrays:
                wanted = [args.images_key] + ([args.labels_key] if args.labels is None else [])
                missing = [key for key in wanted if key not in arrays.files]
                if missing:
                    raise CommandError(f"{src}: no array named {', '.join(map(repr, missing))} (it has "
                                       f"{', '.join(arrays.files) or 'none'}; choose with --images-key/--labels-key)")
                images = arrays[args.images_key]
                labels = np.load(args.labels) if args.labels else arrays[args.labels_key]
            return ArrayDataset(images, labels)
        if src.lower().endswith('.npy'):
            if args.labels is None:
                raise CommandError(f'{src}: a .npy images file needs --labels FILE.npy')
            return ArrayDataset(np.load(src, mmap_mode='r'), np.load(args.labels, mmap_mode='r'))
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CommandError(naming(src, exc)) from None
    raise CommandError(f'{src}: not a folder, .npz or .npy file')


def _check_output(out: str, overwrite: bool, remote=None) -> None:
    """Refuse an output that cannot be written, or that exists without --overwrite (checked before any work)."""
    if remote is not None:  # a URL: written locally, then uploaded
        try:
            import fsspec
            fs, path = fsspec.core.url_to_fs(out, **remote['storage_options'])
            exists = fs.exists(path)
        except ImportError as exc:
            raise CommandError(f"{out}: writing to a URL needs the 'remote' extra ({exc}): "
                               "pip install 'ffcv-fast[remote]'") from None
        except Exception as exc:
            raise CommandError(f'{out}: cannot reach it ({type(exc).__name__}: {exc})') from None
        if exists and not overwrite:
            raise CommandError(f'{out} already exists (add --overwrite to replace it)')
        return
    if os.path.isdir(out):
        raise CommandError(f'{out} is a folder; give the path of the .beton file to write')
    if os.path.exists(out) and not overwrite:
        raise CommandError(f'{out} already exists (add --overwrite to replace it)')
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise CommandError(f'{out}: the folder {out_dir} does not exist')


def _remote_size(url: str, remote: dict) -> int:
    import fsspec
    fs, path = fsspec.core.url_to_fs(url, **remote['storage_options'])
    return int(fs.info(path)['size'])


def _run_convert(args) -> int:
    from ..datasets import ImageFolderDataset
    from ..writer import DatasetWriteError, DatasetWriter
    remote = remote_options(args.out, args.storage_option)
    _check_output(args.out, args.overwrite, remote)
    dataset = _open_source(args)
    indices, skipped = np.arange(len(dataset)), []
    if isinstance(dataset, ImageFolderDataset):
        dataset = _NamedFolder(dataset, '' if args.skip_bad else ' (--skip-bad leaves out unreadable images)')
        if args.skip_bad:
            indices, skipped = _readable(dataset, args.num_workers, max(args.chunksize, 1), not args.no_progress)
            if not indices.size:
                raise CommandError(f'{args.src}: none of the {plural(len(dataset), "image")} can be read '
                                   f'(the first: {skipped[0]})')
    try:
        field = RGBImageField(write_mode=args.write_mode, max_resolution=args.max_resolution,
                              smart_threshold=args.smart_threshold, jpeg_quality=args.jpeg_quality,
                              compress_probability=args.compress_probability)
        writer = DatasetWriter(args.out, {'image': field, 'label': IntField()}, page_size=args.page_size,
                               num_workers=args.num_workers, remote=remote)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.shuffle:
        indices = indices[np.random.default_rng(args.seed).permutation(len(indices))]
    started = time.perf_counter()
    try:
        writer.from_indexed_dataset(dataset, indices=indices, chunksize=max(args.chunksize, 1),
                                    progress=not args.no_progress)
    except (DatasetWriteError, RemoteFileError) as exc:
        raise CommandError(str(exc)) from None
    elapsed = time.perf_counter() - started
    size = os.path.getsize(args.out) if remote is None else _remote_size(args.out, remote)
    print(f'Wrote {len(indices):,} samples to {args.out} ({human_bytes(size)}) in {elapsed:.2f} s '
          f'({len(indices) / max(elapsed, 1e-9):,.0f} images/s)')
    if skipped:
        print(f'Skipped {plural(len(skipped), "unreadable image")} (--skip-bad):')
        print('\n'.join(f'  {message}' for message in skipped))
    return EXIT_OK


