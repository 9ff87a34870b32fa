"""NVIDIA DALI on the CPU as a peer system of bench_loader.py (loader_worker.py runs it as system 'dali').

What it reads: the JPEG bytes that the torch system holds in memory (bench_loader.export_for_torch's blob
and offsets, exported once from the same photo .beton), handed to DALI one batch at a time by
`fn.external_source`. So DALI, like the torch DataLoader, starts from encoded bytes in RAM (ours and FFCV
read them from the page-cached .beton), with no file open or read per image that `fn.readers.file` would add.

Pipelines, every operator on the CPU (`device_id=None`), `num_threads` = the other systems' thread count,
batches through DALI's PyTorch iterator (DALIGenericIterator) as (B, 3, res, res) uint8 CPU tensors (CHW,
as ToTorchImage gives) and (B,) int64 labels:

  train  external_source -> decoders.image_random_crop (area 0.08-1, aspect ratio 3/4-4/3, 10 attempts:
         RandomResizedCrop's draw; DALI decodes only the crop's region) -> resize to res x res (DALI's
         default: linear, antialiased) -> crop_mirror_normalize (mirror with probability 0.5, uint8, CHW)
  val    external_source -> decoders.image -> resize(resize_shorter=round(res * 256 / 224)) ->
         crop_mirror_normalize (center crop res x res, uint8, CHW)

Order: train draws a new permutation each epoch (NumPy, seeded with (seed, epoch)) and serves full batches
only (drop_last); val is sequential and ends with the partial batch, as the other systems do.

Install (not a project dependency): ``pip install nvidia-dali-cuda130``; it runs without a GPU.
"""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

SYSTEM = 'dali'


def unavailable() -> Optional[str]:
    """None when DALI and its PyTorch plugin import, else the reason in one line."""
    try:
        import nvidia.dali  # noqa: F401
        import nvidia.dali.plugin.pytorch  # noqa: F401
    except ImportError as error:
        return f'nvidia-dali-cuda130 not installed ({error})'
    return None


def preload() -> None:
    """Import DALI and torch (kept out of the timed first epoch, as the other systems' imports are)."""
    import nvidia.dali.fn  # noqa: F401
    import nvidia.dali.plugin.pytorch  # noqa: F401
    import torch  # noqa: F401


class EpochBatches:
    """external_source's source: each `iter()` is one epoch of ([JPEG uint8 arrays], [label (1,) arrays]).

    `indices` are the images served; `shuffle`: a new permutation per epoch and full batches only,
    else sequential with the last partial batch.
    """

    def __init__(self, blob: np.ndarray, offsets: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                 batch_size: int, shuffle: bool, seed: int):
        self.blob, self.offsets, self.labels = blob, offsets, labels.astype(np.int64)
        self.indices, self.batch_size, self.shuffle, self.seed = indices, batch_size, shuffle, seed
        self.epoch = 0

    def __iter__(self) -> Iterator[Tuple[list, list]]:
        order = self.indices
        stop = len(order)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
            stop -= stop % self.batch_size
        self.epoch += 1
        for start in range(0, stop, self.batch_size):
            batch = order[start:start + self.batch_size]
            yield ([self.blob[self.offsets[i]:self.offsets[i + 1]] for i in batch],
                   [self.labels[i:i + 1] for i in batch])


def build_pipeline(source: EpochBatches, pipeline: str, res: int, batch_size: int, num_threads: int, seed: int):
    """The DALI CPU pipeline for 'train' or 'val' (module docstring), outputs (images, labels)."""
    from nvidia.dali import fn, types
    from nvidia.dali.pipeline import Pipeline

    pipe = Pipeline(batch_size=batch_size, num_threads=num_threads, device_id=None, seed=seed)
    with pipe:
        jpegs, labels = fn.external_source(source=source, num_outputs=2, cycle='raise',
                                           dtype=[types.UINT8, types.INT64])
        if pipeline == 'train':
            images = fn.decoders.image_random_crop(jpegs, device='cpu', output_type=types.RGB,
                                                   random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3],
                                                   num_attempts=10)
            images = fn.resize(images, resize_x=res, resize_y=res)
            images = fn.crop_mirror_normalize(images, dtype=types.UINT8, output_layout='CHW',
                                              mirror=fn.random.coin_flip(probability=0.5))
        elif pipeline == 'val':
            images = fn.decoders.image(jpegs, device='cpu', output_type=types.RGB)
            images = fn.resize(images, resize_shorter=round(res * 256 / 224))
            images = fn.crop_mirror_normalize(images, crop=(res, res), dtype=types.UINT8, output_layout='CHW')
        else:
            raise ValueError(f"dali: pipeline {pipeline!r} is not supported (only 'train' and 'val')")
        pipe.set_outputs(images, labels)
    return pipe


class DALILoader:
    """Iterating gives one epoch of (images (B, 3, res, res) uint8, labels (B,) int64) CPU tensors."""

    def __init__(self, spec: dict):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        arrays = np.load(spec['torch_data'])
        offsets = arrays['offsets']
        count = len(offsets) - 1 if spec.get('samples') is None else spec['samples']
        source = EpochBatches(arrays['blob'], offsets, arrays['labels'], np.arange(count), spec['batch_size'],
                              shuffle=spec['pipeline'] != 'val', seed=spec['seed'])
        pipe = build_pipeline(source, spec['pipeline'], spec['res'], spec['batch_size'], spec['num_workers'],
                              spec['seed'])
        # the source ends each epoch (StopIteration); PARTIAL keeps val's last, smaller batch
        self.iterator = DALIGenericIterator(pipe, ['image', 'label'], last_batch_policy=LastBatchPolicy.PARTIAL,
                                            auto_reset=True)

    def __iter__(self):
        for (outputs,) in self.iterator:  # one dict per pipeline
            yield outputs['image'], outputs['label'].view(-1)


def make_loader(spec: dict) -> DALILoader:
    """The 'dali' system for loader_worker.py: spec as bench_loader.py builds it (pipeline 'train' / 'val')."""
    return DALILoader(spec)
