"""Interrupted writes: the writer process killed with SIGKILL at random moments.

The target path must then hold nothing, the previous complete file (byte-identical) or, when the kill came
after the rename, the new complete file; never a partial file. Temporary `*.partial` files of dead writers
are removed by the next writer of the same target.
"""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ffcv._partial_files import remove_stale_partials
from ffcv.reader import Reader

ZYGOTE = '''
import os, sys
import numpy as np
from ffcv.fields import BytesField, IntField, RGBImageField
from ffcv.writer import DatasetWriter

class Data:  # deterministic per index; JPEG encoding makes the write take a while
    def __init__(self, n):
        self.n = n
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        image = np.repeat(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], 96, 0) ^ rng.integers(
            0, 32, (96, 96, 3), dtype=np.uint8)
        return image, i, rng.bytes(int(rng.integers(0, 3000)))

def write(target, samples, workers):
    fields = {'image': RGBImageField(write_mode='jpg'), 'label': IntField(), 'blob': BytesField()}
    DatasetWriter(target, fields, page_size=1 << 21, num_workers=workers).from_indexed_dataset(
        Data(samples), chunksize=25, progress=False)

print('READY', flush=True)
for line in sys.stdin:  # "write TARGET SAMPLES WORKERS" -> "PID n"; "wait PID" -> "STATUS s"
    command, *args = line.split()
    if command == 'write':
        pid = os.fork()
        if pid == 0:  # the writer process: its own session, so its pool workers can be found
            os.setsid()
            code = 1
            try:
                write(args[0], int(args[1]), int(args[2]))
                code = 0
            finally:
                os._exit(code)
        print('PID', pid, flush=True)
    else:
        print('STATUS', os.waitpid(int(args[0]), 0)[1], flush=True)
'''
SAMPLES = 1000


class Writers:
    """Writer processes forked from one process that has done its imports (a fork takes milliseconds)."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, '-c', ZYGOTE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self._ask(None) == 'READY'

    def _ask(self, line):
        if line is not None:
            self.process.stdin.write(line + '\n')
            self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def start(self, target, workers=2, samples=SAMPLES) -> int:
        return int(self._ask(f'write {target} {samples} {workers}').split()[1])

    def wait(self, pid) -> int:
        """Exit status as os.waitpid gives it (0: success)."""
        return int(self._ask(f'wait {pid}').split()[1])

    def kill(self, pid) -> tuple:
        """SIGKILL the writer and reap it; its orphaned pool workers must exit by themselves (they find
        the pipe to the writer closed). Returns (workers alive just after the kill, workers still alive
        after 10 s, which are then killed)."""
        os.kill(pid, signal.SIGKILL)
        assert self.wait(pid) in (0, signal.SIGKILL)  # 0: it had just finished (a zombie)
        seen = len(_session_members(pid))
        deadline = time.time() + 10
        while time.time() < deadline and _session_members(pid):
            time.sleep(0.02)
        stuck = _session_members(pid)
        if stuck:
            os.killpg(pid, signal.SIGKILL)
        return seen, len(stuck)

    def close(self):
        self.process.stdin.close()
        self.process.wait(30)


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _session_members(session: int) -> list:
    """Live processes (zombies waiting for init to reap them excluded) of a session."""
    members = []
    for pid in os.listdir('/proc'):
        try:
            state, _, _, sid = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if int(sid) == session and state != 'Z':
            members.append(pid)
    return members


@pytest.fixture(scope='module')
def writers(tmp_path_factory):
    """The forking helper, the complete file's digest (the writer is deterministic) and a write's duration."""
    helper = Writers()
    target = tmp_path_factory.mktemp('reference') / 'data.beton'
    started = time.time()
    assert helper.wait(helper.start(target)) == 0
    yield helper, digest(target), time.time() - started
    helper.close()


def check_after_kill(target, previous, complete) -> str:
    if not target.exists():
        assert previous is None, 'the previous file vanished'
        return 'absent'
    now = digest(target)
    if now == previous:
        return 'previous'
    assert now == complete, 'a file that is neither the previous one nor the complete new one'
    assert Reader(target).num_samples == SAMPLES
    return 'complete'


def kill_loop(tmp_path, writers, rounds, seed) -> dict:
    helper, complete, duration = writers
    rng = np.random.default_rng(seed)
    outcomes, partials_left, orphans, stuck = [], 0, 0, 0
    for k in range(rounds):
        folder = tmp_path / f'round{k}'
        folder.mkdir()
        target = folder / 'data.beton'
        previous = None
        if k % 2:  # an older file of another dataset already at the target
            assert helper.wait(helper.start(target, workers=1, samples=30)) == 0
            previous = digest(target)
        pid = helper.start(target, workers=int(rng.integers(1, 3)))
        time.sleep(float(rng.uniform(0, duration * 1.1)))
        seen, left = helper.kill(pid)
        orphans, stuck = orphans + seen, stuck + left
        outcomes.append(check_after_kill(target, previous, complete))
        partials_left += len(list(folder.glob('*.partial')))
        if k % 4 == 3:  # the next writer of this target removes the dead one's file and succeeds
            assert helper.wait(helper.start(target, workers=1, samples=30)) == 0
            assert not list(folder.glob('*.partial')) and Reader(target).num_samples == 30
    print(f'write: {duration:.2f} s; {rounds} kills: {dict((o, outcomes.count(o)) for o in set(outcomes))}, '
          f'{partials_left} .partial files left by killed writers, {orphans} orphaned pool workers seen '
          f'({stuck} still alive after 10 s)')
    assert stuck == 0
    return {'outcomes': outcomes, 'partials': partials_left}


def test_sigkill_at_random_moments(tmp_path, writers):
    result = kill_loop(tmp_path, writers, rounds=20, seed=0)
    assert {'previous', 'absent'} <= set(result['outcomes'])


@pytest.mark.slow
def test_sigkill_at_random_moments_long(tmp_path, writers):
    kill_loop(tmp_path, writers, rounds=150, seed=1)


def test_a_live_writers_partial_file_is_left_alone(tmp_path, writers):
    """Two writers of one target at once: the second must not delete the first one's temporary file."""
    helper, complete, _ = writers
    target = tmp_path / 'data.beton'
    first = helper.start(target, workers=1)
    deadline = time.time() + 30
    while not list(tmp_path.glob('*.partial')) and time.time() < deadline:
        time.sleep(0.01)
    assert len(list(tmp_path.glob('*.partial'))) == 1
    assert remove_stale_partials(str(target)) == []  # locked by a live writer
    os.kill(first, signal.SIGSTOP)  # paused, so that it finishes last however loaded the machine is
    try:
        assert helper.wait(helper.start(target, workers=1, samples=30)) == 0  # a second writer meanwhile
        assert len(list(tmp_path.glob('*.partial'))) == 1  # the first one's, still there
    finally:
        os.kill(first, signal.SIGCONT)
    assert helper.wait(first) == 0
    assert digest(target) == complete  # the first one finished last, intact
    assert not list(tmp_path.glob('*.partial'))


def test_stale_partial_files_of_other_targets_are_kept(tmp_path):
    dead = tmp_path / 'data.beton.abcd1234.partial'
    other = tmp_path / 'data.beton.x.abcd1234.partial'
    unrelated = tmp_path / 'notes.partial'
    for path in (dead, other, unrelated):
        path.write_bytes(b'x')
    assert remove_stale_partials(str(tmp_path / 'data.beton')) == [str(dead)]
    assert other.exists() and unrelated.exists()
