"""litdata_remote.py: the LitData side of benchmarks/bench_remote.py (the peer users would pick to stream a
dataset from object storage), on the same JPEG bytes and labels as our .beton.

* `convert` reads every sample's JPEG bytes and label back from the .beton (ffcv's Reader, so both systems
  stream identical bytes) and writes LitData chunks with `litdata.optimize` (items {'image': bytes,
  'label': int}, stored as they are: no re-encoding, no compression).
* `upload` puts the chunk folder in a bucket (any fsspec file system; the benchmark uses SeaweedFS's S3).
* `run` streams it with `litdata.StreamingDataset` + `StreamingDataLoader` (`num_workers` processes,
  shuffle on, a fresh local cache folder: epoch 1 downloads every chunk, later epochs read the cache) and
  decodes and augments each image in the workers as a torchvision user would: `decode_jpeg` to a uint8
  (3, H, W) tensor, `v2.RandomResizedCrop(res, antialias=True)`, `v2.RandomHorizontalFlip()`, batches of
  (B, 3, res, res) uint8 and int64 labels.

One setting is changed in LitData: its chunk downloads go through obstore, whose HTTP client refuses
plain-http endpoints unless told `allow_http` (LitData passes its own client options, so obstore's
`AWS_ALLOW_HTTP` environment variable is not read). Loopback S3 has no TLS, so `run` adds
`allow_http=True` to those client options; with an https endpoint (AWS, R2) nothing would change.
LitData's check for a newer release on PyPI (a web request when a StreamingDataset is made) is turned off
with its LITDATA_DISABLE_VERSION_CHECK variable, set when this module is imported.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault('LITDATA_DISABLE_VERSION_CHECK', '1')  # read when litdata is first imported


class BetonSamples:
    """Sample `i` of a .beton as a LitData item: {'image': JPEG bytes (as stored), 'label': int}.

    Runs in the process that `litdata.optimize` forks, so it holds only the file name until first use.
    """

    def __init__(self, beton: str):
        self.beton = beton
        self._reader = None

    def __call__(self, index: int) -> dict:
        if self._reader is None:
            from ffcv.reader import Reader
            self._reader = Reader(self.beton)
        image = self._reader.column('image')[index]
        if int(image['mode']) != 0:
            raise ValueError(f"sample {index} of {self.beton}: field 'image' is stored raw, not as JPEG")
        return {'image': bytes(self._reader.read(int(image['data_ptr']))),
                'label': int(self._reader.column('label')[index])}


def convert(beton: Path, out_dir: Path, chunk_bytes: int) -> Path:
    """Write `beton`'s images and labels as LitData chunks into `out_dir` (once: an existing complete
    folder is reused). Returns `out_dir`, holding index.json and chunk-*.bin files."""
    import litdata
    from ffcv.reader import Reader
    if (out_dir / 'index.json').exists():
        return out_dir
    count = Reader(str(beton)).num_samples
    partial = out_dir.with_name(out_dir.name + '.partial')
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        litdata.optimize(fn=BetonSamples(str(beton)), inputs=list(range(count)), output_dir=str(partial),
                         chunk_bytes=chunk_bytes, num_workers=1, start_method='fork', mode='overwrite',
                         verbose=False)
    finally:  # optimize() installs its own Ctrl-C / SIGTERM handlers and leaves them in place
        for number, handler in handlers.items():
            signal.signal(number, handler)
    os.replace(partial, out_dir)
    return out_dir


def upload(local_dir: Path, fs, prefix: str) -> int:
    """Copy every file of `local_dir` to `prefix`/ on the fsspec file system `fs`; returns the bytes sent."""
    total = 0
    for path in sorted(local_dir.iterdir()):
        fs.put_file(str(path), f'{prefix}/{path.name}')
        total += path.stat().st_size
    return total


class DecodeAndAugment:
    """LitData item -> (image, label): JPEG bytes decoded by torchvision to uint8 (3, H, W), then
    RandomResizedCrop(`res`) (bilinear, antialiased) and a horizontal flip with probability 0.5;
    output uint8 (3, res, res) and the int label."""

    def __init__(self, res: int):
        from torchvision.transforms import v2  # imported here, before the workers fork, not in each of them
        self.res = res
        self._transform = v2.Compose([v2.RandomResizedCrop(res, antialias=True), v2.RandomHorizontalFlip()])

    def __call__(self, item: dict):
        import torch
        from torchvision.io import decode_jpeg
        data = torch.frombuffer(bytearray(item['image']), dtype=torch.uint8)
        return self._transform(decode_jpeg(data)), item['label']  # (3, H, W) -> (3, res, res)


def allow_plain_http() -> None:
    """Let LitData's obstore downloads use an http:// endpoint (see the module docstring)."""
    import litdata.streaming.downloader as downloader
    downloader._OBSTORE_CLIENT_OPTIONS['allow_http'] = True


def make_loader(url: str, cache_dir: str, storage_options: dict, res: int, batch_size: int, num_workers: int,
                seed: int = 0):
    """A StreamingDataLoader over the chunks at `url` (e.g. s3://bucket/prefix), local cache `cache_dir`."""
    from litdata import StreamingDataLoader, StreamingDataset
    allow_plain_http()
    dataset = StreamingDataset(url, cache_dir=cache_dir, storage_options=storage_options, shuffle=True,
                               seed=seed, drop_last=False, transform=DecodeAndAugment(res))
    return StreamingDataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                               persistent_workers=num_workers > 0)  # its faster setting here (not the default)


def folder_bytes(folder: str) -> int:
    """Bytes of the chunk files under `folder` (LitData's local cache)."""
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder)
               for name in names if name.endswith('.bin'))


def run(spec: dict, timed_epoch: Callable, on_epoch: Optional[Callable[[int], None]] = None) -> list:
    """`spec['epochs']` epochs of LitData streaming `spec['url']`, each timed by `timed_epoch(batches)`
    (bench_remote's); `on_epoch(i)` is called after epoch i. Returns, per epoch, `timed_epoch`'s tuple
    plus the bytes of chunks in the local cache after it.

    spec: url, cache_dir, storage_options, res, batch_size, num_workers, epochs.
    """
    loader = make_loader(spec['url'], spec['cache_dir'], spec['storage_options'], spec['res'],
                         spec['batch_size'], spec['num_workers'])
    epochs = []
    for epoch in range(spec['epochs']):
        epochs.append((*timed_epoch(loader), folder_bytes(spec['cache_dir'])))
        if on_epoch is not None:
            on_epoch(epoch)
    return epochs
