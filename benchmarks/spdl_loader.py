"""SPDL 0.8 as a peer system of bench_loader.py (loader_worker.py runs it as system 'spdl').

What it reads: the JPEG bytes that the torch system holds in memory (bench_loader.export_for_torch's blob
and offsets, exported once from the same photo .beton).

One `spdl.pipeline` pipeline serves every epoch (a continuous source; `get_iterator()` per epoch), in the
shape of SPDL's image-classification example (aggregate, then one task per batch):

  source     image indices: a new permutation per epoch for train (NumPy, seeded with (seed, epoch)),
             0..n-1 for val
  aggregate  batch_size indices (train: full batches only; val: with the last partial batch)
  load       one batch per task, concurrency = the other systems' thread count, in a thread pool of that
             size (val: batches kept in order). Per image: spdl.io.demux_image(JPEG bytes) ->
             spdl.io.decode_packets(packets, filter_desc), the FFmpeg filter graph cropping, scaling, flipping:
               train  crop=w:h:x:y (RandomResizedCrop's draw: area 0.08-1, aspect ratio 3/4-4/3, 10 attempts,
                      then the centre crop), scale=res:res (swscale's area filter), hflip with probability 0.5
               val    the centre square of side min(H, W) * 224 / 256 (= resize the shorter side to 256 and
                      crop 224), scale=res:res (area filter)
             then format=rgb24; then the batch: spdl.io.convert_frames(frames) -> (B, res, res, 3) uint8
             buffer -> torch (spdl.io.to_torch) -> permuted to (B, 3, res, res) (a view, as ToTorchImage
             gives); labels (B,) int64
  sink       2 batches ahead
A task per image (pipe(decode, concurrency) before aggregate) measured ~1 ms more CPU per image here (asyncio
per item), so batches it is.

What differs from the other systems, as far as SPDL allows: JPEG is decoded by FFmpeg's mjpeg decoder (not
libjpeg-turbo) and always whole (no region or DCT-scaled decode); the crop is drawn in Python per image and
applied by FFmpeg's crop filter (exact=1: odd offsets kept on chroma-subsampled JPEGs); resizing is
swscale's area filter (ours: OpenCV's INTER_AREA; torch: antialiased bilinear).

Install (not a project dependency): ``pip install spdl`` (pulls the spdl-io / spdl-core wheels) plus FFmpeg's
shared libraries of one of versions 4-9 (on Debian 12: ``apt-get install libavdevice59``).
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple

import numpy as np

SYSTEM = 'spdl'
SCALE = (0.08, 1.0)        # RandomResizedCrop's area range (share of the image)
RATIO = (3 / 4, 4 / 3)     # and aspect-ratio range (width / height, drawn log-uniformly)


def unavailable() -> Optional[str]:
    """None when SPDL imports and decodes a JPEG here, else the reason in one line."""
    try:
        import spdl.io
        import spdl.pipeline  # noqa: F401
    except ImportError as error:
        return f'spdl not installed ({error})'
    import cv2
    ok, jpeg = cv2.imencode('.jpg', np.full((16, 16, 3), 128, np.uint8))
    try:
        spdl.io.decode_packets(spdl.io.demux_image(jpeg.tobytes()))
    except RuntimeError as error:
        return (f'spdl cannot load FFmpeg\'s shared libraries (Debian 12: apt-get install libavdevice59): '
                f'{str(error)[:160]}')
    return None


def preload() -> None:
    """Import SPDL (its FFmpeg bindings included) and torch, out of the timed first epoch."""
    import spdl.io
    import spdl.pipeline  # noqa: F401
    import torch  # noqa: F401
    spdl.io.get_video_filter_desc(pix_fmt='rgb24')


def random_resized_crop(rng: np.random.Generator, height: int, width: int) -> Tuple[int, int, int, int]:
    """RandomResizedCrop's window for an image of `height` x `width`: (x, y, w, h) in pixels.

    Up to 10 draws of an area share in SCALE and a log-uniform aspect ratio in RATIO until the window fits;
    otherwise the largest centred window whose ratio is clamped to RATIO.
    """
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    ratio = width / height
    if ratio < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif ratio > RATIO[1]:
        w, h = round(height * RATIO[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def center_crop(height: int, width: int, ratio: float = 224 / 256) -> Tuple[int, int, int, int]:
    """The centre square of side round(min(H, W) * ratio): (x, y, side, side)."""
    side = max(1, round(min(height, width) * ratio))
    return (width - side) // 2, (height - side) // 2, side, side


class EpochOrder:
    """The pipeline's source: each `iter()` is one epoch of (epoch, image index) pairs."""

    def __init__(self, count: int, shuffle: bool, seed: int):
        self.count, self.shuffle, self.seed, self.epoch = count, shuffle, seed, 0

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.count) if self.shuffle
                 else range(self.count))
        for index in order:
            yield epoch, int(index)


