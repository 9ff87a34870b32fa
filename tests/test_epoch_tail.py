"""The head and tail: every worker decodes parts of a loader's first batch (the wait for the first batch of
a process), and once no batch is left to take, idle workers decode parts of the batches still being built.

Every per-sample decoder may be split (``per_sample = True`` on its code), so each test compares the batches
of 2 and 4 threads with those of 1 thread (which never splits) byte for byte, and checks that parts really
ran on helper threads. Whole-batch decoders (custom ones, `PackedRGBImageDecoder`, a subclass drawing its
windows from the whole batch) always receive whole batches. Errors in a helped part reach the training loop
naming the sample; closing or breaking out mid-tail stops every thread.
"""
from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest
import torch

from ffcv.fields import BytesField, IntField, NDArrayField, RGBImageField
from ffcv.fields.decoders import (BytesListDecoder, CenterCropRGBImageDecoder, IntDecoder, PackedRGBImageDecoder,
                                  PaddedNDArrayDecoder, RandomResizedCropRGBImageDecoder, SimpleRGBImageDecoder)
from ffcv.loader import Loader, OrderOption
from ffcv.pipeline import PipelineSpec
from ffcv.transforms import RandomHorizontalFlip, ToTensor

from conftest import photo_like
from helpers import write_and_read

COUNT = 40
FIELDS = ('delay', 'image', 'thumb', 'label', 'rows', 'blob')


def only(**pipelines) -> dict:
    """`pipelines` for the fields named, every other field of the dataset left out."""
    return {**{name: None for name in FIELDS}, **pipelines}


class SlowDecoder(IntDecoder):
    """A per-sample label decoder that sleeps `delay` s per sample and records (thread, samples) per call."""

    def __init__(self, delay: float = 0.0005, fail_on=()):
        super().__init__()
        self.delay, self.fail_on, self.calls = delay, set(fail_on), []

    def generate_code(self):
        decode_labels = super().generate_code()

        def decode(indices, destination, metadata, storage_state):
            self.calls.append((threading.get_ident(), indices.tolist()))
            for sample in indices.tolist():
                time.sleep(self.delay)
                if sample in self.fail_on:
                    raise OSError(f'cannot read sample {sample}')
            return decode_labels(indices, destination, metadata, storage_state)
        decode.python_code = True
        decode.per_sample = True
        return decode


class WholeBatchDecoder(SlowDecoder):
    """The same without the per-sample declaration (as an FFCV-style custom decoder is written)."""

    def generate_code(self):
        decode = super().generate_code()
        del decode.per_sample
        return decode


class BatchWindows(RandomResizedCropRGBImageDecoder):
    """A subclass whose windows depend on the whole batch: its decoder must never be split."""

    def crop_windows(self, heights, widths, seeds):
        side = int(min(heights.min(), widths.min()))
        return np.array([[0, 0, side, side]] * heights.shape[0], np.int64)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """40 samples: 'delay' (first: decoded first), JPEG/raw photos of 30-70 px, 12x12 thumbnails, a label,
    int16 rows of 0-5 x 3, bytes of 0-20."""
    rng = np.random.default_rng(3)
    samples = [(i, photo_like(rng, int(rng.integers(30, 70)), int(rng.integers(30, 70))), photo_like(rng, 12, 12),
                int(rng.integers(0, 1000)), rng.integers(-999, 999, (int(rng.integers(0, 6)), 3)).astype(np.int16),
                rng.integers(0, 256, int(rng.integers(0, 21))).astype(np.uint8)) for i in range(COUNT)]
    fields = {'delay': IntField(), 'image': RGBImageField(write_mode='proportion', compress_probability=0.5),
              'thumb': RGBImageField(write_mode='proportion', compress_probability=0.5), 'label': IntField(),
              'rows': NDArrayField(np.dtype('int16'), (None, 3)), 'blob': BytesField()}
    path = str(tmp_path_factory.mktemp('tail') / 'tail.beton')
    write_and_read(path, fields, samples)
    return path


