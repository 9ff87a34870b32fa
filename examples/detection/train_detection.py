"""train_detection.py: a COCO-like detection set (images of different sizes, a variable number of boxes per
image) written to .beton and fed, without resizing or padding in the loader, to torchvision's Faster R-CNN
(MobileNetV3-Large 320 FPN, random init) for a few training steps. Runs on a CPU in well under a minute.

  python examples/detection/train_detection.py --out /tmp/detection --images 64 --steps 6
  python examples/detection/train_detection.py --out /tmp/detection --images 12 --steps 2 --batch-size 2 \
      --freeze-backbone                                                      # what the CI test runs

The images are crops of random size (96-320 px a side) of scikit-image's sample photographs, each with 0-5
coloured squares pasted in; a square's box and its colour (the class) are the annotations. Prints one JSON
line per training step and a summary line.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import time

import numpy as np
import skimage.data
import torch
import torchvision

from ffcv.fields import NDArrayField, RGBImageField
from ffcv.fields.decoders import NDArrayListDecoder, PackedRGBImageDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.transforms import ToDevice, ToTensor
from ffcv.transforms.ragged import ToImageList
from ffcv.writer import DatasetWriter

# --- Config ---
PHOTOS = ('astronaut', 'chelsea', 'coffee', 'rocket', 'hubble_deep_field', 'immunohistochemistry', 'colorwheel',
          'camera', 'coins', 'moon', 'brick', 'grass', 'gravel', 'clock')  # ship inside scikit-image
COLOURS = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200]], np.uint8)  # class 1, 2, 3 (0: background)
SIDE_RANGE = (96, 320)   # crop sides, px: every image has its own size
MAX_OBJECTS = 5          # squares per image: 0..MAX_OBJECTS
OBJECT_SIDE = (12, 48)   # side of a pasted square, px
MODEL_SIDE = (160, 320)  # Faster R-CNN resizes each image to shorter side 160, longer at most 320 (CPU budget)


# --- Data ---
@functools.lru_cache(maxsize=1)
def load_photos() -> tuple:
    """scikit-image's sample photographs as (H, W, 3) uint8 (grayscale ones replicated)."""
    photos = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        if photo.ndim == 2:
            photo = np.repeat(photo[:, :, None], 3, axis=2)
        photos.append(np.ascontiguousarray(photo[:, :, :3]))
    return tuple(photos)


class SquaresOnPhotos:
    """dataset[i] -> (image (H, W, 3) uint8, boxes (n, 4) float32 x1 y1 x2 y2, labels (n,) int64); seeded by i."""

    def __init__(self, count: int, seed: int = 0):
        self.count, self.seed, self.photos = count, seed, load_photos()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, index])
        photo = self.photos[int(rng.integers(len(self.photos)))]
        height = int(rng.integers(SIDE_RANGE[0], min(SIDE_RANGE[1], photo.shape[0]) + 1))
        width = int(rng.integers(SIDE_RANGE[0], min(SIDE_RANGE[1], photo.shape[1]) + 1))
        top, left = int(rng.integers(photo.shape[0] - height + 1)), int(rng.integers(photo.shape[1] - width + 1))
        image = photo[top:top + height, left:left + width].copy()
        boxes, labels = [], []
        for _ in range(int(rng.integers(MAX_OBJECTS + 1))):
            side = int(rng.integers(OBJECT_SIDE[0], OBJECT_SIDE[1] + 1))
            y, x = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
            label = int(rng.integers(len(COLOURS)))
            image[y:y + side, x:x + side] = COLOURS[label]
            boxes.append([x, y, x + side, y + side])
            labels.append(label + 1)
        return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def write_dataset(path: str, count: int) -> None:
    fields = {'image': RGBImageField(write_mode='jpg', jpeg_quality=90),
              'boxes': NDArrayField(np.dtype('float32'), (None, 4)),  # None: any number of boxes
              'labels': NDArrayField(np.dtype('int64'), (None,))}
    DatasetWriter(path, fields, num_workers=1).from_indexed_dataset(SquaresOnPhotos(count), progress=False)


def make_loader(path: str, batch_size: int, device: torch.device, workers: int) -> Loader:
    """Batches of (images: list of (3, H, W) float in [0, 1], boxes: list of (n, 4), labels: list of (n,))."""
    return Loader(path, batch_size=batch_size, num_workers=workers, order=OrderOption.RANDOM, seed=0, drop_last=True,
                  pipelines={'image': [PackedRGBImageDecoder(), ToImageList(device=device, to_float=True)],
                             'boxes': [NDArrayListDecoder(), ToTensor(), ToDevice(device)],
                             'labels': [NDArrayListDecoder(), ToTensor(), ToDevice(device)]})


# --- Model ---
def make_model(device: torch.device, freeze_backbone: bool) -> torch.nn.Module:
    model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=len(COLOURS) + 1,
        min_size=MODEL_SIDE[0], max_size=MODEL_SIDE[1],  # the model's own resize (its transform), not the loader's
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=150, box_batch_size_per_image=64)  # CPU-sized
    if freeze_backbone:  # MobileNetV3 body fixed at its random init: a CPU step takes a fraction of the time
        model.backbone.body.requires_grad_(False)
    return model.to(device).train()


# --- Train ---
def train(loader: Loader, model: torch.nn.Module, steps: int, lr: float) -> list:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    history, step = [], 0
    while step < steps:
        for images, boxes, labels in loader:
            started = time.perf_counter()
            targets = [{'boxes': b, 'labels': y} for b, y in zip(boxes, labels)]
            losses = model(images, targets)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            row = {'step': step, 'loss': round(loss.item(), 4), 'boxes': int(sum(len(b) for b in boxes)),
                   'sizes': [list(image.shape[1:]) for image in images],  # (H, W) of each image as loaded
                   'seconds': round(time.perf_counter() - started, 3)}
            print(json.dumps(row), flush=True)
            history.append(row)
            step += 1
            if step == steps:
                break
    return history


# --- Main ---
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='folder for detection.beton')
    parser.add_argument('--images', type=int, default=64, help='images to generate and write')
    parser.add_argument('--steps', type=int, default=6, help='training steps')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--lr', type=float, default=0.01, help='SGD learning rate (momentum 0.9)')
    parser.add_argument('--workers', type=int, default=2, help='loader threads')
    parser.add_argument('--freeze-backbone', action='store_true', help='train only FPN, RPN and heads (quick CPU runs)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'detection.beton')
    started = time.perf_counter()
    write_dataset(path, args.images)
    written = time.perf_counter() - started
    history = train(make_loader(path, args.batch_size, device, args.workers), make_model(device, args.freeze_backbone),
                    args.steps, args.lr)
    losses = [row['loss'] for row in history]
    print(json.dumps({'summary': True, 'file': path, 'images': args.images, 'write_seconds': round(written, 2),
                      'steps': len(history), 'first_loss': losses[0], 'last_loss': losses[-1],
                      'finite': all(math.isfinite(v) for v in losses)}), flush=True)


if __name__ == '__main__':
    main()
