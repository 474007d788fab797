#!/usr/bin/env bash
# Prepares tools/gpu_train.sh from a fresh clone (needs PyPI): the wheels the GPU machine lacks into .whl/
# (brevitas as finn-plus pins it, with its two dependencies; setuptools for pkg_resources into .whl/extra/)
# and CIFAR-10 split into 15 MiB parts in .gpu/parts/ (both folders are ignored by git).
set -eu
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p .whl/extra .gpu/parts
$PY -m pip download -q --no-deps -d .whl brevitas==0.13.0 dependencies==2.0.1 unfoldNd==0.2.3
$PY -m pip download -q --no-deps -d .whl/extra "setuptools<81"
DATA=$($PY -c "from training.data import data_dir; print(data_dir())")
[ -f "$DATA/cifar10.npz" ] || { echo "error: $DATA/cifar10.npz not found; run make data first" >&2; exit 2; }
rm -f .gpu/parts/cifar10.npz.part*
split -b 15M -d "$DATA/cifar10.npz" .gpu/parts/cifar10.npz.part
ls -la .whl .gpu/parts
echo "ready: carry .whl and one part of .gpu/parts per call, then bash tools/gpu_train.sh"
