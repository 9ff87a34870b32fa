"""One loader measurement in a fresh process: run by bench_loader.py, one process per configuration.

Runs under either interpreter: ours (``python benchmarks/loader_worker.py SPEC``) or FFCV 1.0.2's
(``python -I benchmarks/loader_worker.py SPEC``, so that `import ffcv` is the original). The `ffcv` systems
use the very same code (both packages have FFCV's API); the `torch` system is torch.utils.data.DataLoader
with torchvision transforms over the same images held in memory; the peers `dali` (NVIDIA DALI on the CPU,
benchmarks/dali_loader.py) and `spdl` (benchmarks/spdl_loader.py) read those same JPEG bytes. SPEC is one
JSON object; the result is one JSON line on stdout:

    {"first_epoch_s": ..., "epoch_s": [...], "images": n, "peak_rss_mb": ..., ...}

The first epoch is timed from the loader's construction (compilation and worker start-up included) to
its last batch, and so is the wait for its first batch (`first_batch_s`); the following `epochs - 1` epochs
are the steady ones. Memory: the process's peak RSS (VmHWM) and, for torch, DALI and SPDL, sampled every
0.5 s, the RSS and PSS summed over it and its child processes (the torch DataLoader's workers). The first
batch of every system is checked (shape, dtype, plausible pixels: `check_first_batch`) before the
measurement goes on.
"""
import importlib.util
import io
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np


# --- Memory ----------------------------------------------------------------------------------------

def vm_hwm_mb() -> float:
    """Peak resident set size of this process (MiB), from /proc/self/status."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return float('nan')


class TreeMemorySampler:
    """Samples RSS and PSS summed over this process and its children until stopped (peaks in MiB).

    Used for the torch DataLoader, whose workers are processes; reading PSS (smaps) costs a few ms, so
    the interval is kept long enough not to steal CPU from the measurement.
    """

    def __init__(self, interval: float = 0.5):
        import psutil
        self.psutil = psutil
        self.interval = interval
        self.peak_rss = self.peak_pss = 0.0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        me = self.psutil.Process()
        rss = pss = 0
        for process in [me] + me.children(recursive=True):
            try:
                info = process.memory_full_info()
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied):
                continue
            rss, pss = rss + info.rss, pss + info.pss
        self.peak_rss = max(self.peak_rss, rss / 2**20)
        self.peak_pss = max(self.peak_pss, pss / 2**20)

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self._sample()

    def stop(self) -> dict:
        self.stop_event.set()
        self.thread.join()
        self._sample()
        return {'peak_tree_rss_mb': self.peak_rss, 'peak_tree_pss_mb': self.peak_pss}


# --- Other load on the machine -----------------------------------------------------------------------

def busy_cpu_seconds() -> float:
    """CPU seconds spent by every process on the machine since boot (from /proc/stat)."""
    with open('/proc/stat') as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf('SC_CLK_TCK')


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its live children."""
    import psutil
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


# --- ffcv (ours or FFCV 1.0.2: the same code) ------------------------------------------------------

def ffcv_loader(spec: dict):
    """A Loader built with FFCV's public API (the same call for both packages)."""
    from ffcv.fields.decoders import (CenterCropRGBImageDecoder, IntDecoder, RandomResizedCropRGBImageDecoder,
                                      SimpleRGBImageDecoder)
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, Squeeze, ToTensor, ToTorchImage

    pipeline, res = spec['pipeline'], spec['res']
    if pipeline == 'train':
        image = [RandomResizedCropRGBImageDecoder((res, res)), RandomHorizontalFlip()]
    elif pipeline == 'val':
        image = [CenterCropRGBImageDecoder((res, res), ratio=224 / 256)]
    elif pipeline == 'cifar':
        from ffcv.transforms import Cutout, RandomTranslate
        image = [SimpleRGBImageDecoder(), RandomHorizontalFlip(), RandomTranslate(padding=2), Cutout(4)]
    elif pipeline == 'cifar_flip':
        image = [SimpleRGBImageDecoder(), RandomHorizontalFlip()]
    elif pipeline in ('multiview', *DINO_PIPELINES):
        views = multiview_pipelines(spec) if pipeline == 'multiview' else dino_pipelines(spec)
        indices = None if spec.get('samples') is None else list(range(spec['samples']))
        return Loader(spec['path'], batch_size=spec['batch_size'], num_workers=spec['num_workers'],
                      order=OrderOption.RANDOM, os_cache=True, drop_last=True, seed=spec['seed'], pipelines=views,
                      indices=indices)
    else:
        raise ValueError(f'unknown pipeline {pipeline!r}')
    pipelines = {'image': image + [ToTensor(), ToTorchImage()],
                 'label': [IntDecoder(), ToTensor(), Squeeze()]}
    order = OrderOption.SEQUENTIAL if pipeline == 'val' else OrderOption.RANDOM
    return Loader(spec['path'], batch_size=spec['batch_size'], num_workers=spec['num_workers'], order=order,
                  os_cache=True, drop_last=pipeline != 'val', seed=spec['seed'], pipelines=pipelines)


