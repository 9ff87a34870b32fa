"""bench_docs_beyond.py: the two measured tables of docs/beyond-classification.md, ours vs torch DataLoader.

1. Linear regression on an array dataset (`--rows` x `--dims` float32 features + a float32 target, 200 MB by
   default): one SGD step per batch of 1,024, `--epochs` timed epochs after a warm-up one, samples/s.
   * ffcv: NDArrayField columns, Loader RANDOM order with the file in the page cache (os_cache=True), and
     QUASI_RANDOM with the process cache (os_cache=False, the setting for data larger than RAM);
   * torch: DataLoader(TensorDataset(X, y), batch_size=1024, shuffle=True), the arrays in memory (FFCV's own
     comparison), and a DataLoader with `--threads` worker processes over rows of a memory-mapped .npy file.
2. Bulk inference: a model over every image of a file (`--images` photo-like JPEGs, at most 256 px, quality
   90; benchmarks/data.py 'photo'), center crop 112, predictions gathered into one array; images/s.
   * ffcv: CenterCropRGBImageDecoder + NormalizeImage, SEQUENTIAL order;
   * torch: DataLoader over the very same JPEG bytes as files in a folder (torchvision ImageFolder, PIL
     decoding, Resize(128) + CenterCrop(112) + ToTensor + Normalize), `--threads` workers.
   Each is timed with no model (the loader alone), with a small CNN, and with ResNet-18 (on a subset).

Both sides use `--threads` threads or worker processes (default 2). Each measurement waits until other
processes are quiet (benchmarks/bench_loader.py's wait_until_quiet); the best of `--epochs` epochs in each of
`--repeats` rounds, the systems alternating within each round (on a shared machine other programs only
ever slow a run down, so the best is the least disturbed).

  python benchmarks/bench_docs_beyond.py            # about 5 minutes on 2 cores
  python benchmarks/bench_docs_beyond.py --quick    # a smoke run
Results: Markdown tables on stdout and JSON in benchmarks/results/docs_beyond.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

_spec = importlib.util.spec_from_file_location('ffcv_bench_anchor', Path(__file__).with_name('anchor.py'))
anchor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anchor)
data = anchor.load_sibling('data')
quiet = anchor.load_sibling('bench_loader')  # wait_until_quiet: the machines are shared

BATCH = 1024
MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255


# --- 1. Linear regression ------------------------------------------------------------------------

class Rows:
    """dataset[i] -> (features row, target) over two arrays (what DatasetWriter reads)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


class MemmapRows(torch.utils.data.Dataset):
    """dataset[i] -> (features, target) tensors read from memory-mapped .npy files (opened per worker)."""

    def __init__(self, x_path, y_path):
        self.x_path, self.y_path, self.x = x_path, y_path, None
        self.length = len(np.load(y_path, mmap_mode='r'))

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if self.x is None:
            self.x, self.y = np.load(self.x_path, mmap_mode='r'), np.load(self.y_path, mmap_mode='r')
        return torch.from_numpy(np.array(self.x[index])), torch.from_numpy(np.array(self.y[index]))


def make_regression(rows: int, dims: int, folder: str) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, dims), dtype=np.float32)
    w_true = rng.standard_normal(dims).astype(np.float32)
    y = (x @ w_true + 0.1 * rng.standard_normal(rows, dtype=np.float32)).astype(np.float32).reshape(rows, 1)
    from ffcv.fields import NDArrayField
    from ffcv.writer import DatasetWriter
    beton = os.path.join(folder, 'regression.beton')
    DatasetWriter(beton, {'x': NDArrayField(np.float32, (dims,)), 'y': NDArrayField(np.float32, (1,))},
                  num_workers=2).from_indexed_dataset(Rows(x, y), chunksize=1000, progress=False)
    np.save(os.path.join(folder, 'x.npy'), x)
    np.save(os.path.join(folder, 'y.npy'), y)
    return {'x': x, 'y': y, 'beton': beton, 'x_npy': os.path.join(folder, 'x.npy'),
            'y_npy': os.path.join(folder, 'y.npy'), 'dims': dims}


