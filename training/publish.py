"""python -m training.publish RUN_DIR pretrained/<model>/<precision>: a run's best checkpoint as a pretrained folder.

Writes model.pt (best validation checkpoint), model.onnx (QONNX for FINN; quantized nets), params.yml,
metrics.csv, curves.png, test_accuracy.txt and info.json (epochs, wall time, where it trained).
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
from pathlib import Path

import torch

from . import compat  # noqa: F401
from .checkpoint import evaluate_checkpoint, export_qonnx, load


def publish(run: Path, dest: Path, where: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    ck = torch.load(run / "best.pt", map_location="cpu", weights_only=False)
    torch.save({k: ck[k] for k in ("model", "config", "epoch", "val_acc")}, dest / "model.pt")
    for f in ("params.yml", "metrics.csv", "curves.png"):
        shutil.copyfile(run / f, dest / f)
    model, cfg, _ = load(dest / "model.pt")
    if cfg.binarize:
        export_qonnx(model, cfg, dest / "model.onnx")
    acc = evaluate_checkpoint(dest / "model.pt", {"data_dir": ""}, log=lambda *a: None)
    (dest / "test_accuracy.txt").write_text(f"{acc:.2f}\n")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    info = {"run": str(run), "best_epoch": ck["epoch"], "val_acc": ck["val_acc"], "test_acc": round(acc, 2),
            "test_images": 10000, "epochs": len(rows),
            "train_wall_minutes": round(sum(float(r["epoch_seconds"]) for r in rows) / 60, 1),
            "trained_on": where, "torch": torch.__version__, "python": platform.python_version()}
    (dest / "info.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="training run folder (results/ID/run-TIMESTAMP)")
    p.add_argument("dest", type=Path, help="pretrained folder, e.g. pretrained/lenet5/binary")
    p.add_argument("--where", default="CPU: 2 cores (x86-64 with AMX-BF16), 1 torch thread, shared with other runs",
                   help="where it trained, recorded in info.json")
    args = p.parse_args(argv)
    publish(args.run, args.dest, args.where)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
