#!/usr/bin/env bash
# Train the ResNet-18 configs one after another, each on 1 GPU (the published rn18 rows: 1 A100 per run).
#   DATA_DIR=/data/ffcv bash examples/imagenet/run_rn18.sh            # all six: 16 24 32 40 56 88 epochs
#   DATA_DIR=/data/ffcv bash examples/imagenet/run_rn18.sh 16 88      # some of them
# The data: write_imagenet.sh 400 0.10 90. Extra train_imagenet.py arguments go in $EXTRA_ARGS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA_DIR=${DATA_DIR:-/data/ffcv}
LOG_DIR=${LOG_DIR:-$ROOT/runs/rn18}
WORKERS=${WORKERS:-12}
for EPOCHS in ${*:-16 24 32 40 56 88}; do
  python "$ROOT/train_imagenet.py" --config-file "$ROOT/rn18_configs/rn18_${EPOCHS}_epochs.yaml" \
    --data.train_dataset="$DATA_DIR/train_400_0.10_90.beton" --data.val_dataset="$DATA_DIR/val_400_0.10_90.beton" \
    --data.num_workers="$WORKERS" --data.in_memory=1 --logging.folder="$LOG_DIR" \
    --logging.run_name="rn18_${EPOCHS}_epochs_$(date +%Y%m%d_%H%M%S)" ${EXTRA_ARGS:-}
done