def every_decoder():
    """Pipelines using each decoder of this package, a branch and a decode group; the delay decoder."""
    crop = RandomResizedCropRGBImageDecoder((24, 24))
    delay = SlowDecoder()
    return delay, {
        'delay': [delay, ToTensor()],
        'image': PipelineSpec('image', decoder=crop, transforms=[RandomHorizontalFlip(), ToTensor()]),
        'flipped': PipelineSpec(crop, transforms=[RandomHorizontalFlip(flip_prob=1.0), ToTensor()]),  # a branch
        'center': PipelineSpec('image', decoder=CenterCropRGBImageDecoder((20, 20), 0.875),  # grouped with crop
                               transforms=[ToTensor()]),
        'thumb': [SimpleRGBImageDecoder(), ToTensor()],
        'thumb_crop': PipelineSpec('thumb', decoder=RandomResizedCropRGBImageDecoder((8, 8)),  # seeded, alone
                                   transforms=[ToTensor()]),
        'label': [IntDecoder(), ToTensor()],
        'rows': [PaddedNDArrayDecoder(), ToTensor()],
        'blob': [BytesListDecoder()],
        'packed': PipelineSpec('image', decoder=PackedRGBImageDecoder()),
    }


def flatten(value) -> list:
    """Every array of a batch, in order (tensors, tuples and lists unpacked)."""
    if isinstance(value, (tuple, list)):
        return [array for item in value for array in flatten(item)]
    return [value.numpy().copy() if isinstance(value, torch.Tensor) else np.array(value)]


def epoch(path, pipelines, threads, batch_size, drop_last=False, order=OrderOption.RANDOM):
    loader = Loader(path, batch_size=batch_size, num_workers=threads, order=order, seed=5, drop_last=drop_last,
                    pipelines=pipelines)
    return loader, [flatten(batch) for batch in loader]


def assert_same(first, second):
    assert [[(x.dtype, x.shape) for x in batch] for batch in first] == [[(y.dtype, y.shape) for y in batch]
                                                                       for batch in second]
    assert all(x.tobytes() == y.tobytes() for a, b in zip(first, second) for x, y in zip(a, b))


def helpers_of(calls, indices) -> set:
    """Threads that decoded some sample of `indices`."""
    wanted = set(indices)
    return {thread for thread, samples in calls if wanted & set(samples)}


