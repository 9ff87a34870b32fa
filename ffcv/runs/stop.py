"""Stop a training loop cleanly on SIGTERM (preemption) or Ctrl-C.

Inside ``with StopOnSignal() as stop:`` the first SIGTERM or SIGINT only records its name in
``stop.reason``; the loop checks it after each step, checkpoints and leaves, so the checkpoint matches
the loader's position. A second Ctrl-C interrupts at once (KeyboardInterrupt). torchrun follows a
terminal's Ctrl-C with SIGTERM: that one waits like the first. Outside the main thread (where Python
cannot install handlers) nothing is installed and `reason` stays None. The previous handlers are back
when the block ends.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Optional


class StopOnSignal:
    """Records the first SIGTERM / SIGINT in `reason` instead of dying; see the module docstring."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, announce: bool = True):
        self.reason: Optional[str] = None
        self.announce = announce  # print how to abort when the first Ctrl-C arrives
        self._previous = {}

    def __enter__(self) -> 'StopOnSignal':
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._on_signal) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        if self.reason == 'SIGINT' and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: abort now, keep the last checkpoint as it is
        if self.reason is None and signum == signal.SIGINT and self.announce:
            from tqdm import tqdm  # tqdm.write: printed above a progress bar, not into it
            tqdm.write('stopping after this step (Ctrl-C again to abort without checkpointing)', file=sys.stderr)
        self.reason = self.reason or signal.Signals(signum).name
