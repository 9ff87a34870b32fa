"""`ffcv bench FILE`: images/s of each stage of a loading pipeline on a user's own `.beton` file.

For every image field, with `num_workers` threads as the `Loader` uses them:

* ``read``: the stored bytes of each image touched once (from disk if the file is not in the page cache);
* ``decode``: JPEG decoding at full size (raw images: a copy), for reference;
* each step of the pipeline as the `Loader` runs it: the decoder (decode + crop/resize), every operation,
  and the host-to-device copy when CUDA is available, timed inside the worker threads;
* the loader end to end (every field of the file).

A stage's images/s is what the loader would reach if that stage were all it had to do, with every worker
on it: ``num_workers / (thread-seconds per image)``. The bottleneck is the stage that costs the most
thread-time per image.

Examples
--------
>>> report = bench_file('train.beton', pipeline='train', batches=20)
>>> print(format_report(report))
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

import numba
import numpy as np
import torch

from ..imaging import jpeg
from ..fields._decoding import NO_SIZES, copy_blobs
from ..fields.rgb_image import IMAGE_MODES, RGBImageField
from ..pipeline.storage import locate_blobs
from ..pipeline.compiler import run_kernel

PIPELINES = ('auto', 'train', 'val', 'simple')
DEFAULT_RES = {'train': 160, 'val': 224}
JPG = IMAGE_MODES['jpg']


@numba.njit(nogil=True, cache=True)
def touch_bytes(memory, starts, sizes):
    """Sum of every byte of each blob (makes the OS read them: the cost of getting the data)."""
    total = np.uint64(0)
    for i in range(starts.shape[0]):
        for j in range(starts[i], starts[i] + sizes[i]):
            total += memory[j]
    return total


class StageTimer:
    """Thread-safe totals of (thread-seconds, images) per stage, switched on and off as a whole."""

    def __init__(self):
        self.lock = threading.Lock()
        self.enabled = False
        self.totals: Dict[str, List[float]] = {}

    def add(self, stage: str, seconds: float, images: int) -> None:
        if self.enabled:
            with self.lock:
                total = self.totals.setdefault(stage, [0.0, 0])
                total[0] += seconds
                total[1] += images

    def on_step(self, pipeline, step, started: float, result, count: int) -> None:
        """The engine's per-step hook (`OutputPipeline.on_step`): time the step as 'pipeline/position'."""
        if isinstance(result, torch.Tensor) and result.is_cuda:
            torch.cuda.current_stream().synchronize()  # count the copy, not its launch
        self.add(f'{pipeline.name}/{step.position}', time.perf_counter() - started, count)


def _stage(name: str, seconds: float, images: int, num_workers: int, in_pipeline: bool) -> dict:
    per_image = seconds / max(images, 1)
    return {'stage': name, 'images': int(images), 'thread_seconds': seconds, 'us_per_image': per_image * 1e6,
            'images_per_s': num_workers / per_image if per_image > 0 else float('inf'),
            'in_pipeline': in_pipeline}


def _image_pipeline(kind: str, res: Optional[int], device: Optional[str]) -> list:
    from ..fields.decoders import (CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder,
                                  SimpleRGBImageDecoder)
    from ..transforms import RandomHorizontalFlip, ToDevice, ToTensor, ToTorchImage
    if kind == 'train':
        size = res or DEFAULT_RES['train']
        ops = [RandomResizedCropRGBImageDecoder((size, size)), RandomHorizontalFlip()]
    elif kind == 'val':
        size = res or DEFAULT_RES['val']
        ops = [CenterCropRGBImageDecoder((size, size), ratio=224 / 256)]
    else:
        ops = [SimpleRGBImageDecoder()]
    ops.append(ToTensor())
    if device is not None:
        ops.append(ToDevice(device))
    return ops + [ToTorchImage()]


