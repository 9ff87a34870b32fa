"""bench_variable.py: loading a detection set (images of different sizes, variable box counts), ours vs the
torch DataLoader with the usual collate-to-list, on the same images. Goal: ours >= 2x steady-state images/s.

Data: examples/detection/train_detection.py's generator (crops of scikit-image's photographs, 96-320 px a
side, 0-5 boxes each), written once as JPEG (quality 90) to a .beton in --data-dir.
  ours   Loader, `--workers` threads, RANDOM order: PackedRGBImageDecoder + ToImageList(to_float=True) ->
         list of (3, H, W) float32 in [0, 1]; boxes and labels NDArrayListDecoder + ToTensor -> lists
  torch  DataLoader, `--workers` worker processes (persistent), shuffle: the same JPEG bytes held in memory,
         decoded with PIL + torchvision's to_tensor (float32 [0, 1]); boxes/labels tensors from NumPy;
         collate_fn = tuple(zip(*batch)) (torchvision's detection references)
Each round builds both loaders, runs one warm-up epoch, then `--epochs` timed epochs; a round's figure is its
median epoch, and the report gives the median of `--repeats` rounds (systems alternate within each round),
with the machine's load average before and after (the machine may be shared).

  python benchmarks/bench_variable.py                 # 1,000 images, 3 rounds
  python benchmarks/bench_variable.py --quick         # 200 images, 1 round: a smoke run
Results: JSON in benchmarks/results/variable.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

_spec = importlib.util.spec_from_file_location('ffcv_bench_anchor', Path(__file__).with_name('anchor.py'))
anchor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anchor)
ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location('detection_example', ROOT / 'examples/detection/train_detection.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class JpegDetectionSet(torch.utils.data.Dataset):
    """The .beton's own JPEG bytes, boxes and labels in memory; items decoded the usual torchvision way."""

    def __init__(self, path: str):
        from ffcv.reader import Reader
        reader = Reader(path)
        self.jpegs, self.boxes, self.labels = [], [], []
        for i in range(reader.num_samples):
            self.jpegs.append(reader.read(int(reader.column(0)[i]['data_ptr'])).tobytes())
            sample = reader.read_sample(i)
            self.boxes.append(sample['boxes'])
            self.labels.append(sample['labels'])

    def __len__(self) -> int:
        return len(self.jpegs)

    def __getitem__(self, index: int):
        from PIL import Image
        from torchvision.transforms.functional import to_tensor
        image = to_tensor(Image.open(io.BytesIO(self.jpegs[index])).convert('RGB'))  # (3, H, W) float [0, 1]
        return image, torch.from_numpy(self.boxes[index]), torch.from_numpy(self.labels[index])


def collate_to_lists(batch):
    return tuple(zip(*batch))


def make_ours(example, path: str, batch_size: int, workers: int):
    from ffcv.fields.decoders import NDArrayListDecoder, PackedRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor
    from ffcv.transforms.ragged import ToImageList
    return Loader(path, batch_size=batch_size, num_workers=workers, order=OrderOption.RANDOM, seed=0,
                  drop_last=True, pipelines={'image': [PackedRGBImageDecoder(), ToImageList(to_float=True)],
                                             'boxes': [NDArrayListDecoder(), ToTensor()],
                                             'labels': [NDArrayListDecoder(), ToTensor()]})


def make_torch(dataset, batch_size: int, workers: int):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       persistent_workers=True, drop_last=True, collate_fn=collate_to_lists)


def epoch_rate(loader) -> float:
    """Images/s of one pass (each image's pixels touched once, as a model would read them)."""
    started, count = time.perf_counter(), 0
    for images, boxes, labels in loader:
        count += len(images)
        assert len(boxes) == len(labels) == len(images)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=1000)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--workers', type=int, default=2, help='our threads = torch worker processes')
    parser.add_argument('--epochs', type=int, default=3, help='timed epochs per round (after one warm-up)')
    parser.add_argument('--repeats', type=int, default=3, help='rounds; the report gives their median')
    parser.add_argument('--data-dir', default=os.path.join(ROOT, 'bench_data'))
    parser.add_argument('--out', default=os.path.join(ROOT, 'benchmarks', 'results', 'variable.json'))
    parser.add_argument('--quick', action='store_true', help='200 images, 1 round')
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 200, 1
    torch.set_num_threads(1)  # the consumer does no math; keep torch's own pool off the loaders' cores
    example = load_example()
    os.makedirs(args.data_dir, exist_ok=True)
    path = os.path.join(args.data_dir, f'detection_{args.images}.beton')
    if not os.path.exists(path):
        example.write_dataset(path, args.images)
    dataset = JpegDetectionSet(path)
    load_before = os.getloadavg()
    rounds = {'ours': [], 'torch': []}
    for round_index in range(args.repeats):
        for system in ('ours', 'torch') if round_index % 2 == 0 else ('torch', 'ours'):
            loader = (make_ours(example, path, args.batch_size, args.workers) if system == 'ours'
                      else make_torch(dataset, args.batch_size, args.workers))
            epoch_rate(loader)  # warm-up: compilation, worker start-up
            rates = [epoch_rate(loader) for _ in range(args.epochs)]
            rounds[system].append(statistics.median(rates))
            print(f'round {round_index}: {system:5s} {rounds[system][-1]:8.0f} images/s (epochs: '
                  f'{", ".join(f"{r:.0f}" for r in rates)})', flush=True)
            del loader
    ours, theirs = statistics.median(rounds['ours']), statistics.median(rounds['torch'])
    sizes = np.array([len(j) for j in dataset.jpegs])
    report = {'benchmark': 'variable-size detection loading', 'images': args.images,
              'batch_size': args.batch_size, 'workers': args.workers, 'epochs': args.epochs,
              'repeats': args.repeats, 'mean_jpeg_bytes': int(sizes.mean()),
              'images_per_s': {'ours': round(ours), 'torch': round(theirs)}, 'rounds': rounds,
              'ratio_ours_over_torch': round(ours / theirs, 2), 'goal_ratio': 2.0,
              'load_average_before': load_before, 'load_average_after': os.getloadavg(),
              'environment': anchor.environment_info(None)}
    print(f'ours {ours:.0f} images/s, torch DataLoader {theirs:.0f} images/s: {ours / theirs:.2f}x')
    anchor.write_report(report, args.out)


if __name__ == '__main__':
    main()
