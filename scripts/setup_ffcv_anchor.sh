#!/usr/bin/env bash
# Build FFCV 1.0.2 (the original) in its own environment, to benchmark and cross-check against (real ffcv + torch, CPU use) from the registries:
#     bash scripts/setup_ffcv_anchor.sh     # -> $HOME/.venvs/ffcv-anchor
#     VENV=/some/other/path bash scripts/setup_ffcv_anchor.sh
# About 2 minutes and 6.1 GB (the torch 2.14.1 wheel on this disk is a CUDA build).
# The venv lives outside every git repository on purpose.
set -euo pipefail
VENV=${VENV:-$HOME/.venvs/ffcv-anchor}

# C libraries that ffcv's extension compiles against (found through pkg-config)
if ! pkg-config --exists libturbojpeg opencv4 2>/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y pkg-config libturbojpeg0-dev libopencv-dev
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
# torch/torchvision: the x86_64 Python 3.11 wheels that lie on this disk (capped by the machine pip configuration)
"$PIP" install torch==2.14.1 torchvision==0.29.1
# ffcv's runtime deps, but opencv-python-headless instead of the opencv-python that ffcv's
# setup.py asks for (both install into the same cv2/ folder); PyTurboJPEG<2 because 2.x
# needs libjpeg-turbo >= 3.0 and Debian 12 ships 2.1.5.
"$PIP" install numpy==2.4.6 numba==0.68.1 opencv-python-headless==5.0.0.93 pillow==13.0.0 \
  terminaltables pytorch_pfn_extras fastargs assertpy tqdm psutil \
  scikit-image==0.26.0 simplejpeg==1.9.0 'PyTurboJPEG==1.8.3'
# the real ffcv, built from its sdist against the system libturbojpeg + OpenCV
"$PIP" install --no-deps ffcv==1.0.2

"$VENV/bin/python" -I - <<'EOF'
import ffcv, ffcv.libffcv, numba, numpy, cv2, torch, torchvision
from ffcv.loader import Loader, OrderOption
from ffcv.writer import DatasetWriter
print('ok: ffcv', ffcv.__version__, '(pip: 1.0.2) numba', numba.__version__, 'numpy', numpy.__version__,
      'cv2', cv2.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__)
EOF
du -sh "$VENV"
