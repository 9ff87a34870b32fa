#!/usr/bin/env bash
# Write ImageNet ($IMAGENET_DIR/train and $IMAGENET_DIR/val, both in class folders) to
# $WRITE_DIR/{train,val}_<max side>_<JPEG share>_<quality>.beton, as ffcv-imagenet's write_imagenet.sh does:
#   IMAGENET_DIR=/data/imagenet WRITE_DIR=/data/ffcv bash examples/imagenet/write_imagenet.sh 500 0.50 90   # rn50
#   IMAGENET_DIR=/data/imagenet WRITE_DIR=/data/ffcv bash examples/imagenet/write_imagenet.sh 400 0.10 90   # rn18
set -euo pipefail
: "${IMAGENET_DIR:?set IMAGENET_DIR to the folder holding train/ and val/}"
: "${WRITE_DIR:?set WRITE_DIR to the output folder}"
MAX_SIDE=${1:?usage: write_imagenet.sh MAX_SIDE JPEG_SHARE QUALITY (e.g. 500 0.50 90)}
SHARE=${2:?usage: write_imagenet.sh MAX_SIDE JPEG_SHARE QUALITY}
QUALITY=${3:?usage: write_imagenet.sh MAX_SIDE JPEG_SHARE QUALITY}
HERE=$(cd "$(dirname "$0")" && pwd)
python "$HERE/write_imagenet.py" --root "$IMAGENET_DIR" --out "$WRITE_DIR" --max-resolution "$MAX_SIDE" \
  --compress-probability "$SHARE" --jpeg-quality "$QUALITY"
