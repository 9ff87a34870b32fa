"""The ``ffcv`` command: look into, check and write `.beton` files.

::

    ffcv inspect FILE [--json]                 fields, sizes and per-field statistics
    ffcv verify FILE [--max-errors N]          decode every sample; exit 0 good, 1 bad samples, 2 unreadable
    ffcv convert SRC OUT [--write-mode jpg]    image folder / .npz / .npy arrays -> .beton
    ffcv bench FILE [--pipeline train]         images/s of each loading stage; names the bottleneck

Adding a command takes a few lines: write ``_add_<name>(subparsers)``, which builds the sub-parser and
sets ``handler=_run_<name>``, and append it to `COMMANDS`. A handler returns the exit code and raises
`CommandError` for failures the user can fix (reported on stderr, exit code 2).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import zipfile
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..fields import BytesField, FloatField, IntField, RGBImageField
from ..fields.base import Field
from ..fields.rgb_image import IMAGE_MODES, WRITE_MODES
from ..reader import CorruptFileError, Reader
from ..types import TYPE_ID_HANDLER, DEFAULT_PAGE_SIZE, FieldDescType, HeaderType, column_name
from ..utils import align_to_page

__all__ = ['main', 'build_parser', 'inspect_file', 'CommandError']

EXIT_OK, EXIT_BAD_SAMPLES, EXIT_ERROR = 0, 1, 2


class CommandError(Exception):
    """A failure the user can fix (missing file, corrupt file, bad option); exit code 2."""


# --- Shared helpers ------------------------------------------------------------------------------

def _human_bytes(size: float) -> str:
    """'4.0 MiB' style size."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(size) < 1024 or unit == 'TiB':
            return f'{size:.0f} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
        size /= 1024
    raise AssertionError('unreachable')


def _plural(count: int, word: str) -> str:
    """'1 page', '3 pages'."""
    return f'{count:,} {word}' + ('' if count == 1 else 's')


