"""Training curves as a PNG."""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def training_curves(metrics_csv: Path, out: Path, title: str = "") -> Path:
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    ep = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [float(r["train_loss"]) for r in rows], label="train")
    if all(r["val_loss"] for r in rows):  # empty without a validation split (val_size 0)
        ax1.plot(ep, [float(r["val_loss"]) for r in rows], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.plot(ep, [float(r["train_acc"]) for r in rows], label="train")
    if all(r["val_acc"] for r in rows):
        ax2.plot(ep, [float(r["val_acc"]) for r in rows], label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
