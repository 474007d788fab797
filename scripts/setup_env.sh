#!/usr/bin/env bash
# Creates .venv with the pinned environment; idempotent (a stamp records the pins it installed).
# The one place that handles finn-plus 1.6.1's install conflicts (requirements/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.venv
STAMP=$VENV/.pins.sha256
want=$(cat requirements/deps.txt scripts/setup_env.sh pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi

echo "setting up $VENV (first time: a few minutes, about 2.3 GB)"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed (finn-plus 1.6.1 and the pinned wheels)"'
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
# 1. torch first: any unpinned torch request pulls a multi-GB CUDA build. torch 2.13 needs setuptools>=77.0.3.
$PIP install torch==2.13.0 "setuptools>=77.0.3,<81"
# 2. everything else, exactly pinned, torch held at 2.13.0.
echo "torch==2.13.0" > $VENV/constraints.txt
$PIP install -r requirements/deps.txt -c $VENV/constraints.txt
# 3. brevitas 0.13.0 declares setuptools<70 (conflicts with torch 2.13); its real needs are in deps.txt.
$PIP install --no-deps brevitas==0.13.0 qonnx==1.0.0 finn-plus==1.6.1
# hls4ml: only its open-source ap_types headers are read (cppsim without Vitis HLS); its imports are never run.
$PIP install --no-deps hls4ml==1.3.0
# 4. the project's own packages, editable (pyproject.toml): importable from any folder and any process
$PIP install --no-deps --no-build-isolation -e .
$VENV/bin/python -c "import torch, brevitas, qonnx, finn, sweep; print('environment ready: torch', torch.__version__)"
echo "$want" > "$STAMP"
