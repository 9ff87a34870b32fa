"""The writer's temporary ``<target>.XXXXXXXX.partial`` files, and removal of those left by dead writers.

A writer holds an exclusive ``flock`` on its temporary file for as long as it writes (its forked worker
processes share the lock). The kernel releases the lock when the holder dies, however it dies (SIGKILL,
OOM killer, power loss aside), so a ``.partial`` file beside the target whose lock can be taken belongs to
a writer that is gone: the next writer of the same target removes it. Files of live writers are left alone.
Where ``flock`` does not exist (Windows) or fails, nothing is removed.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from typing import List, Tuple

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None

logger = logging.getLogger(__name__)
SUFFIX = '.partial'


def _pattern(target: str) -> 're.Pattern':
    return re.compile(re.escape(os.path.basename(target)) + r'\.[A-Za-z0-9_]{8}' + re.escape(SUFFIX))


def remove_stale_partials(target: str) -> List[str]:
    """Remove the temporary files of dead writers of `target`; returns their paths."""
    if fcntl is None:
        return []
    directory = os.path.dirname(os.path.abspath(target))
    pattern, removed = _pattern(target), []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        if not pattern.fullmatch(name):
            continue
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer is alive
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                os.unlink(path)
                removed.append(path)
                logger.info('removed %s, left by a writer that did not finish', path)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def create_partial(target: str) -> Tuple[int, str]:
    """(fd, path) of a new locked temporary file beside `target`, after removing stale ones."""
    remove_stale_partials(target)
    directory = os.path.dirname(os.path.abspath(target))
    while True:
        fd, path = tempfile.mkstemp(dir=directory, prefix=os.path.basename(target) + '.', suffix=SUFFIX)
        if fcntl is None:
            return fd, path
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while another writer's cleanup looks at it
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd, path
        except FileNotFoundError:
            pass  # that cleanup removed it before we locked it: make another
        except OSError:  # no locking on this file system: write without it
            return fd, path
        os.close(fd)