def _stage_name(op, position: int) -> str:
    from ..transforms import ToDevice
    name = type(op).__name__
    if position == 0:
        return f'decode + crop/resize ({name})' if 'Crop' in name else f'decode ({name})'
    return f'host-to-device ({name})' if isinstance(op, ToDevice) else name


def _batches(count: int, batch_size: int, batches: int, rng: np.random.Generator) -> List[np.ndarray]:
    """`batches` random batches of sample ids (samples repeat if the file is small)."""
    ids = np.concatenate([rng.permutation(count) for _ in range(-(-batches * batch_size // count))])
    return [np.sort(ids[i * batch_size:(i + 1) * batch_size]) for i in range(batches)]


def _run_threads(work, batches: Sequence[np.ndarray], num_workers: int) -> float:
    """Wall seconds to run ``work(batch)`` for every batch on `num_workers` threads."""
    with ThreadPoolExecutor(num_workers) as pool:
        list(pool.map(work, [batch[:1] for batch in batches[:1]] * num_workers))  # threads, compilation
        start = time.perf_counter()
        list(pool.map(work, batches))
        return time.perf_counter() - start


def _standalone_stages(column, state, batches, num_workers: int) -> List[dict]:
    """The `read` and full-size `decode` stages of one image field (independent of the pipeline)."""
    memory = state[0]
    images = sum(len(b) for b in batches)
    scratch = threading.local()
    max_bytes = int((column['height'].astype(np.int64) * column['width'] * 3).max())

    def read(indices):
        starts, sizes = locate_blobs(column['data_ptr'][indices], state)
        run_kernel(touch_bytes, memory, starts, sizes)

    def decode(indices):
        jpegs = indices[column['mode'][indices] == JPG]
        raw = indices[column['mode'][indices] != JPG]
        if raw.size:  # one compiled copy, as the decoders do
            raw_buffer = getattr(scratch, 'raw', None)
            if raw_buffer is None or raw_buffer.shape[0] < raw.size:
                raw_buffer = scratch.raw = np.empty((len(indices), max_bytes), np.uint8)
            run_kernel(copy_blobs, raw, column['data_ptr'], NO_SIZES, state, raw_buffer, False)
        if jpegs.size:
            buffer = getattr(scratch, 'buffer', None)
            if buffer is None:
                buffer = scratch.buffer = np.empty(max_bytes, np.uint8)
            starts, sizes = locate_blobs(column['data_ptr'][jpegs], state)
            for k in range(jpegs.size):
                jpeg.decode_jpeg(memory[starts[k]:starts[k] + sizes[k]], out=buffer)

    jpeg_share = float((column['mode'] == JPG).mean()) if column.size else 0.0
    decode_name = 'decode (JPEG, full size)' if jpeg_share == 1 else (
        'decode (raw copy)' if jpeg_share == 0 else f'decode ({jpeg_share:.0%} JPEG full size, rest raw copy)')
    return [_stage('read (bytes touched)', num_workers * _run_threads(read, batches, num_workers), images,
                   num_workers, True),
            _stage(decode_name, num_workers * _run_threads(decode, batches, num_workers), images, num_workers,
                   False)]


def _choose_pipeline(kind: str, column) -> str:
    if kind != 'auto':
        return kind
    one_size = column.size and (column['height'] == column['height'][0]).all() and \
        (column['width'] == column['width'][0]).all()
    return 'simple' if one_size else 'train'


def bench_file(path: str, pipeline: str = 'auto', res: Optional[int] = None, batch_size: int = 256,
               num_workers: int = -1, batches: int = 20, device: Optional[str] = 'auto', seed: int = 0,
               custom_fields: Optional[Dict[str, type]] = None, remote=None) -> dict:
    """Measure every stage of loading `path`; a report for `format_report` (or JSON).

    Parameters
    ----------
    path : str
        A `.beton` file.
    pipeline : {'auto', 'train', 'val', 'simple'}
        Image pipeline: ``train`` RandomResizedCrop(res, default 160) + flip; ``val`` CenterCrop(res, default
        224, ratio 224/256); ``simple`` whole images (one size only); ``auto`` simple for fixed-size fields,
        else train. Every pipeline ends with ToTensor, ToDevice (if CUDA) and ToTorchImage.
    res : int, optional
        Output side of the crop pipelines.
    batch_size : int
        As for `Loader`, capped to the number of samples (the report gives the batch size used).
    num_workers : int
        As for `Loader` (num_workers < 1: every CPU this process may use).
    batches : int
        Batches measured per stage (after one warm-up batch).
    device : str or None
        Device of the host-to-device stage; 'auto': 'cuda' when available; None: no copy.
    seed : int
        Seed of the sampled batches and of the random crops.
    custom_fields : mapping, optional
        Field classes of custom fields, as for `Loader`.
    remote : RemoteOptions or dict, optional
        For a URL, as for `Loader` (the pages of the sampled batches are fetched before the stages run).

    Returns
    -------
    dict
        ``{'file', 'num_samples', 'batch_size' (used), 'requested_batch_size', 'num_workers', 'batches',
        'device', 'fields': [{'name', 'pipeline', 'stages': [...]}], 'loader': {...}, 'bottleneck': {...}}``;
        each stage has 'stage', 'images_per_s', 'us_per_image' (thread-time), 'images' and 'in_pipeline'.

    Raises
    ------
    ValueError
        An unknown `pipeline`, a file without samples, or images the pipeline cannot take.
    """
    from ..loader import Loader, OrderOption
    from ..reader import Reader
    from ..utils import available_cpus
    num_workers = available_cpus() if num_workers < 1 else int(num_workers)
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else None
    if pipeline not in PIPELINES:
        raise ValueError(f'pipeline must be one of {PIPELINES}, got {pipeline!r}')
    reader = Reader(path, custom_handlers=custom_fields, remote=remote)
    if reader.num_samples == 0:
        raise ValueError(f'{path} holds no samples: nothing to measure')
    requested_batch_size, batch_size = batch_size, min(batch_size, reader.num_samples)  # no batch beyond the file
    image_fields = [name for name, handler in reader.handlers.items() if isinstance(handler, RGBImageField)]
    kinds = {name: _choose_pipeline(pipeline, reader.column(name))
             for name in image_fields}
    pipelines = {name: _image_pipeline(kinds[name], res, device) for name in image_fields}
    order = OrderOption.RANDOM if 'train' in kinds.values() else OrderOption.SEQUENTIAL
    loader = Loader(path, batch_size=batch_size, num_workers=num_workers, order=order, seed=seed,
                    pipelines=pipelines, drop_last=False, custom_fields=custom_fields, remote=remote)
    sampled = _batches(reader.num_samples, batch_size, batches, np.random.default_rng(seed))
    if reader.remote is None:
        context = loader.memory_manager.schedule_epoch([])
    else:  # every page of the sampled batches in memory at once, fetched before anything is timed
        context = loader.memory_manager.schedule_epoch(sampled, lookahead=len(sampled))
        for index in range(len(sampled)):
            context.start_batch(index)
    state = context.state

    timer = StageTimer()
    report_fields = []
    for output in loader.pipelines:
        if output.name in pipelines:
            column = reader.column(output.field_index)
            stages = _standalone_stages(column, state, sampled, num_workers)
            report_fields.append({'name': output.name, 'pipeline': kinds[output.name], 'stages': stages,
                                  'ops': []})
        output.on_step = timer.on_step
    context.close()

    end_to_end = _run_loader(loader, batches, timer)
    for entry in report_fields:
        output = next(o for o in loader.pipelines if o.name == entry['name'])
        for step in output.steps:
            seconds, images = timer.totals.get(f'{output.name}/{step.position}', (0.0, 0))
            entry['stages'].append(_stage(_stage_name(step.operation, step.position), seconds, images,
                                          num_workers, True))
        entry['ops'] = [repr(step.operation) for step in output.steps]
    loader.close()
    report = {'file': path, 'num_samples': reader.num_samples, 'batch_size': batch_size,
              'requested_batch_size': requested_batch_size, 'num_workers': num_workers, 'batches': batches,
              'device': device, 'fields': report_fields, 'loader': end_to_end}
    report['bottleneck'] = _bottleneck(report)
    return report


def _run_loader(loader, batches: int, timer: StageTimer) -> dict:
    """Warm up (one batch), then time `batches` batches of the loader with the stage timers on."""
    for _ in loader:  # first batch: compilation, buffer allocation, first page touches
        break
    timer.enabled = True
    images = served = 0
    start = time.perf_counter()
    while served < batches:
        for batch in loader:
            images += len(batch[0])
            served += 1
            if served == batches:
                break
    seconds = time.perf_counter() - start
    timer.enabled = False
    return {'images': images, 'batches': served, 'seconds': seconds, 'images_per_s': images / seconds}


def _bottleneck(report: dict) -> dict:
    """The stage costing the most thread-time per image, and how close the loader gets to its stages."""
    stages = [(f"{entry['name']}: {stage['stage']}", stage) for entry in report['fields']
              for stage in entry['stages'] if stage['in_pipeline']]
    if not stages:
        return {'stage': None}
    name, worst = max(stages, key=lambda item: item[1]['us_per_image'])
    # The loader runs every step (not the separate read pass) for every image, on `num_workers` threads.
    steps_us = sum(s['us_per_image'] for n, s in stages if not s['stage'].startswith('read'))
    ideal = report['num_workers'] * 1e6 / steps_us if steps_us else float('inf')
    return {'stage': name, 'images_per_s': worst['images_per_s'], 'share': worst['us_per_image'] / (
        steps_us + (worst['us_per_image'] if worst['stage'].startswith('read') else 0)),
        'ideal_images_per_s': ideal, 'loader_over_ideal': report['loader']['images_per_s'] / ideal}


def format_report(report: dict) -> str:
    """Human-readable table of a `bench_file` report."""
    batch = f"batch {report['batch_size']}"
    if report['batch_size'] < report.get('requested_batch_size', report['batch_size']):
        batch += f" (requested {report['requested_batch_size']}, capped to the number of samples)"
    lines = [f"{report['file']}: {report['num_samples']:,} samples, {batch}, "
             f"{report['num_workers']} worker threads, {report['batches']} batches per stage, "
             f"host-to-device: {report['device'] or 'skipped (no CUDA)'}"]
    for entry in report['fields']:
        lines += ['', f"field '{entry['name']}', pipeline {entry['pipeline']}: {' -> '.join(entry['ops'])}",
                  f"  {'stage':<58}{'images/s':>12}{'us/image':>11}"]
        for stage in entry['stages']:
            note = '' if stage['in_pipeline'] else '   (reference: not a loader step)'
            lines.append(f"  {stage['stage']:<58}{stage['images_per_s']:>12,.0f}{stage['us_per_image']:>11.1f}"
                         f'{note}')
    loader, bottleneck = report['loader'], report['bottleneck']
    unit = 'images' if report['fields'] else 'samples'
    lines += ['', f"loader end to end: {loader['images_per_s']:,.0f} {unit}/s ({loader['batches']} batches, "
                  f'all fields)']
    if bottleneck['stage'] is not None:
        lines.append(f"bottleneck: {bottleneck['stage']} ({bottleneck['images_per_s']:,.0f} images/s, "
                     f"{bottleneck['share']:.0%} of the per-image time)")
        lines.append(f"the steps add up to {bottleneck['ideal_images_per_s']:,.0f} images/s on "
                     f"{report['num_workers']} threads; the loader reached {bottleneck['loader_over_ideal']:.0%} "
                     'of that (the rest: start-up, Python between steps, the consumer, GIL contention)')
    return '\n'.join(lines)
