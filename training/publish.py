"""python -m training.publish RUN_DIR pretrained/<model>/<precision>: a run's final model as a pretrained folder.

Writes model.npz (the run's final.pt in the compact format of training/compact.py: binary weights as bits),
params.yml, metrics.csv, curves.png, test_accuracy.txt and info.json (epochs, wall time, where and how it
trained, and the teacher and starting weights of a run that had them; starting weights that are the folder being
replaced are named with their test accuracy and the commit that holds them). QONNX is generated on demand
(`make export`, and every hardware build exports its own).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import torch
import yaml

from common import compat  # noqa: F401

from .checkpoint import evaluate_checkpoint, preset_path, read_checkpoint
from .compact import save_compact


def this_machine() -> str:
    cpu = platform.processor() or "CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def lineage(run: Path) -> dict:
    """What the run learned from besides the data: its distillation teacher and the weights it started from."""
    params = yaml.safe_load((run / "params.yml").read_text()) or {}
    return {key: params[name] for name, key in (("distill_from", "teacher"), ("init_from", "started_from"),
                                                 ("init_latent_from", "latent_magnitudes_from"))
            if params.get(name)}


def last_commit(folder: Path) -> str:
    """The short commit that last changed folder, or "" outside git (or without git)."""
    try:
        r = subprocess.run(["git", "log", "-1", "--format=%h", "--", "."], cwd=folder, capture_output=True, text=True)
    except OSError:
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def replaced(lines: dict, dest: Path) -> dict:
    """A lineage entry naming dest itself would name the new model once it is written: it names the one it
    replaces instead (its test accuracy, and the commit that holds it where dest is in git)."""
    same = [key for key, path in lines.items() if preset_path(path).resolve() == dest.resolve()]
    if not same:
        return lines
    old = json.loads((dest / "info.json").read_text()) if (dest / "info.json").is_file() else {}
    commit = last_commit(dest)
    was = f"test {old.get('test_acc', '?')}%" + (f", commit {commit}" if commit else "")
    return {**lines, **{key: f"{lines[key]} as it was before this model replaced it ({was})" for key in same}}


def publish(run: Path, dest: Path, where: str, command: str = "", code: str = "", extra: dict | None = None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    ancestry = replaced(lineage(run), dest)
    ck = read_checkpoint(run)
    ck.setdefault("source", "best.pt")
    ck.setdefault("precise_bn", False)
    save_compact(ck, dest / "model.npz")
    for f in ("params.yml", "metrics.csv", "curves.png"):
        shutil.copyfile(run / f, dest / f)
    acc, n_test = evaluate_checkpoint(dest / "model.npz", {"data_dir": ""}, log=lambda *a: None, count=True)
    (dest / "test_accuracy.txt").write_text(f"{acc:.2f}\n")
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    val = ck.get("val_acc")  # None: trained without a validation split
    info = {"run": str(run), "epoch": ck["epoch"], "checkpoint": ck["source"], "precise_bn": ck["precise_bn"],
            "val_acc": None if val is None else round(val, 3), "test_acc": round(acc, 2),
            "test_images": n_test, "epochs": len(rows),
            "train_wall_minutes": round(sum(float(r["epoch_seconds"]) for r in rows) / 60, 1),
            "trained_on": where, "command": command, "code": code,
            "torch": torch.__version__, "python": platform.python_version(), **ancestry, **(extra or {})}
    (dest / "info.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="training run folder (results/ID/run-TIMESTAMP)")
    p.add_argument("dest", type=Path, help="pretrained folder, e.g. pretrained/lenet5/binary")
    p.add_argument("--where", default=this_machine(),
                   help="where it trained, recorded in info.json (default: this machine's CPU and core count)")
    p.add_argument("--command", default="", help="the command that trained it, recorded in info.json")
    p.add_argument("--code", default="", help="the project commit that trained it, recorded in info.json")
    args = p.parse_args(argv)
    publish(args.run, args.dest, args.where, args.command, args.code)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
