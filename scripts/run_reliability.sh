#!/usr/bin/env bash
# The long reliability runs (tests marked `slow`): 1,500 fuzzed corruptions, 150 SIGKILLed writers,
# 8 SIGKILLed checkpoint saves with resume, 1,000-epoch and 200-loader soaks per memory manager.
# Each test prints its figures (-s). Extra arguments go to pytest, e.g. -k fuzz.
#   scripts/run_reliability.sh
# Reproduce one fuzz case: python tests/fuzz_runner.py tests/data/ffcv_fixtures /tmp SEED
# A fuzz campaign of your own: python tests/fuzz_campaign.py tests/data/ffcv_fixtures FIRST_SEED COUNT
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" -m pytest -m slow -s -q -p no:cacheprovider "$@" \
    tests/test_fuzz.py tests/test_interrupted_writes.py tests/test_checkpoint_kill.py tests/test_soak.py
