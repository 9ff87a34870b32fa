"""bench_docs_images.py: file size, quality and load speed of each RGBImageField write mode.

The table of docs/working-with-images.md comes from this script. The data: photo-like images, each side
350-500 px, made from crops of the photographs that ship with scikit-image (benchmarks/data.py 'photo').
Each case (in a fresh process) writes the same images with one RGBImageField setting, then loads the file
with two pipelines, on `--threads` worker threads, from the page cache (the file was just written, so it is
in RAM):

* train: RandomResizedCropRGBImageDecoder((160, 160)) + RandomHorizontalFlip, RANDOM order;
* val:   CenterCropRGBImageDecoder((224, 224), ratio=224/256), SEQUENTIAL order.

Load speed is the best images/s of `--epochs` epochs after one warm-up epoch, with the CPU time per image
(all threads), which other programs on a shared machine disturb much less than wall time; each case waits
first (at most --max-wait s) for other processes to quiet down. PSNR compares the decoded image with the
image given to the writer (after `max_resolution`'s resize), over the first 200 images: 'exact' for raw
storage.

  python benchmarks/bench_docs_images.py              # 1,000 images, about 4 minutes on 2 idle cores
  python benchmarks/bench_docs_images.py --quick      # 100 images, a smoke run
Results: a Markdown table on stdout and JSON in benchmarks/results/docs_images.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location('ffcv_bench_anchor', Path(__file__).with_name('anchor.py'))
anchor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(anchor)
data = anchor.load_sibling('data')
quiet = anchor.load_sibling('bench_loader')  # wait_until_quiet, busy_cores: shared machines

# name -> RGBImageField arguments (the table's rows, in order)
CASES = {
    'raw': dict(write_mode='raw'),
    'raw, max_resolution=256': dict(write_mode='raw', max_resolution=256),
    'jpg, quality 90': dict(write_mode='jpg', jpeg_quality=90),
    'jpg, quality 50': dict(write_mode='jpg', jpeg_quality=50),
    'jpg, quality 90, max_resolution=256': dict(write_mode='jpg', jpeg_quality=90, max_resolution=256),
    'smart, threshold 400x400x3 bytes': dict(write_mode='smart', smart_threshold=400 * 400 * 3),
    'proportion, compress_probability=0.5': dict(write_mode='proportion', compress_probability=0.5),
}
PSNR_IMAGES = 200


def quality(path: str, dataset, arguments: dict) -> float:
    """PSNR (dB, from the mean squared error over the images) of the stored images against the images the
    writer was given (resized as it does); inf when every image is stored exactly."""
    from ffcv.fields.rgb_image import resizer
    from ffcv.reader import Reader
    reader = Reader(path)
    errors = []
    for i in range(min(PSNR_IMAGES, len(dataset))):
        original = resizer(dataset[i][0], arguments.get('max_resolution')).astype(np.float64)
        errors.append(np.mean((reader.read_sample(i)['image'] - original) ** 2))
    mse = float(np.mean(errors))
    return float('inf') if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def load_speed(path: str, kind: str, threads: int, epochs: int) -> tuple:
    """(best images/s, least CPU microseconds per image) of `epochs` epochs, after a warm-up epoch.

    Best, not median: other programs on a shared machine only ever slow an epoch down.

    The CPU time (every thread of this process) varies much less than the wall time when other programs
    share the machine: on idle cores, images/s is about ``threads * 1e6 / cpu_us_per_image``.
    """
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage
    if kind == 'train':
        image, order = [RandomResizedCropRGBImageDecoder((160, 160)), RandomHorizontalFlip()], OrderOption.RANDOM
    else:
        image, order = [CenterCropRGBImageDecoder((224, 224), ratio=224 / 256)], OrderOption.SEQUENTIAL
    loader = Loader(path, batch_size=100, num_workers=threads, order=order, seed=0, drop_last=False,
                    pipelines={'image': image + [ToTensor(), ToTorchImage()], 'label': [IntDecoder(), ToTensor()]})
    speeds, cpu_us = [], []
    for epoch in range(epochs + 1):
        count, start, cpu_start = 0, time.perf_counter(), time.process_time()
        for images, _ in loader:
            count += images.shape[0]
        if epoch:  # epoch 0 warms up: compilation, buffers, first page touches
            speeds.append(count / (time.perf_counter() - start))
            cpu_us.append((time.process_time() - cpu_start) * 1e6 / count)
    return max(speeds), min(cpu_us)


def run_case(name: str, arguments: dict, dataset, folder: str, threads: int, epochs: int, idle: tuple) -> dict:
    """Write `dataset` with one RGBImageField setting, once the machine is quiet (`idle`: the arguments of
    bench_loader.wait_until_quiet), and measure size, quality and load speed."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.reader import Reader
    from ffcv.writer import DatasetWriter
    path = os.path.join(folder, 'images.beton')
    if idle[1] > 0:
        quiet.wait_until_quiet(*idle)
    other_before = round(quiet.busy_cores(), 2)
    writer = DatasetWriter(path, {'image': RGBImageField(**arguments), 'label': IntField()}, num_workers=threads)
    start = time.perf_counter()
    writer.from_indexed_dataset(dataset, progress=False)
    write_s = time.perf_counter() - start
    modes = Reader(path).column('image')['mode']
    result = {'case': name, 'arguments': arguments, 'file_bytes': os.path.getsize(path),
              'data_bytes': int(Reader(path).alloc_table['size'].sum()), 'jpeg_share': float((modes == 0).mean()),
              'write_images_per_s': len(dataset) / write_s, 'psnr_db': quality(path, dataset, arguments),
              **dict(zip(('train_images_per_s', 'train_cpu_us_per_image'), load_speed(path, 'train', threads, epochs))),
              **dict(zip(('val_images_per_s', 'val_cpu_us_per_image'), load_speed(path, 'val', threads, epochs))),
              'busy_cores_before': other_before, 'load_average_after': [round(v, 2) for v in os.getloadavg()]}
    os.remove(path)
    return result


