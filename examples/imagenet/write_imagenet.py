"""Write an ImageFolder tree (ImageNet's train/ and val/, both in class folders) to train/val .beton files.

The published runs used (ffcv-imagenet README), in FFCV's 'proportion' mode (each image JPEG-encoded with
the given probability, otherwise stored raw), longer side capped (never upscaled):
  --preset rn50   max side 500 px, 50% JPEG at quality 90  -> train_500_0.50_90.beton, val_500_0.50_90.beton
  --preset rn18   max side 400 px, 10% JPEG at quality 90  -> train_400_0.10_90.beton, val_400_0.10_90.beton

    python examples/imagenet/write_imagenet.py --root /data/imagenet --out /data/ffcv --preset rn50
    python examples/imagenet/write_imagenet.py --root /data/imagenet --out /data/ffcv --max-resolution 256

Labels are class indices in sorted folder order (torchvision's ImageFolder rule), so train and val must hold
the same class folders. Which images are JPEG is drawn from the row number: the same file on every rerun.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ffcv.datasets import ImageFolderDataset
from ffcv.fields import IntField, RGBImageField
from ffcv.writer import DatasetWriter

PRESETS = {'rn50': {'max_resolution': 500, 'compress_probability': 0.50, 'jpeg_quality': 90},
           'rn18': {'max_resolution': 400, 'compress_probability': 0.10, 'jpeg_quality': 90}}


def output_name(split: str, max_resolution: int, compress_probability: float, jpeg_quality: int) -> str:
    """File name that records the settings, as the published files were named (train_500_0.50_90)."""
    return f'{split}_{max_resolution}_{compress_probability:.2f}_{jpeg_quality}.beton'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', required=True, type=Path, help='folder holding train/ and val/ class folders')
    parser.add_argument('--out', required=True, type=Path, help='output folder')
    parser.add_argument('--preset', choices=sorted(PRESETS), default='rn50', help='published settings (default rn50)')
    parser.add_argument('--max-resolution', type=int, help='longer side cap in px (overrides the preset)')
    parser.add_argument('--compress-probability', type=float, help='share of JPEG images (overrides the preset)')
    parser.add_argument('--jpeg-quality', type=int, help='JPEG quality 0-100 (overrides the preset)')
    parser.add_argument('--splits', default='train,val', help='sub-folders of --root to write (default train,val)')
    parser.add_argument('--num-workers', type=int, default=-1, help='encoding processes (-1: every CPU)')
    args = parser.parse_args(argv)
    settings = dict(PRESETS[args.preset])
    for key in settings:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    args.out.mkdir(parents=True, exist_ok=True)
    classes = None
    for split in args.splits.split(','):
        try:
            dataset = ImageFolderDataset(args.root / split)
        except (FileNotFoundError, ValueError) as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        if classes is not None and dataset.classes != classes:
            print(f'error: {args.root / split} has other class folders than the first split', file=sys.stderr)
            return 2
        classes = dataset.classes
        path = args.out / output_name(split, **settings)
        fields = {'image': RGBImageField(write_mode='proportion', **settings), 'label': IntField()}
        DatasetWriter(str(path), fields, num_workers=args.num_workers).from_indexed_dataset(dataset)
        print(f'{split}: {len(dataset)} images, {len(dataset.classes)} classes -> {path}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