def _parse_size(text: str) -> int:
    """Byte count from '8388608', '8M', '8MiB' or '2G' (binary units)."""
    value = text.strip().upper().removesuffix('IB').removesuffix('B')
    scale = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}.get(value[-1:], 1)
    try:
        return int(value[:-1] if scale > 1 else value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a size: {text!r} (use bytes, or a K/M/G suffix)') from None


def _load_custom_fields(specs: Sequence[str]) -> Dict[str, type]:
    """{name: Field class} from 'NAME=module:Class' specs."""
    classes = {}
    for spec in specs:
        name, _, target = spec.partition('=')
        module_name, _, class_name = target.partition(':')
        if not (name and module_name and class_name):
            raise CommandError(f'--custom-field {spec!r}: expected NAME=module:Class')
        try:
            obj = importlib.import_module(module_name)
            for part in class_name.split('.'):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise CommandError(f'--custom-field {spec!r}: cannot load {target} ({exc})') from None
        classes[name] = obj
    return classes


def _open_reader(path: str, custom_specs: Sequence[str] = ()) -> Reader:
    """Reader of `path`, every way of failing turned into a CommandError."""
    custom = _load_custom_fields(custom_specs)
    try:
        return Reader(path, custom_handlers=custom)
    except (CorruptFileError, FileNotFoundError, IsADirectoryError) as exc:
        raise CommandError(str(exc)) from None
    except ValueError as exc:  # custom field without a class, unknown type id
        hint = ' (give its class with --custom-field NAME=module:Class)' if 'custom' in str(exc) else ''
        message = str(exc) if path in str(exc) else f'{path}: {exc}'
        raise CommandError(f'{message}{hint}') from None


def _field_class_name(reader: Reader, index: int) -> str:
    """Class that wrote column `index`: the built-in name for its type id, or the custom class."""
    type_id = int(reader.field_descriptors[index]['type_id'])
    builtin = TYPE_ID_HANDLER.get(type_id)
    if builtin is not None:
        return builtin.__name__
    return type(list(reader.handlers.values())[index]).__name__


# --- inspect -------------------------------------------------------------------------------------

def _spread(values: np.ndarray) -> dict:
    if values.size == 0:
        return {'min': None, 'median': None, 'max': None}
    return {'min': int(values.min()), 'median': float(np.median(values)), 'max': int(values.max())}


def _image_stats(reader: Reader, column: np.ndarray) -> dict:
    jpg = column['mode'] == IMAGE_MODES['jpg']
    raw_bytes = column['height'].astype(np.uint64) * column['width'].astype(np.uint64) * np.uint64(3)
    # Several allocations may share an offset only when all but the largest are empty: take the last.
    position = np.searchsorted(reader.sorted_ptrs, column['data_ptr'], side='right').astype(np.int64) - 1
    jpg_bytes = reader.sorted_sizes[np.maximum(position, 0)] if reader.sorted_sizes.size else raw_bytes
    stored = np.where(jpg, jpg_bytes, raw_bytes)
    total = int(stored.sum())
    return {'jpg': int(jpg.sum()), 'raw': int((~jpg).sum()), 'width': _spread(column['width']),
            'height': _spread(column['height']), 'bytes_total': total,
            'bytes_mean': total / stored.size if stored.size else None}


def _field_stats(reader: Reader, handler: Field, column: np.ndarray) -> dict:
    """Vectorised statistics of one metadata column (empty for fields without any worth showing)."""
    if isinstance(handler, RGBImageField):
        return _image_stats(reader, column)
    if isinstance(handler, BytesField):  # JSONField too
        sizes = column['size']
        return {'size_min': int(sizes.min()) if sizes.size else None,
                'size_max': int(sizes.max()) if sizes.size else None,
                'size_mean': float(sizes.mean()) if sizes.size else None, 'bytes_total': int(sizes.sum())}
    if isinstance(handler, IntField) and column.size:
        return {'min': int(column.min()), 'max': int(column.max()), 'distinct': int(np.unique(column).size)}
    if isinstance(handler, FloatField) and column.size:
        finite = column[np.isfinite(column)]
        return {'min': float(finite.min()) if finite.size else None,
                'max': float(finite.max()) if finite.size else None, 'non_finite': int(column.size - finite.size)}
    return {}


def inspect_file(reader: Reader) -> dict:
    """Summary of a `.beton` file: layout, sizes and per-field statistics, as JSON-ready values.

    Only the metadata and allocation table are read (vectorised), never the samples, so it is fast on
    files of any size. The section sizes (header, field table, metadata, padding, data, alloc table)
    add up to the file size.
    """
    field_table = reader.num_fields * FieldDescType.itemsize
    metadata = reader.num_samples * reader.metadata_type.itemsize
    data_start = min(align_to_page(reader.metadata_end, reader.page_size), reader.alloc_table_ptr)
    fields = []
    for index, (name, handler) in enumerate(reader.handlers.items()):
        fields.append({'name': name, 'type_id': int(reader.field_descriptors[index]['type_id']),
                       'class': _field_class_name(reader, index), 'description': handler.describe(),
                       'stats': _field_stats(reader, handler, reader.column(index))})
    return {
        'file': reader.file_name, 'num_samples': reader.num_samples, 'page_size': reader.page_size,
        'file_size': reader.file_size,
        'sections': {'header': HeaderType.itemsize, 'field_table': field_table, 'metadata': metadata,
                     'padding': data_start - reader.metadata_end,
                     'data': reader.alloc_table_ptr - data_start,
                     'alloc_table': reader.file_size - reader.alloc_table_ptr},
        'pages': (reader.alloc_table_ptr - data_start) // reader.page_size,
        'allocations': int(reader.alloc_table.size),
        'data_used': int(reader.alloc_table['size'].sum()),
        'fields': fields,
    }


def _format_stats(stats: dict) -> List[str]:
    if 'jpg' in stats:
        def spread(s):
            return 'n/a' if s['min'] is None else f"min {s['min']}, median {s['median']:g}, max {s['max']}"
        mean = 'n/a' if stats['bytes_mean'] is None else f"{stats['bytes_mean']:,.1f}"
        return [f"encoding   {stats['jpg']} jpg, {stats['raw']} raw",
                f"width      {spread(stats['width'])}", f"height     {spread(stats['height'])}",
                f"bytes      total {stats['bytes_total']:,} ({_human_bytes(stats['bytes_total'])}), "
                f'mean {mean} per image']
    if 'size_min' in stats:
        mean = 'n/a' if stats['size_mean'] is None else f"{stats['size_mean']:,.1f}"
        return [f"size       min {stats['size_min']}, max {stats['size_max']}, mean {mean} bytes "
                f"(total {_human_bytes(stats['bytes_total'])})"]
    if 'distinct' in stats:
        return [f"values     min {stats['min']}, max {stats['max']}, {stats['distinct']} distinct"]
    if 'non_finite' in stats:
        return [f"values     min {stats['min']}, max {stats['max']}, {stats['non_finite']} NaN/inf"]
    return []


def _format_inspect(summary: dict) -> str:
    sections = summary['sections']
    lines = [summary['file'],
             f"  samples      {summary['num_samples']:,}",
             f"  page size    {_human_bytes(summary['page_size'])} ({summary['page_size']:,} bytes)",
             f"  file size    {_human_bytes(summary['file_size'])} ({summary['file_size']:,} bytes)",
             f"  header       {sections['header']} B + field table {_human_bytes(sections['field_table'])}",
             f"  metadata     {_human_bytes(sections['metadata'])} "
             f"(+ {_human_bytes(sections['padding'])} padding to the first page)",
             f"  data         {_human_bytes(sections['data'])} in {_plural(summary['pages'], 'page')}, "
             f"{_human_bytes(summary['data_used'])} used",
             f"  alloc table  {_human_bytes(sections['alloc_table'])} ({summary['allocations']:,} entries)",
             '', 'fields']
    rows = [('#', 'name', 'type', 'class', 'description')]
    rows += [(str(i), f['name'], str(f['type_id']), f['class'], f['description'])
             for i, f in enumerate(summary['fields'])]
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    lines += ['  ' + '  '.join(cell.ljust(w) for cell, w in zip(row, widths)) + '  ' + row[4] for row in rows]
    for field in summary['fields']:
        stats = _format_stats(field['stats'])
        if stats:
            lines += ['', f"{field['name']} ({field['class']})"] + ['  ' + line for line in stats]
    return '\n'.join(line.rstrip() for line in lines)


def _add_inspect(subparsers) -> None:
    parser = subparsers.add_parser('inspect', help='show the fields, sizes and statistics of a .beton file',
                                   description='Show the fields, layout and per-field statistics of a .beton '
                                               'file (reads only its metadata, fast on any size).')
    parser.add_argument('file', help='the .beton file')
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of text')
    parser.add_argument('--custom-field', action='append', default=[], metavar='NAME=module:Class',
                        help='Field class of a custom field (type id 255); repeatable')
    parser.set_defaults(handler=_run_inspect)


def _run_inspect(args) -> int:
    summary = inspect_file(_open_reader(args.file, args.custom_field))
    print(json.dumps(summary, indent=2) if args.json else _format_inspect(summary))
    return EXIT_OK


# --- verify --------------------------------------------------------------------------------------

def _add_verify(subparsers) -> None:
    parser = subparsers.add_parser('verify', help='decode every sample and report the bad ones',
                                   description='Validate the file structure, then decode every sample. '
                                               'Exit code 0: all good; 1: bad samples; 2: unreadable file.')
    parser.add_argument('file', help='the .beton file')
    parser.add_argument('--max-errors', type=int, default=20, metavar='N',
                        help='list at most N bad values (default 20; all are counted)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--custom-field', action='append', default=[], metavar='NAME=module:Class',
                        help='Field class of a custom field (type id 255); repeatable')
    parser.set_defaults(handler=_run_verify)


def _run_verify(args) -> int:
    reader = _open_reader(args.file, args.custom_field)
    handlers = list(reader.handlers.items())
    columns = [column_name(i) for i in range(len(handlers))]
    skipped: Dict[str, str] = {}  # field name -> why it cannot be decoded
    for name, handler in handlers:
        if type(handler).read_value is Field.read_value:
            skipped[name] = f'{type(handler).__name__} has no read_value'
    errors, bad_samples = [], set()
    started = time.perf_counter()
    bar = tqdm(range(reader.num_samples), disable=args.no_progress, file=sys.stderr, unit='samples',
               desc=f'Verifying {os.path.basename(args.file)}')
    with bar:
        for index in bar:
            row = reader.metadata[index]
            for (name, handler), column in zip(handlers, columns):
                if name in skipped:
                    continue
                try:
                    handler.read_value(row[column], reader.read)
                except NotImplementedError as exc:
                    skipped[name] = str(exc) or f'{type(handler).__name__}.read_value is not implemented'
                except Exception as exc:
                    errors.append((index, name, f'{type(exc).__name__}: {exc}'))
                    bad_samples.add(index)
    elapsed = time.perf_counter() - started
    for index, name, message in errors[:max(args.max_errors, 0)]:
        print(f"sample {index}, field '{name}': {message}")
    if len(errors) > max(args.max_errors, 0):
        print(f'... {_plural(len(errors) - max(args.max_errors, 0), "more error")} not listed (--max-errors)')
    for name, reason in skipped.items():
        print(f"field '{name}': cannot decode custom field ({reason}); its values were not checked")
    checked = len(handlers) - len(skipped)
    if bad_samples:
        print(f'FAILED: {len(bad_samples)} of {_plural(reader.num_samples, "sample")} bad '
              f'({_plural(len(errors), "error")}) in '
              f'{args.file}')
        return EXIT_BAD_SAMPLES
    print(f'OK: {_plural(reader.num_samples, "sample")} x {_plural(checked, "field")} decoded in {args.file} '
          f'({elapsed:.1f} s)')
    return EXIT_OK


# --- convert -------------------------------------------------------------------------------------

def _add_convert(subparsers) -> None:
    parser = subparsers.add_parser(
        'convert', help='write an image folder or .npz/.npy arrays to a .beton file',
        description="Write SRC to OUT with fields {'image': RGBImageField, 'label': IntField}. SRC is a folder "
                    'in ImageFolder layout (SRC/<class>/<image>, classes sorted by name give the labels), a '
                    '.npz with (N, H, W, 3) uint8 images and (N,) integer labels, or a .npy of images with '
                    '--labels FILE.npy.')
    parser.add_argument('src', help='image folder, .npz or .npy file')
    parser.add_argument('out', help='output .beton file')
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
    writer.add_argument('--page-size', type=_parse_size, default=DEFAULT_PAGE_SIZE,
                        help='power of two >= 2M, e.g. 8M (default 8M)')
    writer.add_argument('--chunksize', type=int, default=100, help='samples per work item (default 100)')
    writer.add_argument('--shuffle', action='store_true', help='write the samples in a random order')
    writer.add_argument('--seed', type=int, default=0, help='seed of --shuffle (default 0)')
    writer.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.set_defaults(handler=_run_convert)


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
        raise CommandError(f'{src}: {exc}') from None
    raise CommandError(f'{src}: not a folder, .npz or .npy file')


def _run_convert(args) -> int:
    from ..writer import DatasetWriteError, DatasetWriter
    dataset = _open_source(args)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CommandError(f'{args.out}: the folder {out_dir} does not exist')
    try:
        field = RGBImageField(write_mode=args.write_mode, max_resolution=args.max_resolution,
                              smart_threshold=args.smart_threshold, jpeg_quality=args.jpeg_quality,
                              compress_probability=args.compress_probability)
        writer = DatasetWriter(args.out, {'image': field, 'label': IntField()}, page_size=args.page_size,
                               num_workers=args.num_workers)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    indices = np.random.default_rng(args.seed).permutation(len(dataset)) if args.shuffle else None
    started = time.perf_counter()
    try:
        writer.from_indexed_dataset(dataset, indices=indices, chunksize=max(args.chunksize, 1),
                                    progress=not args.no_progress)
    except DatasetWriteError as exc:
        raise CommandError(str(exc)) from None
    elapsed = time.perf_counter() - started
    size = os.path.getsize(args.out)
    print(f'Wrote {len(dataset):,} samples to {args.out} ({_human_bytes(size)}) in {elapsed:.2f} s '
          f'({len(dataset) / max(elapsed, 1e-9):,.0f} images/s)')
    return EXIT_OK


# --- bench ---------------------------------------------------------------------------------------

def _add_bench(subparsers) -> None:
    from .bench import PIPELINES
    parser = subparsers.add_parser('bench', help='images/s of each loading stage; names the bottleneck',
                                   description='Measure reading, decoding, each pipeline step and the host-to-'
                                               'device copy of every image field, then the loader end to end.')
    parser.add_argument('file', help='the .beton file')
    parser.add_argument('--pipeline', choices=PIPELINES, default='auto',
                        help='train: RandomResizedCrop + flip; val: center crop; simple: whole images; auto '
                             '(default): simple for one-size fields, else train')
    parser.add_argument('--res', type=int, help='output side of train/val crops (default 160 / 224)')
    parser.add_argument('--batch-size', type=int, default=256, help='default 256')
    parser.add_argument('--num-workers', type=int, default=-1, help='worker threads (default: every CPU)')
    parser.add_argument('--batches', type=int, default=20, help='batches measured per stage (default 20)')
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of text')
    parser.add_argument('--custom-field', action='append', default=[], metavar='NAME=module:Class',
                        help='Field class of a custom field (type id 255); repeatable')
    parser.set_defaults(handler=_run_bench)


def _run_bench(args) -> int:
    from .bench import bench_file, format_report
    _open_reader(args.file, args.custom_field).close()  # unreadable files fail here, with the usual message
    if args.batch_size < 1 or args.batches < 1:
        raise CommandError('--batch-size and --batches must be positive')
    try:
        report = bench_file(args.file, pipeline=args.pipeline, res=args.res, batch_size=args.batch_size,
                            num_workers=args.num_workers, batches=args.batches,
                            custom_fields=_load_custom_fields(args.custom_field))
    except ValueError as exc:  # e.g. --pipeline simple on images of several sizes
        raise CommandError(str(exc)) from None
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return EXIT_OK


# --- Entry point ---------------------------------------------------------------------------------

COMMANDS = [_add_inspect, _add_verify, _add_convert, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    """The ``ffcv`` argument parser, one sub-parser per entry of `COMMANDS`."""
    from .. import __version__
    parser = argparse.ArgumentParser(prog='ffcv', description='Tools for .beton dataset files.')
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``ffcv`` command with `argv` (default: ``sys.argv[1:]``) and return the exit code.

    Exit codes: 0 success, 1 ``verify`` found bad samples, 2 usage error or unreadable input, 130 Ctrl-C.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f'ffcv {args.command}: error: {exc}', file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f'ffcv {args.command}: interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ffcv inspect FILE | head`: stop quietly, as other tools do
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_ERROR


if __name__ == '__main__':
    sys.exit(main())