def markdown_table(results: list, count: int) -> str:
    rows = ['| write mode | data per image | file, MiB | JPEG share | PSNR, dB | write, images/s | '
            'train: images/s (CPU us/image) | val: images/s (CPU us/image) |', '|---|---|---|---|---|---|---|---|']
    for r in results:
        quality_text = 'exact' if r['psnr_db'] == float('inf') else f"{r['psnr_db']:.1f}"
        rows.append(f"| {r['case']} | {r['data_bytes'] / count / 1024:,.0f} KiB | {r['file_bytes'] / 2**20:,.0f} | "
                    f"{r['jpeg_share']:.0%} | {quality_text} | {r['write_images_per_s']:,.0f} | "
                    f"{r['train_images_per_s']:,.0f} ({r['train_cpu_us_per_image']:,.0f}) | "
                    f"{r['val_images_per_s']:,.0f} ({r['val_cpu_us_per_image']:,.0f}) |")
    return '\n'.join(rows)


def run_case_process(name: str, dataset_path: str, folder: str, args, epochs: int) -> dict:
    """`run_case` in a fresh interpreter (what earlier cases leave in a process must not slow the next)."""
    out = os.path.join(folder, 'case.json')
    subprocess.run([sys.executable, __file__, '--case', name, '--dataset', dataset_path, '--folder', folder,
                    '--threads', str(args.threads), '--epochs', str(epochs), '--max-other-load',
                    str(args.max_other_load), '--max-wait', str(args.max_wait), '--out', out], check=True)
    with open(out) as handle:
        return json.load(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--images', type=int, default=1000, help='images per case (default 1000)')
    parser.add_argument('--threads', type=int, default=2, help='loader threads and writer processes (default 2)')
    parser.add_argument('--epochs', type=int, default=5, help='timed epochs per pipeline, best kept (default 5)')
    parser.add_argument('--quick', action='store_true', help='100 images, 1 timed epoch')
    parser.add_argument('--max-other-load', type=float, default=0.3, metavar='CORES',
                        help='before each case, wait until other processes use at most this many cores '
                             '(default 0.3)')
    parser.add_argument('--max-wait', type=float, default=120, help='seconds to wait for that (0: never wait)')
    parser.add_argument('--out', default='benchmarks/results/docs_images.json')
    parser.add_argument('--case', help=argparse.SUPPRESS)      # internal: one case, in its own process
    parser.add_argument('--dataset', help=argparse.SUPPRESS)
    parser.add_argument('--folder', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        with open(args.dataset, 'rb') as handle:
            dataset = pickle.load(handle)
        result = run_case(args.case, CASES[args.case], dataset, args.folder, args.threads, args.epochs,
                          (args.max_other_load, args.max_wait))
        with open(args.out, 'w') as handle:
            json.dump(result, handle)
        return
    count, epochs = (100, 1) if args.quick else (args.images, args.epochs)
    print(f'generating {count} photo-like images ...', flush=True)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        dataset_path = os.path.join(folder, 'dataset.pickle')
        with open(dataset_path, 'wb') as handle:
            dataset = data.make_dataset('photo', count, seed=0)
            pickle.dump([dataset[i] for i in range(count)], handle, protocol=pickle.HIGHEST_PROTOCOL)
        for name in CASES:
            results.append(run_case_process(name, dataset_path, folder, args, epochs))
            result = results[-1]
            print(f"{name}: {result['file_bytes'] / 2**20:.1f} MiB, "
                  f"train {result['train_images_per_s']:,.0f} images/s, "
                  f"val {result['val_images_per_s']:,.0f} images/s (machine busy "
                  f"{result['busy_cores_before']} cores before, load average {result['load_average_after']} after)",
                  flush=True)
    print()
    print(markdown_table(results, count))
    anchor.write_report({'environment': anchor.environment_info(None), 'images': count, 'threads': args.threads,
                         'epochs': epochs, 'results': results}, args.out)


if __name__ == '__main__':
    main()