def regression_loader(system: str, prepared: dict, threads: int):
    if system.startswith('ffcv'):
        from ffcv.fields.decoders import NDArrayDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToTensor
        quasi = system == 'ffcv_quasi'
        return Loader(prepared['beton'], batch_size=BATCH, num_workers=threads, seed=0,
                      order=OrderOption.QUASI_RANDOM if quasi else OrderOption.RANDOM, os_cache=not quasi,
                      pipelines={'x': [NDArrayDecoder(), ToTensor()], 'y': [NDArrayDecoder(), ToTensor()]})
    if system == 'torch_memory':
        dataset = torch.utils.data.TensorDataset(torch.from_numpy(prepared['x']), torch.from_numpy(prepared['y']))
        return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True)
    dataset = MemmapRows(prepared['x_npy'], prepared['y_npy'])
    return torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=threads,
                                       persistent_workers=True)


def regression_epochs(loader, dims: int, epochs: int) -> float:
    """Best samples/s of `epochs` epochs of SGD on a linear model, after a warm-up epoch."""
    torch.manual_seed(0)
    model = nn.Linear(dims, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    speeds = []
    for epoch in range(epochs + 1):
        seen, start = 0, time.perf_counter()
        for x, y in loader:
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(x)
        if epoch:
            speeds.append(seen / (time.perf_counter() - start))
    return max(speeds)


# --- 2. Bulk inference ---------------------------------------------------------------------------

def small_cnn() -> nn.Module:
    """About 9 million multiply-adds per 112x112 image (ResNet-18: about 450 million)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),            # 112 -> 56
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),           # 56 -> 28
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),           # 28 -> 14
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def make_images(count: int, folder: str) -> dict:
    """The .beton file, and the same JPEG bytes as an image folder for torchvision."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.reader import Reader
    from ffcv.writer import DatasetWriter
    beton = os.path.join(folder, 'images.beton')
    DatasetWriter(beton, {'image': RGBImageField(write_mode='jpg', max_resolution=256, jpeg_quality=90),
                          'label': IntField()}, num_workers=2).from_indexed_dataset(
        data.LazyPhotoDataset(count, seed=0), progress=False)
    reader = Reader(beton)
    image_folder = Path(folder) / 'images'
    for i in range(count):
        row = reader.column('image')[i]
        target = image_folder / f'class_{int(reader.column("label")[i]) % 10}'
        target.mkdir(parents=True, exist_ok=True)
        (target / f'{i:05d}.jpg').write_bytes(reader.read(int(row['data_ptr'])).tobytes())
    return {'beton': beton, 'folder': str(image_folder), 'count': count}


def inference_loader(system: str, prepared: dict, threads: int, count: int):
    if system == 'ffcv':
        from ffcv.fields.decoders import CenterCropRGBImageDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import NormalizeImage, ToTensor, ToTorchImage
        return Loader(prepared['beton'], batch_size=100, num_workers=threads, order=OrderOption.SEQUENTIAL,
                      drop_last=False, indices=range(count), pipelines={
                          'image': [CenterCropRGBImageDecoder((112, 112), ratio=112 / 128),
                                    NormalizeImage(MEAN, STD, np.float32), ToTensor(), ToTorchImage()],
                          'label': None})
    import torchvision
    from torchvision import transforms as T
    transform = T.Compose([T.Resize(128), T.CenterCrop(112), T.ToTensor(),
                           T.Normalize(MEAN / 255, STD / 255)])
    dataset = torchvision.datasets.ImageFolder(prepared['folder'], transform=transform)
    dataset = torch.utils.data.Subset(dataset, range(count))
    return torch.utils.data.DataLoader(dataset, batch_size=100, num_workers=threads, persistent_workers=True)


def inference_epochs(loader, model, count: int, epochs: int) -> float:
    """Best images/s of `epochs` passes (after a warm-up pass), predictions gathered in one array."""
    predictions = np.empty(count, np.int64)
    speeds = []
    for epoch in range(epochs + 1):
        position, start = 0, time.perf_counter()
        with torch.inference_mode():
            for batch in loader:
                images = batch[0]
                if model is not None:
                    predictions[position:position + len(images)] = model(images).argmax(1).numpy()
                position += len(images)
        assert position == count
        if epoch:
            speeds.append(count / (time.perf_counter() - start))
    return max(speeds)


# --- Main ----------------------------------------------------------------------------------------

def measure(args, function, *arguments) -> float:
    """function(*arguments), once other processes are quiet."""
    if args.max_wait > 0:
        quiet.wait_until_quiet(args.max_other_load, args.max_wait)
    return function(*arguments)


def table(title: str, unit: str, results: dict, baseline: str) -> str:
    rows = [f'| {title} | {unit} | vs {baseline} |', '|---|---|---|']
    for name, value in results.items():
        rows.append(f'| {name} | {value:,.0f} | {value / results[baseline]:.2f}x |')
    return '\n'.join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rows', type=int, default=100_000)
    parser.add_argument('--dims', type=int, default=512)
    parser.add_argument('--images', type=int, default=2000)
    parser.add_argument('--resnet-images', type=int, default=300, help='images of the ResNet-18 rows')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--epochs', type=int, default=3, help='timed epochs per measurement (default 3)')
    parser.add_argument('--repeats', type=int, default=2, help='rounds, systems alternating (default 2)')
    parser.add_argument('--max-other-load', type=float, default=0.3, metavar='CORES')
    parser.add_argument('--max-wait', type=float, default=300, help='seconds to wait for quiet (0: never)')
    parser.add_argument('--quick', action='store_true', help='small sizes, one round')
    parser.add_argument('--out', default='benchmarks/results/docs_beyond.json')
    args = parser.parse_args()
    if args.quick:
        args.rows, args.images, args.resnet_images, args.epochs, args.repeats = 10_000, 200, 100, 1, 1
    torch.set_num_threads(args.threads)
    report = {'environment': anchor.environment_info(None), 'arguments': vars(args), 'regression': {},
              'inference': {}}
    with tempfile.TemporaryDirectory() as folder:
        print(f'linear regression: {args.rows:,} x {args.dims} float32 ...', flush=True)
        prepared = make_regression(args.rows, args.dims, folder)
        systems = ('torch_memory', 'torch_memmap', 'ffcv', 'ffcv_quasi')
        runs = {s: [] for s in systems}
        for _ in range(args.repeats):
            for system in systems:
                loader = regression_loader(system, prepared, args.threads)
                runs[system].append(measure(args, regression_epochs, loader, args.dims, args.epochs))
                print(f'  {system}: {runs[system][-1]:,.0f} samples/s', flush=True)
        report['regression'] = {s: {'runs': v, 'best': max(v)} for s, v in runs.items()}
        del prepared

        print(f'bulk inference: {args.images:,} JPEG images ...', flush=True)
        images = make_images(args.images, folder)
        cases = {'loader only': (None, args.images), 'small CNN': (small_cnn().eval(), args.images)}
        import torchvision
        cases['ResNet-18'] = (torchvision.models.resnet18(num_classes=10).eval(), args.resnet_images)
        for case, (model, count) in cases.items():
            runs = {'torch': [], 'ffcv': []}
            for _ in range(args.repeats):
                for system in runs:
                    loader = inference_loader(system, images, args.threads, count)
                    runs[system].append(measure(args, inference_epochs, loader, model, count, args.epochs))
                    print(f'  {case}, {system}: {runs[system][-1]:,.0f} images/s', flush=True)
            report['inference'][case] = {s: {'runs': v, 'best': max(v)} for s, v in runs.items()}
    print()
    print(table('linear regression', 'samples/s', {s: r['best'] for s, r in report['regression'].items()},
                'torch_memory'))
    print()
    rows = ['| bulk inference | torch DataLoader, images/s | ffcv, images/s | ffcv / torch |', '|---|---|---|---|']
    for case, result in report['inference'].items():
        torch_rate, ffcv_rate = result['torch']['best'], result['ffcv']['best']
        rows.append(f'| {case} | {torch_rate:,.0f} | {ffcv_rate:,.0f} | {ffcv_rate / torch_rate:.2f}x |')
    print('\n'.join(rows))
    anchor.write_report(report, args.out)


if __name__ == '__main__':
    main()
