"""A training run's folder (results/ID/run-TIMESTAMP/): params.yml, metrics.csv, checkpoints written
atomically, and reading a run's config back."""
from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path

import yaml

from common.files import atomic_path, write_text

from .checkpoint import read_checkpoint
from .config import ConfigError, TrainConfig

METRICS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds"]


class Run:
    """A run folder: results/ID/run-TIMESTAMP/ with params, metrics and checkpoints."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.metrics = directory / "metrics.csv"

    @classmethod
    def create(cls, cfg: TrainConfig, run_id: str) -> "Run":
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        d = Path(cfg.results) / run_id / f"run-{stamp}"
        for k in range(2, 100):  # two runs started in the same second get their own folders
            try:
                d.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                d = Path(cfg.results) / run_id / f"run-{stamp}-{k}"
            except OSError as e:  # e.g. a folder under /proc: exists, looks writable, takes no folders
                raise ConfigError(f"results: cannot create the run folder {d} ({e.strerror}); give --results "
                                  f"a writable folder") from None
        run = cls(d)
        run.write_params(cfg)
        with open(d / "metrics.csv", "w", newline="") as f:
            csv.writer(f).writerow(METRICS)
        return run

    def write_params(self, cfg: TrainConfig) -> None:
        write_text(self.dir / "params.yml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics, "a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in METRICS])
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict]:
        with open(self.metrics) as f:
            return list(csv.DictReader(f))

    def truncate_metrics(self, epochs: int) -> None:
        """On resume, drop rows of epochs whose checkpoint was never written."""
        rows = [r for r in self.read_metrics() if int(r["epoch"]) <= epochs]
        with atomic_path(self.metrics) as tmp, open(tmp, "w", newline="") as f:  # a kill leaves the old file
            w = csv.writer(f)
            w.writerow(METRICS)
            for r in rows:
                w.writerow([r[k] for k in METRICS])


def load_config_of(run_dir: Path) -> TrainConfig:
    from common.errors import read_user_file
    p = run_dir / "params.yml"
    if not p.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no params.yml)")
    fix = "a run folder's params.yml is written by training; restore it or start a new run with --params"
    return TrainConfig.from_dict(read_user_file(p, "run parameters", "yaml", fix, ConfigError) or {}, str(p),
                                 validate=False)


def resume_point(run_dir: Path, cfg: TrainConfig) -> int | None:
    """The epoch a resume continues after, or None when the run has already trained all its epochs. A run
    without last.pt, one whose last.pt is damaged, and a params.yml edited since last.pt was written are
    refused naming what to do (the schedule, width and data all follow the run's recorded config)."""
    last = run_dir / "last.pt"
    again = f"start it again: python -m training {run_dir.parent.name} --params {run_dir / 'params.yml'}"
    if not last.is_file():
        raise ConfigError(f"{run_dir} has no resume point (no last.pt: it stopped during its first epoch); {again}")
    try:
        ck = read_checkpoint(last)
        recorded = TrainConfig.from_dict(ck["config"], str(last), validate=False).to_dict()
    except Exception as e:  # any unreadable checkpoint: a user file, not a bug
        raise ConfigError(f"{last} is damaged ({type(e).__name__}: {str(e)[:120]}); {again}") from None
    changed = [f"{k}: {recorded.get(k)!r} -> {v!r}" for k, v in cfg.to_dict().items() if recorded.get(k) != v]
    if changed:
        raise ConfigError(f"{run_dir / 'params.yml'} was edited after the run started ({'; '.join(changed)}); "
                          f"--resume continues the run as it was started: restore those values, or {again}")
    return None if ck["epoch"] >= cfg.epochs else ck["epoch"]
