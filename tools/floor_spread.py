"""The spread of the test suite's tiny trainings, for the accuracy floors its tests assert.

The tests train a quarter-width LeNet5 for one or two epochs on a few thousand real images and assert a test
accuracy floor. What moves that accuracy from one machine to another is the precision 'auto' picks (bf16 where
the CPU has it, float32 where it has not), the thread count, and float rounding; a change of seed moves it far
more than any of them, so the floors are set from the lowest figure over seeds x precisions x threads.

    python -m tools.floor_spread                   # seeds 0-4, bf16 and float32, 1 and 2 threads
    python -m tools.floor_spread --seeds 0 1 --amp none
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

from common.paths import OFFLINE_DATASETS
from training.config import TrainConfig
from training.train import train

# the tests' tiny training (tests/conftest.py tiny_config builds on it) and the variants they assert floors on
TINY = dict(model="lenet5", dataset="mnist", epochs=1, batch_size=100, train_limit=3000, test_limit=500,
            val_size=1000, width_scale=0.25, lr=0.005)
CASES = {
    "tiny_run (binary, 2 epochs)": dict(epochs=2),
    "ternary (2 epochs)": dict(epochs=2, tern_weights="1111", tern_acts="0111"),
    "float (2 epochs)": dict(epochs=2, binarize=False, biases=True, layer_order="CBAP", loss="cross_entropy"),
    "distilled from tiny_run (1 epoch, 600 images)": dict(train_limit=600, distill_weight=0.7),
}


def accuracy(run: Path) -> float:
    return float((run / "test_accuracy.txt").read_text().split()[0])


def spread(seeds, amps, threads, data_dir: str, out: Path) -> dict:
    found = {name: [] for name in CASES}
    for seed, amp, th in itertools.product(seeds, amps, threads):
        base = dict(TINY, seed=seed, amp=amp, threads=th, data_dir=data_dir, results=str(out))
        teacher = None
        for name, kw in CASES.items():
            extra = dict(distill_from=str(teacher)) if "distill_weight" in kw else {}
            cfg = TrainConfig(**{**base, **kw, **extra})
            cfg.validate()
            run = train(cfg, run_id=f"s{seed}_{amp}_{th}", log=lambda *a: None)
            teacher = teacher or run
            found[name].append(accuracy(run))
            print(f"seed {seed} {amp:4s} {th} threads  {name}: {found[name][-1]:.1f}%", flush=True)
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds to train with")
    ap.add_argument("--amp", nargs="+", default=["bf16", "none"], choices=["bf16", "none"],
                    help="precisions: bf16 (what 'auto' picks on CPUs with it) and none (float32, the others)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU thread counts")
    ap.add_argument("--data-dir", default=str(OFFLINE_DATASETS),
                    help="where MNIST is, as the tests find it (default: ../shared/datasets beside the checkout)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        found = spread(a.seeds, a.amp, a.threads, a.data_dir, Path(tmp))
    print(f"\n{'case':48s} {'min':>6s} {'max':>6s}  runs")
    for name, accs in found.items():
        print(f"{name:48s} {min(accs):6.1f} {max(accs):6.1f}  {len(accs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
