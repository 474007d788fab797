"""python -m training.publish RUN_DIR pretrained/<model>/<precision>: a run's final model as a pretrained folder.

Writes model.pt (the run's final.pt: PreciseBN of its best or last epoch; best.pt for older runs), model.onnx (QONNX for FINN; quantized nets), params.yml,
metrics.csv, curves.png, test_accuracy.txt and info.json (epochs, wall time, where it trained).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
from pathlib import Path

import torch

from . import compat  # noqa: F401
from .checkpoint import evaluate_checkpoint, export_qonnx, find_checkpoint, load


def this_machine() -> str:
    cpu = platform.processor() or "CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def publish(run: Path, dest: Path, where: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    ck = torch.load(find_checkpoint(run), map_location="cpu", weights_only=False)
    ck.setdefault("source", "best.pt")
    ck.setdefault("precise_bn", False)
    torch.save({k: ck[k] for k in ("model", "config", "epoch", "val_acc", "source", "precise_bn")},
               dest / "model.pt")
    for f in ("params.yml", "metrics.csv", "curves.png"):
        shutil.copyfile(run / f, dest / f)
    model, cfg, _ = load(dest / "model.pt")
    if cfg.binarize:
        export_qonnx(model, cfg, dest / "model.onnx")
    acc = evaluate_checkpoint(dest / "model.pt", {"data_dir": ""}, log=lambda *a: None)
    (dest / "test_accuracy.txt").write_text(f"{acc:.2f}\n")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    info = {"run": str(run), "epoch": ck["epoch"], "checkpoint": ck["source"],
            "precise_bn": ck["precise_bn"], "val_acc": round(ck["val_acc"], 3), "test_acc": round(acc, 2),
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
    p.add_argument("--where", default=this_machine(),
                   help="where it trained, recorded in info.json (default: this machine's CPU and core count)")
    args = p.parse_args(argv)
    publish(args.run, args.dest, args.where)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