def multiview_pipelines(spec: dict) -> dict:
    """FFCV's multi-view graph: one center-crop decode per image ('image', transforms=[]) that every view
    branches off (PipelineSpec(source=decoder)): 2 views of 224 px and 6 of 96 px, each a RandomResizedCrop
    + flip. The loader's first output is the decoded batch: it counts the images."""
    from ffcv.fields.decoders import CenterCropRGBImageDecoder
    from ffcv.pipeline import PipelineSpec
    from ffcv.transforms import RandomHorizontalFlip, RandomResizedCrop, ToTensor, ToTorchImage

    decoder = CenterCropRGBImageDecoder((spec['res'], spec['res']), 1.0)
    pipelines = {'image': PipelineSpec('image', decoder=decoder, transforms=[]), 'label': None}
    for index, (size, scale) in enumerate([(224, (0.25, 1.0))] * 2 + [(96, (0.05, 0.25))] * 6):
        pipelines[f'view{index}'] = PipelineSpec(decoder, transforms=[
            RandomResizedCrop(scale, (3 / 4, 4 / 3), size), RandomHorizontalFlip(), ToTensor(), ToTorchImage()])
    return pipelines


# DINO's views (Caron et al., 2021): (name, output side, RandomResizedCrop scale, blur probability, solarization
# probability); every view also gets a flip, colour jitter (p 0.8) and grayscale (p 0.2) when `augment` is set.
DINO_GLOBAL = [('global0', 224, (0.4, 1.0), 1.0, 0.0), ('global1', 224, (0.4, 1.0), 0.1, 0.2)]
DINO_LOCAL = [(f'local{k}', 96, (0.05, 0.4), 0.5, 0.0) for k in range(6)]
DINO_PIPELINES = {'dino': DINO_GLOBAL + DINO_LOCAL,      # 8 views, one decode per image
                  'dino_separate': DINO_GLOBAL + DINO_LOCAL,  # the same 8 views, each decoding on its own
                  'dino_1view': DINO_GLOBAL[:1]}          # 1 view: what one view costs
DINO_JITTER = {'brightness': 0.4, 'contrast': 0.4, 'saturation': 0.2, 'hue': 0.1}
DINO_BLUR_KERNEL = {224: 23, 96: 9}  # about a tenth of the side, odd


def dino_pipelines(spec: dict) -> dict:
    """Views by name (`PipelineSpec('image', decoder=...)` under each view's name): each its own random
    resized crop + flip (+ DINO's colour augmentations when spec['augment']). 'dino_separate' uses a decoder
    that declines to share its decode, so each view decodes the JPEG again (the baseline of decode-once)."""
    from ffcv import transforms as T
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.pipeline import PipelineSpec

    class SeparateDecoder(RandomResizedCropRGBImageDecoder):
        def can_share_decode(self) -> bool:
            return False

    decoder_class = SeparateDecoder if spec['pipeline'] == 'dino_separate' else RandomResizedCropRGBImageDecoder
    pipelines = {'image': None, 'label': [IntDecoder(), T.ToTensor(), T.Squeeze()]}  # label first: counts
    for name, size, scale, blur, solarize in DINO_PIPELINES[spec['pipeline']]:
        steps = [T.RandomHorizontalFlip()]
        if spec['augment']:
            steps += [T.RandomColorJitter(**DINO_JITTER, p=0.8), T.RandomGrayscale(p=0.2),
                      T.GaussianBlur(DINO_BLUR_KERNEL[size], sigma=(0.1, 2.0), p=blur)]
            if solarize:
                steps.append(T.RandomSolarization(128, p=solarize))
        pipelines[name] = PipelineSpec('image', decoder=decoder_class((size, size), scale=scale),
                                       transforms=steps + [T.ToTensor(), T.ToTorchImage()])
    return pipelines


def dino_torch_views(spec: dict) -> list:
    """The same views as torchvision v2 transforms on a uint8 (C, H, W) tensor."""
    from torchvision.transforms import v2
    views = []
    for _, size, scale, blur, solarize in DINO_PIPELINES[spec['pipeline']]:
        steps = [v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip()]
        if spec['augment']:
            steps += [v2.RandomApply([v2.ColorJitter(**DINO_JITTER)], p=0.8), v2.RandomGrayscale(p=0.2),
                      v2.RandomApply([v2.GaussianBlur(DINO_BLUR_KERNEL[size], sigma=(0.1, 2.0))], p=blur)]
            if solarize:
                steps.append(v2.RandomSolarize(128, p=solarize))
        views.append(v2.Compose(steps))
    return views


