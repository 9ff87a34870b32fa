"""FFCV 1.0.2 side of bench_writer.py: run under the anchor interpreter (``python -I``), never ours.

Generates the case's dataset with benchmarks/data.py (loaded by path), prints one JSON line
``{"ready": true, ...}`` and then answers each ``run`` line on stdin with one timed write:
``{"seconds": s, "cpu_seconds": c, "file_bytes": n}``. ``quit`` or end of input stops it. FFCV's progress bar goes to
stderr, which the caller sends to a log file.
"""
import argparse
import importlib.util
import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path


def load_data_module():
    spec = importlib.util.spec_from_file_location('ffcv_bench_data', Path(__file__).with_name('data.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have been waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + '\n')
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--case', required=True)
    parser.add_argument('--count', type=int, required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-workers', type=int, required=True)
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--digest', action='store_true', help='hash the generated dataset')
    args = parser.parse_args()

    import ffcv
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter
    data = load_data_module()
    case = data.WRITER_CASES[args.case]
    start = time.perf_counter()
    dataset = data.make_dataset(case['kind'], args.count, args.seed)
    generated = time.perf_counter() - start
    reply({'ready': True, 'ffcv_file': ffcv.__file__, 'generate_seconds': generated,
           'digest': data.dataset_digest(dataset) if args.digest else None})

    path = os.path.join(args.workdir, f'ffcv102_{args.case}.beton')
    for line in sys.stdin:
        command = line.strip()
        if command == 'quit':
            break
        if command != 'run':
            reply({'error': f'unknown command {command!r}'})
            continue
        fields = {'image': RGBImageField(**case['image_args']), 'label': IntField()}
        writer = DatasetWriter(path, fields, num_workers=args.num_workers)
        cpu_start, start = cpu_seconds(), time.perf_counter()
        writer.from_indexed_dataset(dataset, chunksize=100)
        seconds = time.perf_counter() - start
        for process in multiprocessing.active_children():  # FFCV does not join its workers: reap them
            process.join()
        cpu = cpu_seconds() - cpu_start
        size = os.path.getsize(path)
        os.unlink(path)
        reply({'seconds': seconds, 'cpu_seconds': cpu, 'file_bytes': size})


if __name__ == '__main__':
    main()
