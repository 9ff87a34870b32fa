"""`Loader`: FFCV's data loader (same signature), deterministic, resumable and hang-free."""
from __future__ import annotations

import enum
import os
import warnings
from typing import Literal, Mapping, Optional, Sequence, Type, Union

import numpy as np
import torch

from ..memory_managers import OSCacheManager
from ..memory_managers.process_cache.manager import physical_memory
from ..reader import Reader
from ..traversal_order import QuasiRandom, Random, Sequential
from ..traversal_order.base import TraversalOrder
from ..utils import available_cpus
from . import _arguments as arguments
from ._resolve import build_pipelines, run_order
from .epoch_iterator import EpochIterator

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..fields.base import Field  # noqa: F401
from ..memory_managers.base import MemoryManager  # noqa: F401
from ..memory_managers.process_cache import ProcessCacheManager  # noqa: F401
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.operation import Operation  # noqa: F401
from ..pipeline.pipeline_spec import PipelineSpec  # noqa: F401
from ..pipeline.pipeline import Pipeline  # noqa: F401


class OrderOption(enum.Enum):
    """Built-in sample orders."""
    SEQUENTIAL = enum.auto()
    RANDOM = enum.auto()
    QUASI_RANDOM = enum.auto()


ORDER_TYPE = Union[TraversalOrder, Literal[OrderOption.SEQUENTIAL, OrderOption.RANDOM]]
ORDER_MAP: Mapping[OrderOption, Type[TraversalOrder]] = {
    OrderOption.RANDOM: Random, OrderOption.SEQUENTIAL: Sequential, OrderOption.QUASI_RANDOM: QuasiRandom}


def _order_class(order) -> Type[TraversalOrder]:
    if isinstance(order, OrderOption):
        return ORDER_MAP[order]
    if isinstance(order, type) and issubclass(order, TraversalOrder):
        return order
    raise ValueError(f'order must be an OrderOption (SEQUENTIAL, RANDOM, QUASI_RANDOM) or a TraversalOrder '
                     f'subclass, got {order!r}')


def _default_process_cache() -> int:
    """FFCV_DEFAULT_CACHE_PROCESS=1 makes os_cache=False the default (FFCV's switch; unreadable values: 0)."""
    try:
        return int(os.environ.get('FFCV_DEFAULT_CACHE_PROCESS', '0'))
    except ValueError:
        return 0


DEFAULT_PROCESS_CACHE = _default_process_cache()
DEFAULT_OS_CACHE = not DEFAULT_PROCESS_CACHE


