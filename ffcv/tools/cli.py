"""The ``ffcv`` command: look into, check and write `.beton` files.

::

    ffcv inspect FILE [--json]                 fields, sizes and per-field statistics
    ffcv verify FILE [--max-errors N]          decode every sample; exit 0 good, 1 bad samples, 2 unreadable
    ffcv convert SRC OUT [--skip-bad]          image folder / .npz / .npy arrays -> .beton
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
import re
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..fields import BytesField, FloatField, IntField, RGBImageField
from ..fields.base import Field
from ..fields.rgb_image import IMAGE_MODES
from ..reader import CorruptFileError, Reader
from ..types import (ALLOC_TABLE_TYPE, CURRENT_VERSION, TYPE_ID_HANDLER, FieldDescType,
                     HeaderType, column_name)
from ..utils import align_to_page

from ..remote.options import is_url
from ..remote.source import RemoteFileError
from .common import (EXIT_BAD_SAMPLES, EXIT_ERROR, EXIT_OK, CommandError, add_storage_option, human_bytes, naming,
                     plural, remote_options)
from .convert import add_convert

__all__ = ['main', 'build_parser', 'inspect_file', 'CommandError']



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


# Reader._check_pointers' words for a pointer without an allocation entry (see `_truncation`).
_MISSING_ALLOCATION = re.compile(r'^sample (\d+), field .*: data pointer (\d+) is not an allocation of the file$')


def _truncation(path: str, problem: str) -> Optional[str]:
    """How `path` is truncated, when it is shorter than its own header and tables say; else None.

    The allocation table is the file's last section and the header gives its offset, so: a file ending
    before that offset lost its tail; one ending inside a table entry was cut there; one whose table ends at
    an entry boundary, while the metadata points at data the table has no entry for, lost the table's last
    entries (the writers write a sample's entries together, so that sample has none left, or its entries
    are the table's last).
    """
    size = os.path.getsize(path)
    if size < HeaderType.itemsize:
        return None  # the Reader's message says 'not a .beton file, or truncated': nothing more is known
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    if int(header['version']) != CURRENT_VERSION:
        return None
    table_start = int(header['alloc_table_ptr'])
    if table_start > size:
        return (f'truncated: {size:,} bytes, but its header says the allocation table starts at byte '
                f'{table_start:,} (at least {plural(table_start - size, "byte")} missing)')
    entry = ALLOC_TABLE_TYPE.itemsize
    if (size - table_start) % entry:
        return (f'truncated: the file ends {(size - table_start) % entry} bytes into a {entry}-byte entry of '
                f'the allocation table (which starts at byte {table_start:,})')
    missing = _MISSING_ALLOCATION.match(problem)
    if missing:
        sample, pointer = int(missing.group(1)), int(missing.group(2))
        owners = np.fromfile(path, dtype=ALLOC_TABLE_TYPE, offset=table_start)['sample_id']
        if not (owners == sample).any() or owners[-1] == sample:
            return (f"truncated: the allocation table, which ends the file, stops after {owners.size:,} entries, "
                    f"without the one for sample {sample}'s data at byte {pointer:,}")
    return None


def _open_reader(path: str, custom_specs: Sequence[str] = (), storage_specs: Sequence[str] = ()) -> Reader:
    """Reader of `path` (a file or a URL), every way of failing turned into a CommandError (saying
    'truncated' when it is)."""
    custom = _load_custom_fields(custom_specs)
    try:
        return Reader(path, custom_handlers=custom, remote=remote_options(path, storage_specs))
    except CorruptFileError as exc:
        truncated = None if is_url(path) else _truncation(path, exc.problem)
        raise CommandError(f'{path}: {truncated}' if truncated else str(exc)) from None
    except (RemoteFileError, ImportError) as exc:
        raise CommandError(str(exc)) from None
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise CommandError(str(exc)) from None
    except ValueError as exc:  # custom field without a class, unknown type id
        hint = ' (give its class with --custom-field NAME=module:Class)' if 'custom' in str(exc) else ''
        raise CommandError(f'{naming(path, exc)}{hint}') from None


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
                f"bytes      total {stats['bytes_total']:,} ({human_bytes(stats['bytes_total'])}), "
                f'mean {mean} per image']
    if 'size_min' in stats:
        mean = 'n/a' if stats['size_mean'] is None else f"{stats['size_mean']:,.1f}"
        return [f"size       min {stats['size_min']}, max {stats['size_max']}, mean {mean} bytes "
                f"(total {human_bytes(stats['bytes_total'])})"]
    if 'distinct' in stats:
        return [f"values     min {stats['min']}, max {stats['max']}, {stats['distinct']} distinct"]
    if 'non_finite' in stats:
        return [f"values     min {stats['min']}, max {stats['max']}, {stats['non_finite']} NaN/inf"]
    return []


def _format_inspect(summary: dict) -> str:
    sections = summary['sections']
    lines = [summary['file'],
             f"  samples      {summary['num_samples']:,}",
             f"  page size    {human_bytes(summary['page_size'])} ({summary['page_size']:,} bytes)",
             f"  file size    {human_bytes(summary['file_size'])} ({summary['file_size']:,} bytes)",
             f"  header       {sections['header']} B + field table {human_bytes(sections['field_table'])}",
             f"  metadata     {human_bytes(sections['metadata'])} "
             f"(+ {human_bytes(sections['padding'])} padding to the first page)",
             f"  data         {human_bytes(sections['data'])} in {plural(summary['pages'], 'page')}, "
             f"{human_bytes(summary['data_used'])} used",
             f"  alloc table  {human_bytes(sections['alloc_table'])} ({summary['allocations']:,} entries)",
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
    parser.add_argument('file', help='the .beton file (a path, or a URL: s3://, https://, any fsspec URL)')
    add_storage_option(parser)
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of text')
    parser.add_argument('--custom-field', action='append', default=[], metavar='NAME=module:Class',
                        help='Field class of a custom field (type id 255); repeatable')
    parser.set_defaults(handler=_run_inspect)


def _run_inspect(args) -> int:
    summary = inspect_file(_open_reader(args.file, args.custom_field, args.storage_option))
    print(json.dumps(summary, indent=2) if args.json else _format_inspect(summary))
    return EXIT_OK


# --- verify --------------------------------------------------------------------------------------

def _add_verify(subparsers) -> None:
    parser = subparsers.add_parser('verify', help='decode every sample and report the bad ones',
                                   description='Validate the file structure, then decode every sample. '
                                               'Exit code 0: all good; 1: bad samples; 2: unreadable file.')
    parser.add_argument('file', help='the .beton file (a path, or a URL: s3://, https://, any fsspec URL)')
    add_storage_option(parser)
    parser.add_argument('--max-errors', type=int, default=20, metavar='N',
                        help='list at most N bad values (default 20; all are counted)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    parser.add_argument('--custom-field', action='append', default=[], metavar='NAME=module:Class',
                        help='Field class of a custom field (type id 255); repeatable')
    parser.set_defaults(handler=_run_verify)


def _run_verify(args) -> int:
    reader = _open_reader(args.file, args.custom_field, args.storage_option)
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
                except RemoteFileError as exc:  # the file, not the sample: nothing more can be checked
                    raise CommandError(str(exc)) from None
                except Exception as exc:
                    errors.append((index, name, f'{type(exc).__name__}: {exc}'))
                    bad_samples.add(index)
    elapsed = time.perf_counter() - started
    for index, name, message in errors[:max(args.max_errors, 0)]:
        print(f"sample {index}, field '{name}': {message}")
    if len(errors) > max(args.max_errors, 0):
        print(f'... {plural(len(errors) - max(args.max_errors, 0), "more error")} not listed (--max-errors)')
    for name, reason in skipped.items():
        print(f"field '{name}': cannot decode custom field ({reason}); its values were not checked")
    checked = len(handlers) - len(skipped)
    if bad_samples:
        print(f'FAILED: {len(bad_samples)} of {plural(reader.num_samples, "sample")} bad '
              f'({plural(len(errors), "error")}) in '
              f'{args.file}')
        return EXIT_BAD_SAMPLES
    print(f'OK: {plural(reader.num_samples, "sample")} x {plural(checked, "field")} decoded in {args.file} '
          f'({elapsed:.1f} s)')
    return EXIT_OK


# --- bench ---------------------------------------------------------------------------------------

def _add_bench(subparsers) -> None:
    from .bench import PIPELINES
    parser = subparsers.add_parser('bench', help='images/s of each loading stage; names the bottleneck',
                                   description='Measure reading, decoding, each pipeline step and the host-to-'
                                               'device copy of every image field, then the loader end to end.')
    parser.add_argument('file', help='the .beton file (a path, or a URL: s3://, https://, any fsspec URL)')
    add_storage_option(parser)
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
    _open_reader(args.file, args.custom_field, args.storage_option).close()  # unreadable files fail here
    if args.batch_size < 1 or args.batches < 1:
        raise CommandError('--batch-size and --batches must be positive')
    try:
        report = bench_file(args.file, pipeline=args.pipeline, res=args.res, batch_size=args.batch_size,
                            num_workers=args.num_workers, batches=args.batches,
                            custom_fields=_load_custom_fields(args.custom_field),
                            remote=remote_options(args.file, args.storage_option))
    except (ValueError, RemoteFileError) as exc:  # e.g. --pipeline simple on images of several sizes
        raise CommandError(str(exc)) from None
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return EXIT_OK


# --- Entry point ---------------------------------------------------------------------------------

COMMANDS = [_add_inspect, _add_verify, add_convert, _add_bench]


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
