"""examples/detection/train_detection.py runs end to end: write, load images of different sizes, train."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'examples' / 'detection' / 'train_detection.py'


def test_detection_example_trains_on_varied_sizes(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), '--out', str(tmp_path), '--images', '12', '--steps', '2',
                             '--batch-size', '2', '--freeze-backbone', '--device', 'cpu'],
                            capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
    steps, summary = rows[:-1], rows[-1]
    assert summary['summary'] and summary['steps'] == 2 and summary['finite']
    assert all(math.isfinite(row['loss']) for row in steps)
    sizes = {tuple(size) for row in steps for size in row['sizes']}
    assert len(sizes) == 4  # four images, four different sizes, none resized by the loader


def test_generated_samples_match_what_the_loader_gives(tmp_path):
    example = load_script('examples/detection/train_detection.py', 'detection_example')
    path = str(tmp_path / 'd.beton')
    example.write_dataset(path, 6)
    dataset = example.SquaresOnPhotos(6)
    samples = [dataset[i] for i in range(6)]
    seen = 0
    for images, boxes, labels in example.make_loader(path, 3, 'cpu', 2):  # random order: match samples by size
        assert len(images) == len(boxes) == len(labels) == 3
        for image, box, label in zip(images, boxes, labels):
            matches = [s for s in samples if s[0].shape[:2] == tuple(image.shape[1:])]
            assert len(matches) == 1, 'an image came back with a size no sample (or several) has'
            _, want_boxes, want_labels = matches[0]
            np.testing.assert_array_equal(box.numpy(), want_boxes)
            np.testing.assert_array_equal(label.numpy(), want_labels)
            assert image.dtype == torch.float32 and 0 <= float(image.min()) and float(image.max()) <= 1
            seen += 1
    assert seen == 6
