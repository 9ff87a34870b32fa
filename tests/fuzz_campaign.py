"""Runs fuzz seeds in runner subprocesses and attributes every crash or hang to its seed.

Seeds are split over a few runner processes (`fuzz_runner.py`), each working through its list and
reporting START/DONE per seed. A runner that dies (a signal, or any exit before its last DONE) or
goes quiet for longer than `seed_timeout` is killed; the seed it had started is re-run alone in a fresh
process to confirm it reproduces, and the rest of its list continues in a new runner.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

RUNNER = Path(__file__).resolve().parent / 'fuzz_runner.py'


@dataclass
class Report:
    fixtures_dir: str = 'FIXTURES_DIR'
    outcomes: Dict[int, str] = field(default_factory=dict)     # seed -> DONE outcome
    bad: Dict[int, str] = field(default_factory=dict)          # seed -> BAD reason
    crashes: Dict[int, str] = field(default_factory=dict)      # seed -> how the process died
    hangs: Dict[int, str] = field(default_factory=dict)        # seed -> timeout

    @property
    def tried(self) -> int:
        return len(self.outcomes) + len(self.bad) + len(self.crashes) + len(self.hangs)

    def summary(self) -> str:
        kinds = Counter(outcome.split(': ', 1)[1].split(' (')[0] for outcome in self.outcomes.values())
        lines = [f'{self.tried} corruptions: {len(self.crashes)} crashes, {len(self.hangs)} hangs, '
                 f'{len(self.bad)} bad outcomes'] + [f'  {count:5d} {kind}' for kind, count in kinds.most_common()]
        for title, cases in (('CRASH', self.crashes), ('HANG', self.hangs), ('BAD', self.bad)):
            for seed, reason in sorted(cases.items()):
                command = reproduce_command(seed, self.fixtures_dir)
                lines.append(f'{title} seed {seed}: {reason}\n  reproduce: {command}')
        return '\n'.join(lines)


def reproduce_command(seed: int, fixtures_dir='FIXTURES_DIR') -> str:
    return f'python {RUNNER} {fixtures_dir} /tmp {seed}'


def _spawn(seeds: List[int], fixtures_dir, work_dir):
    env = dict(os.environ, PYTHONFAULTHANDLER='1')
    process = subprocess.Popen([sys.executable, str(RUNNER), str(fixtures_dir), str(work_dir), *map(str, seeds)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in process.stdout:
            lines.put(line.rstrip('\n'))
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def _run_list(seeds: List[int], fixtures_dir, work_dir, seed_timeout: float, report: Report,
              confirm: bool) -> None:
    """Work through `seeds`, restarting the runner after a crash or hang."""
    remaining = list(seeds)
    while remaining:
        process, lines = _spawn(remaining, fixtures_dir, work_dir)
        current: Optional[int] = None
        deadline = time.time() + seed_timeout * 2  # start-up (imports, compilation) included
        tail: List[str] = []
        failure = None
        while True:
            try:
                line = lines.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                failure = 'hang'
                break
            if line is None:
                break
            word, _, rest = line.partition(' ')
            if word == 'START':
                current, tail = int(rest), []
                deadline = time.time() + seed_timeout
            elif word in ('DONE', 'BAD') and current is not None and rest.startswith(f'{current} '):
                (report.outcomes if word == 'DONE' else report.bad)[current] = rest.split(' ', 1)[1]
                remaining.remove(current)
                current = None
            else:
                tail = (tail + [line])[-20:]
        if failure == 'hang':
            process.kill()
        process.wait()
        if current is None:
            if remaining:  # exited between seeds: blame the next one
                current = remaining[0]
            else:
                return
        remaining.remove(current)
        how = (f'no result within {seed_timeout:.0f} s' if failure == 'hang'
               else f'runner exited with {process.returncode}' + (' (a signal)' if process.returncode < 0 else ''))
        how += ('; last output: ' + ' | '.join(tail[-6:])) if tail else ''
        if confirm:  # does it reproduce on its own?
            alone = Report()
            _run_list([current], fixtures_dir, work_dir, seed_timeout, alone, confirm=False)
            how += '; reproduces alone' if (alone.crashes or alone.hangs) else '; did NOT reproduce alone'
        (report.hangs if failure == 'hang' else report.crashes)[current] = how


def run_campaign(seeds: List[int], fixtures_dir, work_dir, runners: int = 2, seed_timeout: float = 60.0) -> Report:
    """Run every seed; the report holds each one's outcome."""
    report = Report(str(fixtures_dir))
    lists = [seeds[k::runners] for k in range(runners)]
    threads = [threading.Thread(target=_run_list, args=(part, fixtures_dir, work_dir, seed_timeout, report, True))
               for part in lists if part]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return report


if __name__ == '__main__':  # python tests/fuzz_campaign.py FIXTURES_DIR FIRST_SEED COUNT
    import tempfile
    fixtures, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with tempfile.TemporaryDirectory(dir='/dev/shm' if os.path.isdir('/dev/shm') else None) as work:
        started = time.time()
        result = run_campaign(list(range(first, first + count)), fixtures, work)
        print(result.summary())
        print(f'{time.time() - started:.0f} s')
    sys.exit(1 if result.crashes or result.hangs or result.bad else 0)
