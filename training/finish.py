"""The end of a run: PreciseBN statistics on best.pt and last.pt (and a weight average), the final model chosen
on validation, its test accuracy (and the others', for the record) and the training curves (also for a finished
run folder: --finish RUN_DIR)."""
from __future__ import annotations

from pathlib import Path

import torch

from common.files import write_text

from .checkpoint import read_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .data import make_splits
from .losses import evaluate
from .models import ScalarNorm, build_model
from .run_folder import Run, load_config_of
from .speed import pick_device


def norm_layers(model) -> list:
    return [m for m in model.modules() if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, ScalarNorm))]


@torch.no_grad()
def precise_bn(model, x, batch: int, device) -> None:
    """Replaces the running BN statistics (momentum averages over the last few hundred training batches,
    noisy for binary nets) by the average over all of x (Wu & Johnson 2021, "PreciseBN")."""
    norms = norm_layers(model)
    saved = [m.momentum for m in norms]
    for m in norms:
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
    model.train()
    for k, i in enumerate(range(0, len(x), batch)):
        for m in norms:
            m.momentum = 1.0 / (k + 1)  # a cumulative average, the same for BatchNorm and ScalarNorm
        model(x[i:i + batch].to(device).float())
    for m, mom in zip(norms, saved):
        m.momentum = mom
    model.eval()


def candidates(run: Run, splits, device) -> list[tuple[str, dict]]:
    """best.pt and last.pt (without a validation split, val_size 0, only last.pt), then the weight average of
    a run with swa_start."""
    names = ("best.pt", "last.pt") if splits.has_val else ("last.pt",)
    cands = [(n, read_checkpoint(run.dir / n, device)) for n in names]
    last = cands[-1][1]
    if last.get("swa"):
        cands.append(swa_candidate(last))
    return cands


def swa_candidate(last: dict) -> tuple[str, dict]:
    """last.pt's buffers with its parameters replaced by their average over the epochs' ends."""
    swa, model = last["swa"], dict(last["model"])
    model.update({n: p.to(model[n].dtype) for n, p in swa["params"].items()})
    name = f"the average of epochs {last['epoch'] - swa['n'] + 1}-{last['epoch']}"
    return name, {"model": model, "config": last["config"], "epoch": last["epoch"]}


def pick_final(done: list[dict], has_val: bool) -> dict:
    """The best validated candidate, a tie going to the later one (max keeps the first it meets); the last
    without validation."""
    return max(reversed(done), key=lambda c: c["val_acc"]) if has_val else done[-1]


def select_final(run: Run, cfg: TrainConfig, splits, device, log) -> tuple[dict, list]:
    """final.pt: best.pt or last.pt (or the weight average) after PreciseBN, whichever validates better (ties:
    the later one); without a validation split, the weight average where there is one, else last.pt. Also
    returns the candidates not chosen, after PreciseBN, for the record."""
    model, cands = build_model(cfg).to(device), candidates(run, splits, device)
    if not (cfg.precise_bn and norm_layers(model)):
        name, ck = cands[0]
        final = dict(ck, source=name, precise_bn=False, val_acc=ck.get("val_acc"))
        save_checkpoint(final, run.dir / "final.pt")
        return final, []
    done = []
    for name, ck in cands:
        model.load_state_dict(ck["model"])
        precise_bn(model, splits.x_train, cfg.eval_batch_size, device)
        val_acc = evaluate(model, splits.x_val, splits.y_val, cfg, device)[1] if splits.has_val else None
        log(f"PreciseBN on {name} (epoch {ck['epoch']}): " +
            (f"val acc {val_acc:.3f}%" if val_acc is not None else "no validation split"))
        done.append({"model": {k: v.clone() for k, v in model.state_dict().items()}, "config": ck["config"],
                     "epoch": ck["epoch"], "val_acc": val_acc, "source": name, "precise_bn": True})
    final = pick_final(done, splits.has_val)
    save_checkpoint(final, run.dir / "final.pt")
    return final, [c for c in done if c is not final]


def finish(run: Run, cfg: TrainConfig, splits, device, log) -> None:
    """After the last epoch (or with --finish RUN_DIR): final.pt, its test accuracy (and the other candidates',
    noted below it), the curves."""
    final, others = select_final(run, cfg, splits, device, log)
    model = build_model(cfg).to(device)
    text = ""
    for ck in [final, *others]:
        model.load_state_dict(ck["model"])
        test_acc = evaluate(model, splits.x_test, splits.y_test, cfg, device)[1]
        what = f"{'PreciseBN of ' if ck['precise_bn'] else ''}{ck['source']}: epoch {ck['epoch']}"
        if ck is final:
            text = f"{test_acc:.2f}\n# final.pt = {what}, {val_text(ck['val_acc'])}, test images {len(splits.x_test)}\n"
            log(f"test accuracy of final.pt ({what}): {test_acc:.2f}% on {len(splits.x_test)} images")
        else:
            text += f"# not chosen: {what}, {val_text(ck['val_acc'])}, test {test_acc:.2f}%\n"
    write_text(run.dir / "test_accuracy.txt", text)
    from .plots import training_curves
    training_curves(run.metrics, run.dir / "curves.png", title=f"{cfg.model} {run.dir.parent.name}")


def val_text(val_acc: float | None) -> str:
    return "no validation split" if val_acc is None else f"val {val_acc:.3f}%"


def finish_run(run_dir: Path, log=print) -> Path:
    """Redoes the end of training for a completed run folder (e.g. one trained before PreciseBN existed)."""
    cfg = load_config_of(run_dir)
    if not (run_dir / "last.pt").is_file() or (cfg.val_size != 0 and not (run_dir / "best.pt").is_file()):
        raise ConfigError(f"{run_dir} has no best.pt/last.pt: it never completed an epoch")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    splits = make_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.train_limit, cfg.test_limit)
    finish(Run(run_dir), cfg, splits, pick_device(cfg), log)
    return run_dir
