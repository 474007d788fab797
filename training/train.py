"""The training loop: run folder, metrics, atomic checkpoints, resume, interrupt handling."""
from __future__ import annotations

import csv
import math
import os
import signal
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from .config import TrainConfig, coerce, FIELDS, ConfigError
from .data import batches, make_splits
from .models import build_model, weight_layers

METRICS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds"]


class Interrupted(Exception):
    pass


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temporary file, then rename: a kill never leaves a torn checkpoint."""
    tmp = path.with_suffix(path.suffix + ".part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(text)
    os.replace(tmp, path)


def init_from(model, path: str) -> str:
    """Copies the tensors whose name and shape match (float pretraining of a quantized net)."""
    from .checkpoint import find_checkpoint
    ck = torch.load(find_checkpoint(Path(path)), map_location="cpu", weights_only=False)
    own = model.state_dict()
    same = {k: v for k, v in ck["model"].items() if k in own and own[k].shape == v.shape}
    if not same:
        raise ConfigError(f"init_from: {path} shares no tensor of matching name and shape with this {ck['config']}")
    model.load_state_dict(same, strict=False)
    return f"initialised {len(same)} of {len(own)} tensors from {path}"


def pick_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but torch sees no GPU; use --device cpu or auto")
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def loss_fn(cfg: TrainConfig, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if cfg.loss == "cross_entropy":
        return F.cross_entropy(out, y)
    target = F.one_hot(y, out.shape[1]).to(out.dtype) * 2 - 1  # squared hinge on +-1 targets
    return F.relu(1 - target * out).pow(2).mean()


def regularizer(cfg: TrainConfig, model) -> torch.Tensor | float:
    if cfg.regularization == "none" or cfg.reg_strength == 0:
        return 0.0
    ws = [m.weight for m in weight_layers(model)]
    if cfg.regularization == "l2":
        return cfg.reg_strength * sum(w.pow(2).sum() for w in ws)
    return cfg.reg_strength * sum((1 - w.pow(2)).sum() for w in ws)  # "bin": pull latent weights to +-1


def make_optimizer(cfg: TrainConfig, model):
    p, lr, wd = model.parameters(), cfg.lr, cfg.weight_decay
    if cfg.optimizer == "adam":
        return torch.optim.Adam(p, lr=lr, weight_decay=wd)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(p, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(p, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    return torch.optim.ASGD(p, lr=lr, weight_decay=wd)


def make_scheduler(cfg: TrainConfig, opt):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.lr_milestones, gamma=cfg.lr_decay)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


def autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def evaluate(model, x, y, cfg: TrainConfig, device) -> tuple[float, float]:
    """Loss and accuracy (%) over a whole split, in eval mode and float32 (what gets exported)."""
    model.eval()
    total_loss, correct = 0.0, 0
    for xb, yb in batches(x, y, cfg.eval_batch_size):
        xb, yb = xb.to(device), yb.to(device)
        out = model(xb).float()
        total_loss += loss_fn(cfg, out, yb).item() * len(xb)
        correct += (out.argmax(1) == yb).sum().item()
    return total_loss / len(x), 100.0 * correct / len(x)


class Run:
    """A run folder: results/ID/run-TIMESTAMP/ with params, metrics and checkpoints."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.metrics = directory / "metrics.csv"

    @classmethod
    def create(cls, cfg: TrainConfig, run_id: str) -> "Run":
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        d = Path(cfg.results) / run_id / f"run-{stamp}"
        d.mkdir(parents=True, exist_ok=False)
        write_text_atomic(d / "params.yml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        with open(d / "metrics.csv", "w", newline="") as f:
            csv.writer(f).writerow(METRICS)
        return cls(d)

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
        with open(self.metrics, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(METRICS)
            for r in rows:
                w.writerow([r[k] for k in METRICS])


def load_config_of(run_dir: Path) -> TrainConfig:
    p = run_dir / "params.yml"
    if not p.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no params.yml)")
    data = yaml.safe_load(p.read_text())
    return TrainConfig(**{k: coerce(FIELDS[k], v, str(p)) for k, v in data.items() if k in FIELDS})


def train(cfg: TrainConfig, run_id: str = "", resume: Path | None = None, log=print) -> Path:
    """Trains, writing everything into the run folder; returns it. Resumes from last.pt when given."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg)
    torch.manual_seed(cfg.seed)
    splits = make_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.train_limit, cfg.test_limit)
    model = build_model(cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net, rank, world = distributed(model, device)
    if rank:
        log = lambda *a: None  # noqa: E731  (rank 0 alone writes and reports)
    opt, start_epoch, best_acc = make_optimizer(cfg, model), 0, -1.0
    sched = make_scheduler(cfg, opt)
    gen = torch.Generator().manual_seed(cfg.seed)
    if resume is not None:
        run = Run(resume)
        ck = torch.load(resume / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        start_epoch, best_acc = ck["epoch"], ck["best_val_acc"]
        run.truncate_metrics(start_epoch)
        log(f"resuming {resume} at epoch {start_epoch + 1}/{cfg.epochs}")
    else:
        if cfg.init_from:
            log(init_from(model, cfg.init_from))
        run = None
        if rank == 0:
            run = Run.create(cfg, run_id or f"{cfg.model}_{'binary' if cfg.binarize else 'float'}")
            save_atomic({"model": model.state_dict(), "config": cfg.to_dict()}, run.dir / "init.pt")
            log(f"run folder: {run.dir}")

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    aug = cfg.dataset if cfg.augment else None
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            model.train()
            n_seen, loss_sum, correct = 0, 0.0, 0
            steps = math.ceil(len(splits.x_train) / cfg.batch_size)
            bar = tqdm(batches(splits.x_train, splits.y_train, cfg.batch_size, True, gen, aug), total=steps,
                       desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True,
                       disable=None)
            for xb, yb in bar:
                if world > 1:  # every rank draws the same batch and takes its share
                    xb, yb = xb[rank::world], yb[rank::world]
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                if cfg.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with autocast(cfg, device):
                    out = net(xb)
                    loss = loss_fn(cfg, out.float(), yb)
                opt.zero_grad(set_to_none=True)
                (loss + regularizer(cfg, model)).backward()
                opt.step()
                n_seen += len(xb)
                loss_sum += loss.item() * len(xb)
                correct += (out.argmax(1) == yb).sum().item()
                bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", acc=f"{100 * correct / n_seen:.2f}")
                if stop["signal"]:
                    raise Interrupted(stop["signal"])
            lr_used = opt.param_groups[0]["lr"]
            sched.step()
            if rank:
                continue
            val_loss, val_acc = evaluate(model, splits.x_val, splits.y_val, cfg, device)
            row = {"epoch": epoch + 1, "train_loss": f"{loss_sum / n_seen:.5f}",
                   "train_acc": f"{100 * correct / n_seen:.3f}", "val_loss": f"{val_loss:.5f}",
                   "val_acc": f"{val_acc:.3f}", "lr": f"{lr_used:.3e}",
                   "epoch_seconds": f"{time.time() - t0:.1f}"}
            run.append_metrics(row)  # before last.pt: a resume drops rows past the checkpoint
            if val_acc > best_acc:
                best_acc = val_acc
                save_atomic({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": epoch + 1,
                             "val_acc": val_acc}, run.dir / "best.pt")
            save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "generator": gen.get_state(),
                         "epoch": epoch + 1, "best_val_acc": best_acc, "config": cfg.to_dict()},
                        run.dir / "last.pt")
            log(f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']} acc {row['train_acc']}%  "
                f"val acc {row['val_acc']}% (best {best_acc:.2f}%)  lr {row['lr']}  {row['epoch_seconds']} s")
            if stop["signal"]:
                raise Interrupted(stop["signal"])
    except Interrupted as e:
        if rank:
            raise
        save_atomic({"model": model.state_dict(), "config": cfg.to_dict(), "epoch": epoch + 1,
                     "partial": True}, run.dir / "interrupted.pt")
        log(f"\n{e}: stopped in epoch {epoch + 1}; last completed epoch is in {run.dir / 'last.pt'}. "
            f"Continue with: python -m training --resume {run.dir}")
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if world > 1 or "LOCAL_RANK" in os.environ:
            import torch.distributed as dist
            dist.destroy_process_group()
    if rank:
        return None
    finish(run, cfg, splits, device, log)
    return run.dir


def distributed(model, device):
    """Under torchrun (LOCAL_RANK set): DistributedDataParallel over gloo (CPU) or nccl (GPU)."""
    if "LOCAL_RANK" not in os.environ:
        return model, 0, 1
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return ddp, dist.get_rank(), dist.get_world_size()


def norm_layers(model) -> list:
    from .models import ScalarNorm
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


def select_final(run: Run, cfg: TrainConfig, splits, device, log) -> dict:
    """final.pt: best.pt or last.pt after PreciseBN, whichever validates better (ties: last.pt)."""
    model = build_model(cfg).to(device)
    best = torch.load(run.dir / "best.pt", map_location=device, weights_only=False)
    if not (cfg.precise_bn and norm_layers(model)):
        final = dict(best, source="best.pt", precise_bn=False)
    else:
        last = torch.load(run.dir / "last.pt", map_location=device, weights_only=False)
        final = None
        for name, ck in (("best.pt", best), ("last.pt", last)):
            model.load_state_dict(ck["model"])
            precise_bn(model, splits.x_train, cfg.eval_batch_size, device)
            _, val_acc = evaluate(model, splits.x_val, splits.y_val, cfg, device)
            log(f"PreciseBN on {name} (epoch {ck['epoch']}): val acc {val_acc:.3f}%")
            if final is None or val_acc >= final["val_acc"]:
                final = {"model": {k: v.clone() for k, v in model.state_dict().items()}, "config": ck["config"],
                         "epoch": ck["epoch"], "val_acc": val_acc, "source": name, "precise_bn": True}
    save_atomic(final, run.dir / "final.pt")
    return final


def finish(run: Run, cfg: TrainConfig, splits, device, log) -> None:
    """After the last epoch (or with --finish RUN_DIR): final.pt, its test accuracy, the curves."""
    final = select_final(run, cfg, splits, device, log)
    model = build_model(cfg).to(device)
    model.load_state_dict(final["model"])
    _, test_acc = evaluate(model, splits.x_test, splits.y_test, cfg, device)
    how = "PreciseBN of " if final["precise_bn"] else ""
    write_text_atomic(run.dir / "test_accuracy.txt",
                      f"{test_acc:.2f}\n# final.pt = {how}{final['source']}: epoch {final['epoch']}, "
                      f"val {final['val_acc']:.3f}%, test images {len(splits.x_test)}\n")
    log(f"test accuracy of final.pt ({how}{final['source']}, epoch {final['epoch']}): {test_acc:.2f}% "
        f"on {len(splits.x_test)} images")
    from .plots import training_curves
    training_curves(run.metrics, run.dir / "curves.png", title=f"{cfg.model} {run.dir.parent.name}")


def finish_run(run_dir: Path, log=print) -> Path:
    """Redoes the end of training for a completed run folder (e.g. one trained before PreciseBN existed)."""
    cfg = load_config_of(run_dir)
    if not (run_dir / "best.pt").is_file() or not (run_dir / "last.pt").is_file():
        raise ConfigError(f"{run_dir} has no best.pt/last.pt: it never completed an epoch")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    splits = make_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.train_limit, cfg.test_limit)
    finish(Run(run_dir), cfg, splits, pick_device(cfg), log)
    return run_dir