class SPDLLoader:
    """Iterating gives one epoch of (images (B, 3, res, res) uint8, labels (B,) int64) CPU tensors."""

    def __init__(self, spec: dict):
        from spdl.pipeline import PipelineBuilder

        arrays = np.load(spec['torch_data'])
        self.blob, self.offsets, self.labels = arrays['blob'], arrays['offsets'], arrays['labels'].astype(np.int64)
        count = len(self.offsets) - 1 if spec.get('samples') is None else spec['samples']
        self.train = spec['pipeline'] == 'train'
        if spec['pipeline'] not in ('train', 'val'):
            raise ValueError(f"spdl: pipeline {spec['pipeline']!r} is not supported (only 'train' and 'val')")
        self.res, self.seed = spec['res'], spec['seed']
        threads = spec['num_workers']
        self.pipeline = (
            PipelineBuilder()
            .add_source(EpochOrder(count, shuffle=self.train, seed=self.seed), continuous=True)
            .aggregate(spec['batch_size'], drop_last=self.train)
            .pipe(self.load_batch, concurrency=threads, output_order='completion' if self.train else 'input')
            .add_sink(2)
            .build(num_threads=threads)
        )
        self.pipeline.start()

    def decode(self, item: Tuple[int, int]):
        """(epoch, index) -> (ImageFrames of res x res rgb24, label): one JPEG decoded, cropped, scaled."""
        import spdl.io
        epoch, index = item
        packets = spdl.io.demux_image(self.blob[self.offsets[index]:self.offsets[index + 1]])
        if self.train:
            rng = np.random.default_rng([self.seed, epoch, index])
            x, y, w, h = random_resized_crop(rng, packets.height, packets.width)
            flip = ',hflip' if rng.random() < 0.5 else ''
        else:
            (x, y, w, h), flip = center_crop(packets.height, packets.width), ''
        graph = f'crop={w}:{h}:{x}:{y}:exact=1,scale={self.res}:{self.res}:flags=area{flip},format=rgb24'
        return spdl.io.decode_packets(packets, filter_desc=graph), self.labels[index]

    def load_batch(self, items: list):
        """[(epoch, index)] -> (images (B, 3, res, res) uint8, a view of a (B, res, res, 3) buffer; labels (B,))."""
        import spdl.io
        import torch
        decoded = [self.decode(item) for item in items]
        images = spdl.io.to_torch(spdl.io.convert_frames([frames for frames, _ in decoded]))
        labels = torch.from_numpy(np.array([label for _, label in decoded], np.int64))
        return images.permute(0, 3, 1, 2), labels  # (B, H, W, C) -> (B, C, H, W)

    def __iter__(self):
        return self.pipeline.get_iterator(timeout=300)

    def close(self) -> None:
        """Stop the pipeline's threads."""
        self.pipeline.stop()


def make_loader(spec: dict) -> SPDLLoader:
    """The 'spdl' system for loader_worker.py: spec as bench_loader.py builds it (pipeline 'train' / 'val')."""
    return SPDLLoader(spec)
