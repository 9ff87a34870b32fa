"""`EpochIterator`: builds one epoch's batches on worker threads and hands them out in order.

Threads, not processes: each worker takes the next batch number, runs every output pipeline for it into
the buffers of slot ``batch % slots`` and publishes the result. A worker takes a batch only while it is at
most `slots` past the last batch the consumer released, so a slot is never rewritten while the consumer can
still hold its batch.

The head and the tail: the first batch a Loader serves is built by every worker (no other batch is taken until it
is published: the consumer waits for that one, and a new process waits for it longest), and once every batch of
an epoch is taken, a worker with nothing left to take helps the batches still being built. Their owners run each
per-sample decoder (``per_sample = True``, see `ffcv.pipeline.operation`) in parts of rows that any worker may
take (`_SharedParts`); the owner takes parts too, waits for all of them and runs the batch's other steps itself.
Seeds are per sample, so the bytes are those of a whole-batch decode.

Failure and shutdown rules (no hangs):
* an exception in a worker is stored with its batch and re-raised by the consumer when it asks for that
  batch, with the original traceback and a note naming the batch and samples; the epoch then stops;
* breaking out of the loop, deleting the iterator, Ctrl-C or interpreter exit stop the workers: they
  only ever wait on a condition that `close()` signals (or, an owner, for parts already running, which
  end by themselves), and they hold no reference to the iterator;
* an exception in a part run by a helper goes to the part's owner, which raises it as its batch's error
  (the first failing part in row order); no part is started after one failed.

What a pipeline yields: its last step's result, unless the decoder at its root defines
``finish_output(result, buffers)`` (the variable-length decoders of `ffcv.fields.ragged`): then what that
returns for the result and the decoder's own buffers of the batch, e.g. ``(padded, lengths)`` or a list.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import threading
import weakref
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.graph import select_buffer  # noqa: F401
from ..traversal_order.quasi_random import QuasiRandom  # noqa: F401
from ..utils import chunks  # noqa: F401


def __getattr__(name: str):
    if name == 'IS_CUDA':  # FFCV's constant, evaluated on use: importing ffcv must not initialise CUDA
        return torch.cuda.is_available()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
_live_states: "weakref.WeakSet[_EpochState]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for state in list(_live_states):
        state.close()


class _EpochState:
    """Everything the workers share; owned by an `EpochIterator`, never referencing it."""

    share_parts = True  # the head and the tail built in parts by every worker (False: each batch by one)

    def __init__(self, pipelines, run_order: List[int], columns: List[np.ndarray], batches: List[np.ndarray],
                 first_batch: int, context, seed: int, epoch: int, num_threads: int, slots: int, use_cuda: bool,
                 share_head: bool = False):
        self.pipelines = pipelines
        self.finishers = _finishers(pipelines)  # per pipeline: its root decoder's Step if it finishes outputs
        self.run_order = run_order         # pipeline indices, each branch after the pipeline it starts from
        self.columns = columns             # metadata column of each pipeline's field
        self.batches = batches
        self.context = context
        self.seed, self.epoch = seed, epoch
        self.slots = slots
        self.condition = threading.Condition()
        self.next_batch = first_batch      # next batch number a worker will take
        # the first batch while all workers build it (`share_head`: the loader's first); else None. Later
        # epochs start on every worker at once: their first batch waits less, and throughput is kept
        self.head = first_batch if self.share_parts and share_head else None
        self.released = first_batch - 1    # highest batch the consumer is done with
        self.results = {}                  # batch -> outputs tuple, or BaseException
        self.stopped = False
        self.closed = False                # close() was called: owners stop running parts too
        self.building = 0                  # batches taken and not yet published
        self.shared_parts: List[_SharedParts] = []  # tail decodes with parts left to take
        self.num_threads = num_threads
        self.use_cuda = use_cuda
        if use_cuda:
            self.streams = [torch.cuda.Stream() for _ in range(slots)]
            self.ready_events = [torch.cuda.Event() for _ in range(slots)]
            self.release_events: List[Optional[torch.cuda.Event]] = [None] * slots
        self.threads = [threading.Thread(target=_worker, args=(self,), daemon=True,
                                         name=f'ffcv-epoch{epoch}-worker{k}') for k in range(num_threads)]
        _live_states.add(self)
        for thread in self.threads:
            thread.start()

    def take(self):
        """Next task: a batch number to build (waiting for a free slot), or ``(parts, k)``: part k of a batch
        still being built once no batch is left to take; None when nothing is left or we stop."""
        with self.condition:
            while True:
                if self.stopped:
                    return None
                for parts in self.shared_parts:
                    k = self._claim(parts)
                    if k is not None:
                        return parts, k
                if self.next_batch < len(self.batches):
                    if self.next_batch <= self.released + self.slots and (
                            self.head is None or self.next_batch == self.head):
                        batch = self.next_batch
                        self.next_batch += 1
                        self.building += 1
                        return batch
                elif self.building == 0:
                    return None
                self.condition.wait()

    def _claim(self, parts: '_SharedParts') -> Optional[int]:
        """Number of the next part of `parts` to run, None if none is left (call with the condition held)."""
        if parts.failed or self.closed or parts.claimed == len(parts.tasks):
            return None
        k = parts.claimed
        parts.claimed += 1
        if parts.claimed == len(parts.tasks) and parts in self.shared_parts:
            self.shared_parts.remove(parts)
        return k

    def run_part(self, parts: '_SharedParts', k: int) -> None:
        """Run part k of `parts` (in any thread) and record its result or error."""
        error = None
        try:
            parts.results[k] = parts.tasks[k]()
        except BaseException as exc:  # noqa: B902 - raised by the part's owner
            error = exc
        with self.condition:
            parts.finished += 1
            if error is not None:
                if parts.error is None or k < parts.error[0]:
                    parts.error = (k, error)
                if parts in self.shared_parts:
                    self.shared_parts.remove(parts)
            self.condition.notify_all()

    def run_parts(self, part: Callable, count: int, gate=None) -> list:
        """Results of ``part(start, stop)`` over rows 0:count, in order: one call while batches are left to
        take; in the epoch's head and tail, parts that idle workers may run too (this thread runs parts until
        none is left, then waits for those others run). With `gate` (a `RowGate`: the batch's bytes are still
        arriving), each part decodes the next rows whose bytes have arrived, run by run of consecutive rows,
        and its result is its first run's."""
        size = max(4, -(-count // (8 * self.num_threads)))
        if gate is not None and count:  # the first part takes the first row to arrive: it loads the kernels meanwhile
            claimed = np.zeros(count, bool)
            sizes = [1] + [min(size, count - a) for a in range(1, count, size)]
            return self._share([functools.partial(_run_arrived, part, gate, claimed, n) for n in sizes])
        if count <= size:
            return [part(0, count)]
        return self._share([functools.partial(part, a, min(a + size, count)) for a in range(0, count, size)],
                           whole=functools.partial(part, 0, count))

    def _share(self, tasks: List[Callable], whole: Optional[Callable] = None) -> list:
        """The results of `tasks`, in order, offered to idle workers too in the epoch's head and tail; else
        run by this thread: `whole` (the same work in one call) if given, else each task."""
        with self.condition:
            shared = self.share_parts and self.num_threads > 1 and not self.stopped and (
                self.head is not None or self.next_batch >= len(self.batches))
            if not shared:
                parts = None
            else:
                parts = _SharedParts(tasks)
                self.shared_parts.append(parts)
                self.condition.notify_all()
        if parts is None:
            return [whole()] if whole is not None else [task() for task in tasks]
        while True:
            with self.condition:
                k = self._claim(parts)
                if k is None:
                    if parts in self.shared_parts:
                        self.shared_parts.remove(parts)
                    while parts.finished < parts.claimed:  # parts other workers are running end by themselves
                        self.condition.wait()
                    break
            self.run_part(parts, k)
        if parts.error is not None:
            raise parts.error[1]
        if parts.finished < len(parts.tasks):
            raise RuntimeError('the loader was closed while this batch was built')
        return parts.results

    def publish(self, batch: int, result) -> None:
        with self.condition:
            if batch == self.head:
                self.head = None
            self.building -= 1
            self.results[batch] = result
            if isinstance(result, BaseException):
                self.stopped = True  # the epoch cannot continue past a failed batch
            self.condition.notify_all()

    def close(self) -> None:
        with self.condition:
            if self.stopped and not self.threads:
                return
            self.stopped = self.closed = True
            self.condition.notify_all()
        current = threading.current_thread()
        for thread in self.threads:
            if thread is not current:
                thread.join(timeout=10)
        self.threads = []
        self.results.clear()
        try:
            self.context.close()
        finally:
            _live_states.discard(self)


class _SharedParts:
    """One per-sample decode of a batch in the head or the tail, split into parts (`tasks`: calls decoding
    some of its rows) for any worker."""

    def __init__(self, tasks: List[Callable]):
        self.tasks = tasks
        self.claimed = 0                   # parts handed out (in order)
        self.finished = 0                  # parts done or failed
        self.results: list = [None] * len(tasks)
        self.error: Optional[Tuple[int, BaseException]] = None  # (part, exception) of the first part failing

    @property
    def failed(self) -> bool:
        return self.error is not None


class _CollectorPause:
    """Python's cyclic garbage collector held off while a loader builds its first batch (nestable, any thread).

    That batch loads the pipelines' cached kernels: numba creates many long-lived objects, which in a fresh
    process tips Python into a full collection over every object torch created (0.15-0.35 s on 2 cores,
    about 40% of the wait for the first batch), while every thread waits for the kernels. Held off, no full
    collection came in the next two epochs either. The collector is re-enabled when the last builder of a
    first batch finishes (also on error), and only if it was enabled when the first one started. A remote
    file's first batch is decoded as its bytes arrive, so there the pause also spans those waits.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._reenable = False

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                self._reenable = gc.isenabled()
                gc.disable()
            self._depth += 1

    def __exit__(self, *exc_info):
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._reenable:
                gc.enable()


_first_batch_pause = _CollectorPause()


def _worker(state: _EpochState) -> None:
    while True:
        batch = state.take()
        if batch is None:
            return
        if isinstance(batch, tuple):  # a part of a batch another worker builds
            state.run_part(*batch)
            continue
        try:
            # the head (a loader's first batch) is cleared only when this thread publishes it
            result = _build_batch(state, batch, head=batch == state.head)
        except BaseException as exc:  # noqa: B902 - handed to the consumer, never lost
            indices = state.batches[batch]
            shown = ', '.join(str(int(i)) for i in indices[:8]) + (', ...' if len(indices) > 8 else '')
            if hasattr(exc, 'add_note'):
                exc.add_note(f'raised in an ffcv loader worker thread while building batch {batch} of epoch '
                             f'{state.epoch} (samples {shown})')
            state.publish(batch, exc)
            return
        state.publish(batch, result)


def _build_batch(state: _EpochState, batch: int, head: bool = False):
    slot = batch % state.slots
    indices = state.batches[batch]
    start_early = getattr(state.context, 'start_batch_early', None) if head else None
    if start_early is not None:
        # A loader's first batch from a remote file: its rows are decoded as their bytes arrive (the first
        # batch of a small file needs nearly every page)
        gate = start_early(batch, indices)
    else:
        gate = None
        state.context.start_batch(batch)  # a remote file: waits for the pages, with the collector on
    try:
        with _first_batch_pause if head else contextlib.nullcontext():
            return _run_batch(state, slot, indices, gate)
    finally:
        state.context.end_batch(batch)


def _run_arrived(part: Callable, gate, claimed: np.ndarray, count: int):
    """``part(start, stop)`` over the next `count` rows whose bytes have arrived (`gate`, a `RowGate`, hands
    them out; `claimed`: the rows already handed out), run by run of consecutive rows; the first run's result."""
    rows = gate.take(claimed, count)
    runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
    return [part(int(run[0]), int(run[-1]) + 1) for run in runs][0]


def _run_batch(state: _EpochState, slot: int, indices: np.ndarray, gate=None):
    if not state.use_cuda:
        return _run_pipelines(state, slot, indices, gate)
    stream = state.streams[slot]
    release = state.release_events[slot]
    if release is not None:
        stream.wait_event(release)  # the consumer is done with this slot's previous batch
    with torch.cuda.stream(stream):
        outputs = _run_pipelines(state, slot, indices, gate)
        state.ready_events[slot].record(stream)
    return outputs


def _run_pipelines(state: _EpochState, slot: int, indices: np.ndarray, gate=None):
    """Every pipeline on one batch; with `gate` (a `RowGate`), decoders that run in parts of rows decode
    rows as their bytes arrive, the others wait for the whole batch."""
    storage_state = state.context.state
    results, shared = [None] * len(state.pipelines), {}
    for index in state.run_order:
        pipeline = state.pipelines[index]
        run_parts = state.run_parts
        if gate is not None and pipeline.reads_heap:
            if pipeline.decodes_in_parts:
                run_parts = functools.partial(state.run_parts, gate=gate)
            else:
                gate.wait(range(indices.shape[0]))
        try:
            result = pipeline.run(slot, indices, state.columns[index], storage_state, state.seed, state.epoch, shared,
                                  run_parts)
            finisher = state.finishers[index]
            if finisher is not None:
                result = finisher.operation.finish_output(result, select_buffer(finisher.buffers, slot,
                                                                                indices.shape[0]))
        except Exception as exc:
            if hasattr(exc, 'add_note'):
                exc.add_note(f"in pipeline '{pipeline.name}' (field '{pipeline.field_name}')")
            raise
        results[index] = result
    return tuple(results)


def _finishers(pipelines) -> List[Optional[object]]:
    """For each pipeline, the Step of the decoder it starts from if that decoder defines `finish_output`."""
    owner = {id(step): pipeline for pipeline in pipelines for step in pipeline.steps}
    found = []
    for pipeline in pipelines:
        while pipeline.source is not None:  # a branch: the decoder of the pipeline it starts from
            pipeline = owner[id(pipeline.source)]
        root = pipeline.steps[0] if pipeline.steps else None
        found.append(root if root is not None and hasattr(root.operation, 'finish_output') else None)
    return found


class EpochIterator:
    """Iterator over the batches of one epoch (returned by ``iter(loader)``)."""

    def __init__(self, loader, batches: Sequence[np.ndarray], first_batch: int, context, epoch: int,
                 share_head: bool = False):
        self.loader_ref = weakref.ref(loader)
        self.epoch = epoch
        self.num_batches = len(batches)
        self.current = first_batch - 1  # batch held by the consumer
        use_cuda = torch.cuda.is_available() and any(p.uses_cuda for p in loader.pipelines)
        # every worker, even past the batches left: idle ones help decode the last batches (the tail)
        num_threads = max(1, loader.num_workers if len(batches) > first_batch else 1)
        columns = [loader.reader.column(p.field_index) for p in loader.pipelines]
        self._state = _EpochState(loader.pipelines, loader.run_order, columns, list(batches), first_batch, context,
                                  loader.seed, epoch, num_threads, loader.slots, use_cuda, share_head)

    def __iter__(self):
        return self

    def __next__(self):
        state = self._state
        loader = self.loader_ref()
        finished = self.current  # the consumer is done with the batch it held
        if state.use_cuda and finished >= 0:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream())
            state.release_events[finished % state.slots] = event
        wanted = finished + 1
        if wanted >= self.num_batches:
            if loader is not None and loader._current_epoch == self.epoch:
                loader._finished = True
            self.close()
            raise StopIteration
        try:
            with state.condition:
                state.released = finished
                state.results.pop(finished, None)
                state.condition.notify_all()
                while wanted not in state.results:
                    if state.stopped and not state.threads:
                        raise RuntimeError('the loader was closed')
                    state.condition.wait(timeout=0.5)
                result = state.results[wanted]
        except BaseException:  # Ctrl-C while waiting: this frame (and the iterator) lives on in the
            self.close()       # traceback for as long as the handler runs, so stop the workers now
            raise
        if isinstance(result, BaseException):
            self.close()
            raise result
        if state.use_cuda:
            torch.cuda.current_stream().wait_event(state.ready_events[wanted % state.slots])
        self.current = wanted
        if loader is not None:
            loader._batches_served = wanted + 1
        return result

    def __len__(self) -> int:
        return self.num_batches

    def close(self) -> None:
        """Stop the workers and release the epoch's memory (idempotent)."""
        self._state.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        if getattr(self, '_state', None) is not None:
            self.close()
