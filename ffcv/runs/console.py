"""What the recipes tell the person at the terminal while they run; their results stay on stdout.

* `announce`: the first line of a run, on stderr: the data files with their sample counts, the device and
  the run folder;
* `EpochProgress`: a tqdm bar per epoch on stderr (steps, images/s, the epoch's running loss), as FFCV's
  own scripts show, on rank 0 only;
* `run_as_program`: the ``__main__`` entry of a recipe. A configuration or path mistake ends in one line on
  stderr and exit code 2 instead of a traceback; ``main(argv)`` called from Python still raises.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tqdm import tqdm

from ffcv.reader import CorruptFileError
from ffcv.runs.config import ConfigError

# Mistakes in what the user asked for (settings, files named by them), not failures of the training itself.
USER_ERRORS = (ConfigError, CorruptFileError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
               PermissionError)


def announce(program: str, loaders: Dict[str, object], device, folder, process=None) -> None:
    """Print ``program: train A.beton (N samples), val B.beton (M samples) on DEVICE, writing to FOLDER``
    to stderr. `loaders` maps a role ('train', 'val') to its ffcv Loader; `process` (anything with `rank`
    and `world_size`) makes only rank 0 print, and names the number of processes."""
    rank, world_size = (process.rank, process.world_size) if process is not None else (0, 1)
    if rank != 0:
        return
    files = ', '.join(f'{role} {loader.fname} ({loader.reader.num_samples:,} samples)'
                      for role, loader in loaders.items())
    where = f'{device}' + (f' (rank 0 of {world_size} processes)' if world_size > 1 else '')
    print(f'{program}: {files} on {where}, writing to {folder}', file=sys.stderr, flush=True)


class EpochProgress:
    """A tqdm bar over one epoch's steps on stderr: steps done, images/s and the running mean train loss.

    ``with EpochProgress(epoch, steps, done) as bar:`` then ``bar.update(images, loss_sum, seen)`` after
    each step. The loss sum (a device tensor, say) is read only when the bar is about to be redrawn, so a
    GPU loop is not synchronised at every step. Redrawn at most twice a second on a terminal, every 30 s
    when stderr is a file or a pipe (a log stays short). `enabled=False` (ranks other than 0) shows nothing.
    """

    def __init__(self, epoch: int, steps: int, done: int = 0, enabled: bool = True):
        interactive = sys.stderr.isatty()
        self.bar = tqdm(total=steps, initial=done, desc=f'epoch {epoch}', unit='step', file=sys.stderr,
                        disable=not enabled, dynamic_ncols=interactive, mininterval=0.5 if interactive else 30)
        self.start, self.images, self.loss_sum, self.seen = time.time(), 0, 0.0, 0

    def __enter__(self) -> 'EpochProgress':
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.bar.disable and self.seen:
            self._describe()
        self.bar.close()

    def update(self, images: int, loss_sum, seen: int) -> None:
        """One step of `images` images done; `loss_sum` / `seen` is the epoch's mean loss so far."""
        self.images, self.loss_sum, self.seen = self.images + images, loss_sum, seen
        if not self.bar.disable and time.time() - self.bar.last_print_t >= self.bar.mininterval:
            self._describe()
        self.bar.update(1)

    def _describe(self) -> None:
        rate = self.images / max(time.time() - self.start, 1e-9)
        self.bar.set_postfix_str(f'loss {float(self.loss_sum) / max(self.seen, 1):.3f}, {rate:,.0f} images/s',
                                 refresh=False)


def run_as_program(main: Callable, argv: Optional[List[str]] = None) -> None:
    """Run ``main(argv)`` (default: the command line) as a program: a `USER_ERRORS` exception becomes one
    line ``program: error: ...`` on stderr and exit code 2 (argparse's convention for usage errors)."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except USER_ERRORS as exc:
        message = ' '.join(str(exc).split()) or type(exc).__name__
        print(f'{Path(sys.argv[0]).name}: error: {message}', file=sys.stderr, flush=True)
        sys.exit(2)
