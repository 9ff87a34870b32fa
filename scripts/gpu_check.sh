#!/usr/bin/env bash
# The checks to run the day a GPU is lent: at most 8 minutes on one GPU (see scripts/gpu_check.py).
#   bash scripts/gpu_check.sh [--out DIR] [--data DIR]   # GPU name, CUDA tests, CIFAR-10 and ResNet-18 speed vs
#                                                        # FFCV's published A100 figures, torchrun + NCCL
#   bash scripts/gpu_check.sh --dry-run [--out DIR]      # the same steps on the CPU at tiny sizes (~2 min)
# Results: DIR/results.json and DIR/logs/; a summary table at the end. Exit code 0 when every step is ok.
# Python: $PYTHON if set, else .venv/bin/python if present, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" scripts/gpu_check.py "$@"
