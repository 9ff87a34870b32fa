#!/usr/bin/env bash
# Train the ResNet-50 configs one after another on 8 GPUs with torchrun (the published rn50 rows: 8 A100s).
#   DATA_DIR=/data/ffcv bash examples/imagenet/run_rn50.sh            # all six: 16 24 32 40 56 88 epochs
#   DATA_DIR=/data/ffcv bash examples/imagenet/run_rn50.sh 88         # one of them
# Several nodes (run the same command on every node, NODE_RANK 0..NNODES-1; the configs are tuned for 8
# processes in all, so give e.g. EXTRA_ARGS="--dist.world_size=16 --training.batch_size=256" for 2 x 8 GPUs):
#   NNODES=2 NODE_RANK=0 RDZV_ENDPOINT=node0:29500 DATA_DIR=/data/ffcv bash examples/imagenet/run_rn50.sh
# The data: write_imagenet.sh 500 0.50 90.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA_DIR=${DATA_DIR:-/data/ffcv}
LOG_DIR=${LOG_DIR:-$ROOT/runs/rn50}
WORKERS=${WORKERS:-12}
GPUS=${GPUS:-8}
NNODES=${NNODES:-1}
if [ "$NNODES" = 1 ]; then
  LAUNCH=(torchrun --standalone --nproc_per_node="$GPUS")
else
  LAUNCH=(torchrun --nnodes="$NNODES" --node_rank="${NODE_RANK:?set NODE_RANK}" --nproc_per_node="$GPUS"
          --rdzv_backend=c10d --rdzv_endpoint="${RDZV_ENDPOINT:?set RDZV_ENDPOINT=host:port}")
fi
STAMP=$(date +%Y%m%d_%H%M%S)
for EPOCHS in ${*:-16 24 32 40 56 88}; do
  RDZV=()
  [ "$NNODES" = 1 ] || RDZV=(--rdzv_id="${RDZV_ID:-rn50}_${EPOCHS}")  # equal on every node: one RDZV_ID per job
  "${LAUNCH[@]}" "${RDZV[@]}" "$ROOT/train_imagenet.py" --config-file "$ROOT/rn50_configs/rn50_${EPOCHS}_epochs.yaml" \
    --data.train_dataset="$DATA_DIR/train_500_0.50_90.beton" --data.val_dataset="$DATA_DIR/val_500_0.50_90.beton" \
    --data.num_workers="$WORKERS" --data.in_memory=1 --logging.folder="$LOG_DIR" \
    --logging.run_name="rn50_${EPOCHS}_epochs_${STAMP}" ${EXTRA_ARGS:-}
done