@pytest.mark.parametrize('batch_size, drop_last', [(8, False), (13, False), (13, True), (40, False)])
def test_every_decoder_gives_the_same_bytes_with_helpers(dataset, batch_size, drop_last):
    _, reference = epoch(dataset, every_decoder()[1], 1, batch_size, drop_last)
    assert len(reference) == (COUNT // batch_size if drop_last else -(-COUNT // batch_size))
    for threads in (2, 4):
        delay, pipelines = every_decoder()
        loader, batches = epoch(dataset, pipelines, threads, batch_size, drop_last)
        assert_same(reference, batches)
        if batch_size == COUNT:  # one batch: the other workers are idle from the start and help it
            assert len(helpers_of(delay.calls, range(COUNT))) >= 2
    steps = {p.name: p.steps[0] for p in loader.pipelines}
    assert all(steps[name].per_sample for name in ('delay', 'thumb', 'thumb_crop', 'label', 'rows', 'blob'))
    assert steps['thumb_crop'].group is None and steps['thumb_crop'].with_seeds
    assert steps['image'].group is steps['center'].group is not None  # split through the group's own flag
    assert not steps['packed'].per_sample  # its offsets depend on the samples before: never split


@pytest.mark.parametrize('threads', [2, 4])
def test_parts_cover_the_last_batch_once_and_others_stay_whole(dataset, threads):
    delay, pipelines = every_decoder()
    delay.delay = 0.002
    loader = Loader(dataset, batch_size=16, num_workers=threads, order=OrderOption.SEQUENTIAL, drop_last=False,
                    pipelines=only(delay=pipelines['delay']))
    for _ in loader:
        pass
    calls = [samples for _, samples in delay.calls]
    assert sorted(s for samples in calls for s in samples) == list(range(COUNT))  # every sample decoded once
    assert all(len(samples) in (16, 4) for samples in calls)  # whole batches, or 4-row parts in the tail
    assert sum(len(samples) < 16 for samples in calls) >= 2  # the last batch (8 samples) at least was split


@pytest.mark.parametrize('threads', [2, 3])
def test_the_first_batch_is_built_by_every_worker_before_any_other(dataset, threads):
    delay, pipelines = every_decoder()
    delay.delay = 0.002
    _, reference = epoch(dataset, every_decoder()[1], 1, 16, order=OrderOption.SEQUENTIAL)
    loader, batches = epoch(dataset, pipelines, threads, 16, order=OrderOption.SEQUENTIAL)
    assert_same(reference, batches)
    calls = delay.calls
    head = [k for k, (_, samples) in enumerate(calls) if max(samples) < 16]
    assert len(helpers_of(delay.calls, range(16))) == threads  # the first batch: parts on every worker
    assert all(len(calls[k][1]) == 4 for k in head)
    assert max(head) < min(k for k in range(len(calls)) if k not in head)  # no other batch started meanwhile


def test_later_epochs_start_on_every_worker_at_once(dataset):
    """Only the loader's first batch is shared: a later epoch's first batch is one worker's (whole), while
    another worker builds the next batch."""
    delay, pipelines = every_decoder()
    delay.delay = 0.004
    loader = Loader(dataset, batch_size=8, num_workers=2, order=OrderOption.SEQUENTIAL,
                    pipelines=only(delay=pipelines['delay']))
    for _ in loader:
        pass
    assert len(helpers_of(delay.calls, range(8))) == 2  # the first epoch's first batch: shared
    delay.calls.clear()
    for _ in loader:
        pass
    first = [samples for _, samples in delay.calls if min(samples) < 8]
    assert first == [list(range(8))]  # whole, in one call
    assert min(samples for _, samples in delay.calls[:2]) == list(range(8)) and \
        max(samples for _, samples in delay.calls[:2]) == list(range(8, 16))  # batches 0 and 1 began together


class CollectorWatch(SlowDecoder):
    """The delay decoder, recording (samples, whether Python's garbage collector is enabled) per call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def generate_code(self):
        decode = super().generate_code()

        def watched(indices, destination, metadata, storage_state):
            self.seen.append((indices.tolist(), gc.isenabled()))
            return decode(indices, destination, metadata, storage_state)
        watched.python_code = True
        watched.per_sample = True
        return watched


def watched_loader(dataset, **kwargs):
    watch = CollectorWatch(**kwargs)
    loader = Loader(dataset, batch_size=8, num_workers=2, order=OrderOption.SEQUENTIAL,
                    pipelines=only(delay=[watch, ToTensor()]))
    return watch, loader


def test_the_collector_is_held_off_during_the_first_batch_only(dataset):
    """The loader's first batch (kernel loading in a fresh process) runs without Python's cyclic collector
    (a full collection over torch's objects was ~40% of that wait); every later batch, and the consumer
    once it has the first batch, run with it."""
    assert gc.isenabled()
    watch, loader = watched_loader(dataset)
    iterator = iter(loader)
    next(iterator)
    assert gc.isenabled()
    for _ in iterator:
        pass
    first_epoch = list(watch.seen)
    for _ in loader:  # a later epoch
        pass
    head = [(samples, enabled) for samples, enabled in first_epoch if min(samples) < 8]
    rest = [(samples, enabled) for samples, enabled in first_epoch if min(samples) >= 8] + watch.seen[len(first_epoch):]
    assert len(head) == 2 and not any(enabled for _, enabled in head)  # the first batch, in parts (one per worker)
    assert all(enabled for _, enabled in rest)  # the other batches, and every batch of the next epoch
    assert sorted(i for samples, _ in rest for i in samples) == sorted([*range(8, COUNT), *range(COUNT)])
    assert gc.isenabled()


def test_a_collector_disabled_by_the_user_stays_disabled(dataset):
    watch, loader = watched_loader(dataset)
    gc.disable()
    try:
        for _ in loader:
            pass
        assert not gc.isenabled() and not any(enabled for _, enabled in watch.seen)
    finally:
        gc.enable()


def test_the_collector_comes_back_after_a_failed_first_batch(dataset):
    watch, loader = watched_loader(dataset, fail_on=[3])
    with pytest.raises(OSError, match='cannot read sample 3'):
        for _ in loader:
            pass
    assert gc.isenabled() and watch.seen and not any(enabled for _, enabled in watch.seen)


def test_share_parts_off_builds_every_batch_whole(dataset, monkeypatch):
    """The switch benchmarks/bench_epoch_tail.py measures against: no head, no tail, one call per batch."""
    from ffcv.loader import epoch_iterator
    monkeypatch.setattr(epoch_iterator._EpochState, 'share_parts', False)
    delay, pipelines = every_decoder()
    loader = Loader(dataset, batch_size=16, num_workers=2, order=OrderOption.SEQUENTIAL,
                    pipelines=only(delay=pipelines['delay']))
    for _ in loader:
        pass
    assert [len(samples) for _, samples in delay.calls] == [16, 16]  # (drop_last: 40 samples, 2 batches)


def test_whole_batch_decoders_are_never_split(dataset):
    def pipelines(custom):
        return only(delay=[custom, ToTensor()], image=[BatchWindows((16, 16)), ToTensor()])
    _, reference = epoch(dataset, pipelines(WholeBatchDecoder()), 1, COUNT)
    custom = WholeBatchDecoder(delay=0.001)
    loader, batches = epoch(dataset, pipelines(custom), 4, COUNT)
    assert_same(reference, batches)
    assert [len(samples) for _, samples in custom.calls] == [COUNT]
    assert not any(p.steps[0].per_sample for p in loader.pipelines if p.name in ('delay', 'image'))


@pytest.mark.parametrize('fail_on, named', [((6,), 6), ((13, 6), 6), ((15,), 15)])
def test_error_in_a_helped_part_reaches_the_loop(dataset, fail_on, named):
    delay = SlowDecoder(delay=0.005, fail_on=fail_on)
    loader = Loader(dataset, batch_size=16, num_workers=2, order=OrderOption.SEQUENTIAL,
                    pipelines=only(delay=[delay, ToTensor()]), indices=np.arange(16))
    started = time.monotonic()
    with pytest.raises(OSError, match=rf'cannot read sample {named}\b') as info:
        next(iter(loader))
    assert time.monotonic() - started < 5
    notes = '\n'.join(getattr(info.value, '__notes__', []))
    assert "in pipeline 'delay'" in notes and 'building batch 0 of epoch 0 (samples 0, 1, 2' in notes
    assert len(helpers_of(delay.calls, range(16))) == 2  # the parts ran on both threads
    assert all(len(samples) == 4 for _, samples in delay.calls)


def wait_for_no_threads(timeout: float = 5.0) -> int:
    """Number of loader worker threads still alive after waiting up to `timeout` for them to end."""
    deadline = time.monotonic() + timeout
    while (alive := sum(t.name.startswith('ffcv-epoch') for t in threading.enumerate())) and \
            time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
    return alive


def test_close_mid_tail_stops_taking_parts(dataset):
    delay = SlowDecoder(delay=0.05)  # one batch of 16 in 4 parts of 0.2 s
    loader = Loader(dataset, batch_size=16, num_workers=2, order=OrderOption.SEQUENTIAL,
                    pipelines=only(delay=[delay, ToTensor()]), indices=np.arange(16))
    iterator = iter(loader)
    closer = threading.Timer(0.08, iterator.close)
    closer.start()
    with pytest.raises(RuntimeError, match='closed'):
        next(iterator)
    closer.join()
    assert wait_for_no_threads() == 0
    assert sum(len(samples) for _, samples in delay.calls) == 8  # the 2 running parts ended; 2 never started


@pytest.mark.parametrize('how', ['break', 'del'])
def test_leaving_the_epoch_mid_tail_frees_the_threads(dataset, how):
    delay = SlowDecoder(delay=0.01)
    loader = Loader(dataset, batch_size=8, num_workers=4, order=OrderOption.SEQUENTIAL,
                    pipelines=only(delay=[delay, ToTensor()]), indices=np.arange(24))
    iterator = iter(loader)
    next(iterator)  # batches 1 and 2 are in the tail now, split among 4 threads
    if how == 'break':
        iterator.close()
    else:
        del iterator
    assert wait_for_no_threads() == 0
    _, batches = epoch(dataset, only(delay=[SlowDecoder(), ToTensor()]), 4, 8, order=OrderOption.SEQUENTIAL)
    assert [int(b[0][0, 0]) for b in batches] == list(range(0, COUNT, 8))  # the loader works on afterwards


class CopyingDecoder(IntDecoder):
    """Declares per_sample but returns a copy of its destination: the loader cannot reassemble the batch."""

    def generate_code(self):
        decode_labels = super().generate_code()

        def decode(indices, destination, metadata, storage_state):
            return decode_labels(indices, destination, metadata, storage_state).copy()
        decode.python_code = True
        decode.per_sample = True
        return decode


def test_a_broken_per_sample_declaration_is_named(dataset):
    loader = Loader(dataset, batch_size=16, num_workers=2, pipelines=only(label=[CopyingDecoder(), ToTensor()]),
                    indices=np.arange(16))
    with pytest.raises(TypeError, match='CopyingDecoder.*per_sample = True.*not its destination'):
        next(iter(loader))
    assert wait_for_no_threads() == 0
