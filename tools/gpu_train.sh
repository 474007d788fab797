#!/usr/bin/env bash
# One prepared GPU run on a machine with CUDA torch but without this project's environment (the device
# machine): the training loop's GPU epoch time (tools/bench_train.py), then the binary VGGNet7 trained to a
# wall-clock budget. Prepare from a fresh clone with `bash tools/gpu_prepare.sh` (wheels into .whl/, the
# dataset split into .gpu/parts/ for machines that take at most 64 MiB a copy); then, on the GPU machine,
# copy the parts to /tmp/parts/ (one call each) and run `bash tools/gpu_train.sh`.
# Writes $OUT: run.tar.gz (params, metrics, curves, logs, bench.json), final.pt.part* (split: 16 MiB a file).
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
BUDGET=${BUDGET:-570}      # seconds for this whole call, packing included
ARGS=${ARGS:-"--params configs/vggnet7_binary.yml --batch-size 500 --lr 0.003 --epochs 500"}
elapsed() { echo $(( $(date +%s) - T0 )); }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
python3 -c "import pkg_resources" 2>/dev/null ||
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/extra/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD BNN_DATA_DIR=/tmp/data  # the checkout itself is not installed there
mkdir -p /tmp/data
for d in /tmp/parts .gpu/parts; do  # the parts copied by earlier calls, or carried with this one
  [ -f /tmp/data/cifar10.npz ] || ! ls $d/cifar10.npz.part* >/dev/null 2>&1 || cat $d/cifar10.npz.part* > /tmp/data/cifar10.npz
done
echo "a44cc18e4ad961b5158c7da062a6232fb65938b615bf013046199b823b75c43d  /tmp/data/cifar10.npz" | sha256sum -c || exit 1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
LOGS=/tmp/logs; mkdir -p $LOGS

echo "== bench: the fast loop, compiled, bf16, 3 epochs (t=$(elapsed) s)"
COMPILE=on
timeout 200 python3 -m tools.bench_train --gpu-only --gpu-epochs 3 --out $LOGS/bench.json > $LOGS/bench.log 2>&1 || {
  COMPILE=off; echo "compiled bench failed: checking the loop without torch.compile"; tail -8 $LOGS/bench.log
  timeout 90 python3 -c "from tools.bench_train import gpu_epochs; gpu_epochs('vggnet7', 500, 0.003, 'bf16', 'off', 2)" \
    > $LOGS/bench_eager.log 2>&1 || { echo "the fast loop fails on CUDA: stopping early"; tail -25 $LOGS/bench_eager.log; exit 1; }
  tail -1 $LOGS/bench_eager.log; }
tail -1 $LOGS/bench.log

LEFT=$(( BUDGET - $(elapsed) - 25 ))
echo "== training with compile=$COMPILE, budget $LEFT s (t=$(elapsed) s)"
timeout --signal=TERM $(( LEFT + 15 )) python3 -m training vggnet7_gpu $ARGS --device cuda --amp bf16 \
  --channels-last true --compile $COMPILE --time-budget $LEFT --checkpoint-every 50 --results /tmp/results \
  > $LOGS/train.log 2>&1
echo "training exit $? (t=$(elapsed) s)"
grep -E "time budget|PreciseBN|test accuracy" $LOGS/train.log; tail -3 $LOGS/train.log

RUN=$(ls -d /tmp/results/vggnet7_gpu/run-* | tail -1)
CK=$RUN/final.pt; [ -f "$CK" ] || CK=$RUN/best.pt
split -b 15M -d "$CK" $OUT/$(basename "$CK").part
tar -czf $OUT/run.tar.gz -C "$RUN" --exclude='*.pt' . -C /tmp logs
ls -la $OUT; echo "done (t=$(elapsed) s)"