# --- torch.utils.data.DataLoader + torchvision -----------------------------------------------------

class JPEGBytesDataset:
    """Images held as JPEG bytes in memory (a list), decoded and transformed per item."""

    def __init__(self, blobs, labels, transform, decoder: str):
        self.blobs, self.labels, self.transform, self.decoder = blobs, labels, transform, decoder

    def __len__(self):
        return len(self.blobs)

    def decode(self, index):
        """Image `index`: a PIL image, or a (C, H, W) uint8 tensor with the torchvision decoder."""
        if self.decoder == 'pil':
            from PIL import Image
            return Image.open(io.BytesIO(self.blobs[index])).convert('RGB')
        import torch
        from torchvision.io import decode_jpeg
        return decode_jpeg(torch.frombuffer(bytearray(self.blobs[index]), dtype=torch.uint8))

    def __getitem__(self, index):
        return self.transform(self.decode(index)), int(self.labels[index])


class MultiViewDataset(JPEGBytesDataset):
    """(label, view 0, view 1, ...): each JPEG decoded once (PIL, to a uint8 tensor), then every view's
    transforms applied to it (how DINO's own loader does it)."""

    def __getitem__(self, index):
        from torchvision.transforms.v2.functional import pil_to_tensor
        image = self.decode(index)
        if self.decoder == 'pil':
            image = pil_to_tensor(image)
        return (int(self.labels[index]), *(view(image) for view in self.transform))


class ArrayImageDataset:
    """32x32 images in one uint8 array, given to the transforms as PIL images (as torchvision's CIFAR10)."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class Cutout:
    """Zero a random `size` x `size` square (centre uniform over the image) of a (C, H, W) tensor."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image):
        import torch
        height, width = image.shape[-2:]
        y, x = int(torch.randint(height, ())), int(torch.randint(width, ()))
        half = self.size // 2
        image = image.clone()
        image[..., max(0, y - half):y + self.size - half, max(0, x - half):x + self.size - half] = 0
        return image


def torch_loader(spec: dict):
    import torch
    from torchvision import transforms as T
    arrays = np.load(spec['torch_data'])
    pipeline, res = spec['pipeline'], spec['res']
    if pipeline in ('cifar', 'cifar_flip'):
        steps = [T.RandomHorizontalFlip()]
        if pipeline == 'cifar':
            steps.append(T.RandomCrop(32, padding=2))
        steps.append(T.PILToTensor())
        if pipeline == 'cifar':
            steps.append(Cutout(4))
        dataset = ArrayImageDataset(arrays['images'], arrays['labels'], T.Compose(steps))
    else:
        blob, offsets = arrays['blob'], arrays['offsets']
        count = len(offsets) - 1 if spec.get('samples') is None else spec['samples']
        blobs = [blob[offsets[i]:offsets[i + 1]].tobytes() for i in range(count)]
        # PIL images end with PILToTensor; torchvision.io.decode_jpeg gives (C, H, W) uint8 tensors already
        to_tensor = [T.PILToTensor()] if spec['torch_decoder'] == 'pil' else []
        if pipeline in DINO_PIPELINES:
            dataset = MultiViewDataset(blobs, arrays['labels'], dino_torch_views(spec), spec['torch_decoder'])
        elif pipeline == 'train':
            steps = [T.RandomResizedCrop(res, antialias=True), T.RandomHorizontalFlip()] + to_tensor
            dataset = JPEGBytesDataset(blobs, arrays['labels'], T.Compose(steps), spec['torch_decoder'])
        else:  # torchvision's usual validation transform: the same crop as FFCV's ratio 224/256
            steps = [T.Resize(round(res * 256 / 224), antialias=True), T.CenterCrop(res)] + to_tensor
            dataset = JPEGBytesDataset(blobs, arrays['labels'], T.Compose(steps), spec['torch_decoder'])
    torch.manual_seed(spec['seed'])
    return torch.utils.data.DataLoader(dataset, batch_size=spec['batch_size'], shuffle=pipeline != 'val',
                                       num_workers=spec['num_workers'], persistent_workers=True,
                                       drop_last=pipeline != 'val')


# --- Peers: NVIDIA DALI (CPU) and SPDL ----------------------------------------------------------------

PEERS = {'dali': 'dali_loader', 'spdl': 'spdl_loader'}  # system -> module beside this file