class Loader:
    """Loads batches from a `.beton` file through compiled pipelines run by worker threads.

    Parameters
    ----------
    fname : str
        The `.beton` file: a path, or any fsspec URL (``s3://bucket/train.beton``, ``https://...``; needs
        ``pip install 'ffcv-fast[remote]'``), read without copying it first (see `remote`).
    batch_size : int
        Samples per batch (per process when `distributed`).
    num_workers : int
        Worker threads (< 1: every CPU this process may use).
    os_cache : bool
        True: memory-map the file (OS page cache). False: a process cache that reads pages ahead of the
        order (use with QUASI_RANDOM for datasets larger than RAM).
    order : OrderOption or TraversalOrder subclass
        Sample order.
    distributed : bool
        Take rank and world size from torch.distributed: each rank gets its share of one global order.
    seed : int, optional
        Seed of the order and of every random augmentation. With a seed, batches are identical for any
        number of workers and from run to run. None: a random seed (see `loader.seed`).
    indices : sequence of int, optional
        Subset of the file's samples to use.
    pipelines : mapping
        Output name -> list of operations (the first may be a decoder), a PipelineSpec, or None to skip
        a field. Fields not mentioned are decoded with their default decoder + ToTensor().
    custom_fields : mapping
        Field name -> Field class for fields written with a custom Field (type id 255).
    drop_last : bool
        Drop the last incomplete batch.
    batches_ahead : int
        Batches prepared ahead of the one being consumed.
    recompile : bool
        Regenerate the pipelines' code at every epoch (for ops whose code depends on mutable attributes).
    order_kwargs : mapping
        Extra keyword arguments of the order class.
    remote : RemoteOptions or dict, optional
        For a URL: connections, prefetch depth, timeouts, retries, the local page cache folder and size,
        and fsspec's storage_options (see `ffcv.remote.RemoteOptions`). A URL is always read through the
        remote page cache (`os_cache` does not apply).

    Notes
    -----
    Iterating gives one epoch; each batch is a tuple with one entry per output (fields in file order,
    then extra outputs). ``state_dict()`` / ``load_state_dict()`` resume mid-epoch exactly.
    """

    def __init__(self, fname: str, batch_size: int, num_workers: int = -1, os_cache: bool = DEFAULT_OS_CACHE,
                 order: Union[OrderOption, Type[TraversalOrder]] = OrderOption.SEQUENTIAL,
                 distributed: bool = False, seed: Optional[int] = None, indices: Optional[Sequence[int]] = None,
                 pipelines: Optional[Mapping] = None, custom_fields: Optional[Mapping] = None,
                 drop_last: bool = True, batches_ahead: int = 3, recompile: bool = False,
                 order_kwargs: Optional[Mapping] = None, remote=None):
        # the arguments as given, for `filter` to build loaders like this one
        self._args = dict(fname=fname, batch_size=batch_size, num_workers=num_workers, os_cache=os_cache,
                          order=order, distributed=distributed, seed=seed, indices=indices, pipelines=pipelines,
                          custom_fields=custom_fields, drop_last=drop_last, batches_ahead=batches_ahead,
                          recompile=recompile, order_kwargs=order_kwargs, remote=remote)
        self.batch_size = arguments.integer('batch_size', batch_size)
        num_workers = arguments.integer('num_workers', num_workers, None, arguments.MAX_THREADS, ' (< 1: all CPUs)')
        self.batches_ahead = arguments.integer('batches_ahead', batches_ahead, maximum=arguments.MAX_THREADS)
        self.fname = os.fspath(fname)
        self.num_workers = available_cpus() if num_workers < 1 else num_workers
        self.os_cache = arguments.flag('os_cache', os_cache)
        self.distributed = arguments.flag('distributed', distributed)
        self.drop_last = arguments.flag('drop_last', drop_last)
        self.recompile = arguments.flag('recompile', recompile)
        for name, value in (('pipelines', pipelines), ('custom_fields', custom_fields), ('order_kwargs', order_kwargs)):
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(f'{name} must be a mapping (a dict) or None, got {type(value).__name__}')
        self.lookahead = max(self.batches_ahead, self.num_workers)
        self.slots = self.lookahead + 1
        order_class = _order_class(order)
        self.order_option = order

        self.remote_options = arguments.remote_options(self.fname, remote)
        self.reader = Reader(self.fname, custom_handlers=dict(custom_fields or {}), remote=self.remote_options)
        if indices is None:
            self.indices = np.arange(self.reader.num_samples, dtype=np.int64)
        else:
            self.indices = arguments.sample_indices(indices, self.reader.num_samples, self.fname)
        if seed is None:
            if distributed and order != OrderOption.SEQUENTIAL:
                warnings.warn('distributed shuffled order without a seed: using seed 0 on every rank so that '
                              'ranks agree on the order', stacklevel=2)
                seed = 0
            else:
                seed = int(np.random.randint(0, 2**31 - 1))
        self.seed = arguments.seed_value(seed)

        if self.reader.remote is not None:
            from ..memory_managers.remote import RemoteCacheManager
            self.memory_manager = RemoteCacheManager(self.reader, self.remote_options, lookahead=self.lookahead)
        elif os_cache:
            self.memory_manager = OSCacheManager(self.reader)
        else:
            from ..memory_managers.process_cache import ProcessCacheManager
            self.memory_manager = ProcessCacheManager(self.reader, lookahead=self.lookahead)
        self.traversal_order = order_class(self, **dict(order_kwargs or {}))

        self.pipelines = build_pipelines(dict(pipelines or {}), self.reader, self.memory_manager.compile_reader())
        self.run_order = run_order(self.pipelines)  # branches after the pipelines they start from
        self.generate_code()
        self._buffers = {}
        self.next_epoch = 0            # epoch of the next fresh iter(loader)
        self._current_epoch = None     # epoch of the last iter(loader)
        self._batches_served = 0       # batches handed out in that epoch
        self._finished = False         # that epoch was iterated to its end
        self._resume = None            # (epoch, batch) set by load_state_dict for the next iter(loader)
        first = self._epoch_order(0)
        self._length = self._num_batches(len(first))

    # -- order and length --

    def _epoch_order(self, epoch: int) -> np.ndarray:
        order = np.asarray(self.traversal_order.sample_order(epoch), dtype=np.int64)
        if order.size and (order.min() < 0 or order.max() >= self.reader.num_samples):
            raise IndexError(f'{type(self.traversal_order).__name__}.sample_order({epoch}) returned sample ids '
                             f'outside [0, {self.reader.num_samples})')
        return order

    def _num_batches(self, num_samples: int) -> int:
        if self.drop_last:
            return num_samples // self.batch_size
        return -(-num_samples // self.batch_size)

    def __len__(self) -> int:
        return self._length

    def next_traversal_order(self) -> np.ndarray:
        """Sample ids the next ``iter(loader)`` visits, in order (this rank's share when distributed)."""
        epoch = self._resume[0] if self._resume is not None else self.next_epoch
        return self._epoch_order(epoch)

    def generate_code(self) -> None:
        """(Re)generate and compile every pipeline's code (done at construction, and each epoch with
        ``recompile=True``)."""
        for pipeline in self.pipelines:
            pipeline.generate()

    # -- iteration --

    def __iter__(self) -> EpochIterator:
        import cv2
        cv2.setNumThreads(1)  # parallelism comes from the worker threads
        epoch, first_batch = self._resume if self._resume is not None else (self.next_epoch, 0)
        self._resume = None
        order = self._epoch_order(epoch)
        count = self._num_batches(len(order))
        batches = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(count)]
        for index in self.run_order:  # shapes may change between epochs (e.g. progressive resizing)
            self.pipelines[index].declare()
        if self.recompile:
            self.generate_code()
        # host buffers pinned whenever CUDA is available (as FFCV's): a consumer's own .cuda(non_blocking=True)
        # of a batch is then asynchronous too, not only ToDevice's copy
        pin = torch.cuda.is_available()
        arguments.check_buffer_memory(self.pipelines, self.batch_size, self.slots, self.fname, physical_memory())
        for pipeline in self.pipelines:
            pipeline.allocate(self.batch_size, self.slots, pin, self._buffers)
        self.next_epoch = epoch + 1
        first_iteration = self._current_epoch is None  # (also of a loader resumed from a state_dict)
        self._current_epoch, self._batches_served, self._finished = epoch, first_batch, first_batch >= count
        context = self.memory_manager.schedule_epoch(batches, first_batch=first_batch)
        return EpochIterator(self, batches, first_batch, context, epoch, share_head=first_iteration)

    # -- resume --

    def state_dict(self) -> dict:
        """Position of the next batch: resuming from it continues exactly there.

        Call it between batches (typically when checkpointing after an optimizer step). Until an epoch is
        iterated to its end it points into that epoch (also after a `break` or an exception: the rest of the
        epoch is what a preempted run still owes); after its last batch, at the start of the next epoch.
        """
        if self._resume is not None:
            epoch, batch = self._resume
        elif self._current_epoch is None:
            epoch, batch = self.next_epoch, 0
        elif not self._finished:
            epoch, batch = self._current_epoch, self._batches_served
        else:
            epoch, batch = self._current_epoch + 1, 0
        return {'epoch': int(epoch), 'batches_served': int(batch), 'seed': self.seed,
                'num_samples': self.reader.num_samples, 'length': self._length, 'batch_size': self.batch_size}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from a `state_dict()`: the next ``iter(loader)`` resumes that epoch at that batch."""
        if state.get('num_samples', self.reader.num_samples) != self.reader.num_samples:
            raise ValueError(f"state_dict is for a file of {state['num_samples']} samples; "
                             f'{self.fname} has {self.reader.num_samples}')
        if state.get('batch_size', self.batch_size) != self.batch_size:
            raise ValueError(f"state_dict was saved with batch_size {state['batch_size']}, this loader uses "
                             f'{self.batch_size}')
        if not 0 <= int(state['batches_served']) <= self._length:
            raise ValueError(f"state_dict batches_served={state['batches_served']} is outside [0, {self._length}]")
        self.seed = int(state['seed'])
        self._resume = (int(state['epoch']), int(state['batches_served']))

    # -- FFCV extras --

    def filter(self, field_name: str, condition) -> 'Loader':
        """A new Loader (same arguments) over the samples whose `field_name` satisfies `condition`.

        `condition` receives each sample's value as this loader's own pipeline for that field produces it
        (the default decoder + ToTensor() when it has none), as in FFCV. Samples are tested in file order,
        on every rank, with the seed of this loader; the result keeps every other argument (order,
        seed, order_kwargs, ...) and selects sample ids of the file (FFCV selects positions).
        """
        if field_name not in self.reader.handlers:
            raise ValueError(f"'{field_name}' is not a field of {self.fname}")
        own = dict(self._args['pipelines'] or {})
        pipelines = {name: None for name in self.reader.field_names if name != field_name}
        if own.get(field_name) is not None:  # a field this loader skips is tested on its default pipeline
            pipelines[field_name] = own[field_name]
        probe = Loader(**{**self._args, 'pipelines': pipelines, 'order': OrderOption.SEQUENTIAL,
                          'order_kwargs': None, 'distributed': False, 'drop_last': False, 'seed': self.seed,
                          'indices': self.indices})
        keep, position = [], 0
        for (values,) in probe:
            for value in values:
                if condition(value):
                    keep.append(int(self.indices[position]))
                position += 1
        return Loader(**{**self._args, 'seed': self.seed, 'indices': keep})

    @property
    def code(self):
        """The per-step functions of every output (for inspection)."""
        return [[step.function for step in p.steps] for p in self.pipelines]

    def close(self) -> None:
        """Free the batch buffers (the next epoch allocates new ones). The file stays mapped until the loader
        is garbage-collected; an epoch in progress stops when its iterator is closed or dropped."""
        self._buffers.clear()

