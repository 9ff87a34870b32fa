"""Fuzzing: seeded corruptions of the FFCV-written fixtures, each opened and fully iterated in a runner
subprocess with a time limit (`fuzz_campaign.py`, `fuzz_runner.py`, `fuzz_corruptions.py`).

Every corruption must end in a clean rejection (CorruptFileError or ValueError naming the file at open,
a PipelineError, a JPEGDecodeError naming the sample at load) or in a load whose every value equals what
the file's bytes say; never a crash, a hang, a leaked thread. A failure prints the seed and the command
that reproduces it. CI runs 150 corruptions; `pytest -m slow` (scripts/run_reliability.sh) runs 1,500.
"""
import os
import tempfile

import numpy as np
import pytest

from fuzz_campaign import run_campaign
from fuzz_corruptions import FIXTURES, corrupt

FAST_SEEDS = 150
SLOW_SEEDS = 1500


def campaign(fixtures_dir, seeds):
    with tempfile.TemporaryDirectory(dir='/dev/shm' if os.path.isdir('/dev/shm') else None) as work:
        report = run_campaign(seeds, fixtures_dir, work, runners=2, seed_timeout=60)
    print(report.summary())
    assert report.tried == len(seeds)
    assert not report.crashes and not report.hangs and not report.bad, report.summary()
    return report


def test_corruptions_are_reproducible(fixtures_dir):
    for seed in (0, 7, 12345):
        assert corrupt(seed, fixtures_dir) == corrupt(seed, fixtures_dir)
    names = {corrupt(seed, fixtures_dir)[0] for seed in range(len(FIXTURES))}
    assert names == set(FIXTURES)
    kinds = {corrupt(seed, fixtures_dir)[2].split(':')[0] for seed in range(200)}
    assert len(kinds) >= 10  # every kind of mutation shows up


def test_fuzz_fast_subset(fixtures_dir):
    report = campaign(fixtures_dir, list(range(FAST_SEEDS)))
    outcomes = ' '.join(report.outcomes.values())
    assert 'loaded, values match' in outcomes and 'rejected at open' in outcomes  # both paths exercised


@pytest.mark.slow
def test_fuzz_full(fixtures_dir):
    seeds = list(range(FAST_SEEDS, FAST_SEEDS + SLOW_SEEDS))
    report = campaign(fixtures_dir, seeds)
    assert sum('rejected at load' in v for v in report.outcomes.values()) > 20


def test_a_crash_is_attributed_to_its_seed(fixtures_dir, tmp_path, monkeypatch):
    """The campaign itself: a runner killed by a signal or stuck is blamed on the seed it was running."""
    import fuzz_campaign
    fake = tmp_path / 'fake_runner.py'
    fake.write_text('import os, signal, sys, time\n'
                    'for seed in sys.argv[3:]:\n'
                    "    print('START', seed, flush=True)\n"
                    "    if seed == '3': os.kill(os.getpid(), signal.SIGSEGV)\n"
                    "    if seed == '5': time.sleep(60)\n"
                    "    print('DONE', seed, 'x: fine', flush=True)\n")
    monkeypatch.setattr(fuzz_campaign, 'RUNNER', fake)
    report = run_campaign(list(range(8)), fixtures_dir, tmp_path, runners=1, seed_timeout=1)
    assert set(report.crashes) == {3} and 'signal' in report.crashes[3] and 'reproduces alone' in report.crashes[3]
    assert set(report.hangs) == {5}
    assert sorted(report.outcomes) == [0, 1, 2, 4, 6, 7]
    assert f'{fake} {fixtures_dir} /tmp 3' in report.summary()


def test_mutations_change_the_file(fixtures_dir):
    unchanged = []
    for seed in range(60):
        name, data, description = corrupt(seed, fixtures_dir)
        pristine = (fixtures_dir / f'{name}.beton').read_bytes()
        if len(data) == len(pristine) and np.array_equal(np.frombuffer(data, np.uint8),
                                                         np.frombuffer(pristine, np.uint8)):
            unchanged.append(description)  # e.g. zeros written over zero padding
    assert len(unchanged) <= 3, unchanged
