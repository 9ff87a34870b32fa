#!/usr/bin/env bash
# Write CIFAR-10 to .beton (from a local copy; add --download to fetch it) and train FFCV's recipe.
#   bash examples/cifar/run.sh /data/cifar [/data/cifar_beton]
set -euo pipefail
ROOT=${1:?usage: run.sh CIFAR_ROOT [BETON_DIR]}
OUT=${2:-/tmp/cifar_beton}
HERE=$(cd "$(dirname "$0")" && pwd)
python "$HERE/write_cifar.py" --root "$ROOT" --out "$OUT"
python "$HERE/../../train_cifar.py" --config-file "$HERE/cifar.yaml" \
  --data.train_dataset="$OUT/train.beton" --data.val_dataset="$OUT/test.beton"
