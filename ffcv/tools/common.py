"""What the `ffcv` commands share: exit codes, the user-fixable error, and message formatting."""
from __future__ import annotations

import argparse

EXIT_OK, EXIT_BAD_SAMPLES, EXIT_ERROR = 0, 1, 2


class CommandError(Exception):
    """A failure the user can fix (missing file, corrupt file, bad option); exit code 2."""


def human_bytes(size: float) -> str:
    """'4.0 MiB' style size."""
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(size) < 1024 or unit == 'TiB':
            return f'{size:.0f} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
        size /= 1024
    raise AssertionError('unreachable')


def plural(count: int, word: str) -> str:
    """'1 page', '3 pages'."""
    return f'{count:,} {word}' + ('' if count == 1 else 's')


def parse_size(text: str) -> int:
    """Byte count from '8388608', '8M', '8MiB' or '2G' (binary units)."""
    value = text.strip().upper().removesuffix('IB').removesuffix('B')
    scale = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}.get(value[-1:], 1)
    try:
        return int(value[:-1] if scale > 1 else value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a size: {text!r} (use bytes, or a K/M/G suffix)') from None


def naming(path: str, exc: Exception) -> str:
    """The message of `exc`, prefixed with `path` unless it already names it."""
    return str(exc) if path in str(exc) else f'{path}: {exc}'


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    """The --storage-option KEY=VALUE flag of commands that take a URL."""
    parser.add_argument('--storage-option', action='append', default=[], metavar='KEY=VALUE',
                        help='fsspec storage option for a URL (s3://, https://, ...), e.g. endpoint_url=http://'
                             'host:9000 or anon=true; VALUE is JSON when it parses as JSON; repeatable')


def remote_options(path: str, specs) -> 'dict | None':
    """{'storage_options': {...}} from --storage-option specs for a URL; None for a local path."""
    import json

    from ..remote.options import is_url
    if not is_url(path):
        if specs:
            raise CommandError(f'--storage-option applies to URLs; {path} is a local path')
        return None
    options = {}
    for spec in specs:
        key, sep, value = spec.partition('=')
        if not sep or not key:
            raise CommandError(f'--storage-option {spec!r}: expected KEY=VALUE')
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return {'storage_options': options}