def peer_module(system: str):
    """benchmarks/<PEERS[system]>.py, loaded by path (this script also runs isolated, with -I)."""
    name = f'ffcv_bench_{PEERS[system]}'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f'{PEERS[system]}.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# --- Output check ----------------------------------------------------------------------------------

CHECKED_PIPELINES = ('train', 'val', 'cifar', 'cifar_flip')  # batches (images (B, 3, res, res), labels (B,))


def check_first_batch(spec: dict, batch) -> None:
    """Raise RuntimeError unless `batch` is what every system must give for spec's pipeline: images
    (B, 3, res, res) uint8 with B = batch_size (train / cifar; val: 1..batch_size), B integer labels >= 0,
    and plausible photo pixels in the first 16 images (mean 10-245, spread > 8, not all images equal).
    Pipelines outside CHECKED_PIPELINES (multi-view batches) are not checked here."""
    if spec['pipeline'] not in CHECKED_PIPELINES:
        return
    import torch
    images, labels = batch[0], batch[1]
    res, size = spec['res'], spec['batch_size']
    where = f"{spec['system']}, pipeline {spec['pipeline']!r}, first batch"
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise RuntimeError(f'{where}: images are {type(images).__name__} {getattr(images, "dtype", "")}, '
                           'expected a torch.uint8 tensor')
    count = images.shape[0]
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, res, res) or not 0 < count <= size or (
            spec['pipeline'] != 'val' and count != size):
        raise RuntimeError(f'{where}: images of shape {tuple(images.shape)}, expected ({size}, 3, {res}, {res})')
    if tuple(labels.shape) != (count,) or labels.dtype.is_floating_point or int(labels.min()) < 0:
        raise RuntimeError(f'{where}: labels of shape {tuple(labels.shape)} ({labels.dtype}, min '
                           f'{int(labels.min())}), expected ({count},) integers >= 0')
    sample = images[:16].float()
    mean, spread = float(sample.mean()), float(sample.std())
    repeated = count > 1 and torch.equal(images[0], images[1])
    if not (10 < mean < 245 and spread > 8) or repeated:
        raise RuntimeError(f'{where}: implausible pixels (mean {mean:.1f}, std {spread:.1f} over the first '
                           f'{min(count, 16)} images; first two equal: {repeated})')


# --- Measurement -----------------------------------------------------------------------------------

def run_epoch(loader, check=None) -> int:
    """Iterate one epoch, touching every batch (`check(batch)` on the first); returns the number of images."""
    images = 0
    for batch in loader:
        if check is not None and images == 0:
            check(batch)
        images += int(batch[0].shape[0])
    return images


def measure(spec: dict) -> dict:
    system = spec['system']
    sampler = TreeMemorySampler() if system in ('torch', *PEERS) else None
    started = time.perf_counter()
    if system == 'torch':
        import torch  # noqa: F401  (import time is not part of the measurement)
        import torchvision  # noqa: F401
        imported = time.perf_counter()
        make = torch_loader
    elif system in PEERS:
        peer = peer_module(system)
        peer.preload()
        imported = time.perf_counter()
        make = peer.make_loader
    else:
        import ffcv
        imported = time.perf_counter()
        make = ffcv_loader
    busy, mine = busy_cpu_seconds(), tree_cpu_seconds()
    first_batch = []

    def check(batch) -> None:
        first_batch.append(time.perf_counter() - imported)
        check_first_batch(spec, batch)

    loader = make(spec)
    images = run_epoch(loader, check=check)
    first = time.perf_counter() - imported
    epoch_seconds = []
    for _ in range(spec['epochs'] - 1):
        start = time.perf_counter()
        count = run_epoch(loader)
        epoch_seconds.append(time.perf_counter() - start)
        assert count == images, (count, images)
    wall = time.perf_counter() - imported
    # CPU used meanwhile by processes outside this measurement, in cores (other users of the machine)
    other_load = ((busy_cpu_seconds() - busy) - (tree_cpu_seconds() - mine)) / wall
    memory = sampler.stop() if sampler is not None else {}
    result = {'other_load_cores': other_load, 'images': images, 'import_s': imported - started,
              'first_batch_s': first_batch[0], 'first_epoch_s': first, 'epoch_s': epoch_seconds,
              'peak_rss_mb': vm_hwm_mb(), **memory}
    if system not in ('torch', *PEERS):
        result['ffcv_file'] = ffcv.__file__
    if system in PEERS and hasattr(loader, 'close'):
        loader.close()  # SPDL's pipeline threads (matters when measure() runs inside a test)
    return result


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = measure(spec)
    sys.stdout.write(json.dumps(result) + '\n')
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (DataLoader workers, thread joins): not part of the measurement


if __name__ == '__main__':
    main()
