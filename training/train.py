"""The training loop: run folder, metrics, atomic checkpoints, resume, interrupt handling."""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .config import ConfigError, TrainConfig
from .data import batches, make_splits
from .folder_lock import FolderLock
from .models import build_model, weight_layers
from .run_folder import Run, check_writable, load_config_of, save_atomic, write_text_atomic  # noqa: F401


class Interrupted(Exception):
    pass


def init_from(model, path: str) -> str:
    """Copies the tensors whose name and shape match (float pretraining of a quantized net)."""
    from .checkpoint import read_checkpoint
    ck = read_checkpoint(Path(path))
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


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s distillation term: T^2 KL(softmax(teacher / T) || softmax(student / T)), batch mean."""
    log_p_s = F.log_softmax(student / temperature, dim=1)
    log_p_t = F.log_softmax(teacher / temperature, dim=1)
    return temperature ** 2 * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def load_teacher(cfg: TrainConfig, device: torch.device):
    """The distillation teacher, frozen, in eval mode; refused when it was trained on another dataset."""
    from .checkpoint import load
    teacher, tcfg, path = load(Path(cfg.distill_from))
    if tcfg.dataset != cfg.dataset:
        raise ConfigError(f"distill_from: {path} is a {tcfg.dataset} model; this run trains on {cfg.dataset}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(device).eval()


def regularizer(cfg: TrainConfig, model) -> torch.Tensor | float:
    if cfg.regularization == "none" or cfg.reg_strength == 0:
        return 0.0
    ws = [m.weight for m in weight_layers(model)]
    if cfg.regularization == "l2":
        return cfg.reg_strength * sum(w.pow(2).sum() for w in ws)
    return cfg.reg_strength * sum((1 - w.pow(2)).sum() for w in ws)  # "bin": pull latent weights to +-1


def make_optimizer(cfg: TrainConfig, model, device: torch.device | None = None):
    p, lr, wd = model.parameters(), cfg.lr, cfg.weight_decay
    if cfg.optimizer == "adam":  # fused on the GPU: one kernel for all parameters
        return torch.optim.Adam(p, lr=lr, weight_decay=wd, fused=bool(device and device.type == "cuda"))
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
    if cfg.amp not in ("bf16", "fp16"):  # "auto" is resolved before the loop (resolve_speed)
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


def train(cfg: TrainConfig, run_id: str = "", resume: Path | None = None, log=print) -> Path:
    """Trains, writing everything into the run folder; returns it. Resumes from last.pt when given."""
    t_start = time.time()
    s = _start(cfg, run_id, resume, log)
    # one process per run folder: a second resume of the same folder is refused, naming this process
    with FolderLock(s.run.dir, "run folder") if s.run is not None and s.rank == 0 else nullcontext():
        cfg = s.cfg  # with 'auto' precision and compile resolved
        stop = {"signal": None}

        def on_signal(signum, frame):
            stop["signal"] = signal.Signals(signum).name

        main = threading.current_thread() is threading.main_thread()  # a worker thread (Dask) cannot take signals
        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
        epoch, times = s.start_epoch, []
        current = epoch + 1  # the epoch in progress
        try:
            while epoch < cfg.epochs:
                t0, current = time.time(), epoch + 1
                sums = _train_epoch(s, epoch, stop)
                epoch = current
                if s.rank:
                    continue
                _end_epoch(s, epoch, sums, t0, log)
                times.append(time.time() - t0)
                if cfg.time_budget and s.start_epoch == 0 and epoch == BUDGET_EPOCHS:
                    _fit_budget(s, epoch, times, time.time() - t_start, log)
                if stop["signal"]:
                    raise Interrupted(stop["signal"])
        except Interrupted as e:
            if s.rank:
                raise
            save_atomic({"model": s.model.state_dict(), "config": cfg.to_dict(), "epoch": current,
                         "partial": True}, s.run.dir / "interrupted.pt")
            log(f"\n{e}: stopped in epoch {current}; last saved epoch is in {s.run.dir / 'last.pt'}. "
                f"Continue with: python -m training --resume {s.run.dir}")
            raise
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            if s.world > 1 or "LOCAL_RANK" in os.environ:
                import torch.distributed as dist
                dist.destroy_process_group()
        if s.rank:
            return None
        finish(s.run, cfg, s.splits, s.device, log)
        return s.run.dir


BUDGET_EPOCHS = 3  # epochs timed before a time budget sets the number of epochs (the first includes compiling)
FINISH_RESERVE = 1.2  # the end of a run (PreciseBN on two checkpoints, test) in epochs' time, plus 20 s


class _State:
    """What one training run carries from epoch to epoch."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _start(cfg: TrainConfig, run_id: str, resume: Path | None, log) -> _State:
    """A new run folder or a resumed one; data on the training device; model, optimizer, schedule."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if resume is None:
        check_writable(Path(cfg.results))
    device = pick_device(cfg)
    teacher = load_teacher(cfg, device) if cfg.distill_from else None  # an input: checked before the data loads
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # exact for +-1 operands
    torch.manual_seed(cfg.seed)
    splits = make_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.train_limit, cfg.test_limit)
    splits = type(splits)(*(t.to(device) for t in vars(splits).values()))  # resident: one copy, no per-step H2D
    cfg = resolve_speed(cfg, device, len(splits.x_train))
    if resume is None:
        log(f"precision {cfg.amp}, compile {cfg.compile}, {torch.get_num_threads()} CPU threads, device {device}")
    model = build_model(cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net, rank, world = distributed(model, device)
    if rank:
        log = lambda *a: None  # noqa: E731  (rank 0 alone writes and reports)
    opt, start_epoch, best_acc = make_optimizer(cfg, model, device), 0, -1.0
    sched = make_scheduler(cfg, opt)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    if resume is not None:
        run = Run(resume)
        ck = torch.load(resume / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        start_epoch, best_acc = ck["epoch"], ck["best_val_acc"]
        if (resume / "best.pt").is_file():  # with checkpoint_every > 1, best.pt may be newer than last.pt
            best_acc = max(best_acc, torch.load(resume / "best.pt", map_location="cpu", weights_only=False)["val_acc"])
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
    if cfg.compile == "on":  # resolved above: 'auto' is gone
        net = torch.compile(net)  # the training forward only; evaluation runs the module as it is
    return _State(cfg=cfg, device=device, splits=splits, model=model, net=net, rank=rank, world=world, opt=opt,
                  sched=sched, gen=gen, run=run, start_epoch=start_epoch, best_acc=best_acc, log=log,
                  teacher=teacher)


def cpu_has_native_bf16() -> bool:
    """bf16 pays on a CPU only where it computes it natively (AVX512-BF16 or AMX); elsewhere it was 7-13x slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


COMPILE_MIN_STEPS = 2000  # compiling costs ~1 min on the CPU; shorter runs would not earn it back


def resolve_speed(cfg: TrainConfig, device: torch.device, n_train: int) -> TrainConfig:
    """'auto' precision and compilation made concrete for this machine and run (recorded in params.yml).
    Measured on one AMD EPYC core (python -m training.bench_study): bf16+compile 2.3x our fp32 eager for LeNet5
    and 2.0x for VGGNet7; VGGNet7 fp32+compile 0.99x."""
    amp, comp = cfg.amp, cfg.compile
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "none"
    if comp == "auto":
        steps = math.ceil(n_train / cfg.batch_size) * cfg.epochs
        comp = "on" if device.type == "cuda" or (
            steps >= COMPILE_MIN_STEPS and not (cfg.model == "vggnet7" and amp == "none")) else "off"
    return dataclasses.replace(cfg, amp=amp, compile=comp)


def _train_epoch(s: _State, epoch: int, stop: dict) -> tuple:
    """One pass over the training split. Loss and accuracy sums stay on the device: no host sync per step."""
    cfg, model, device = s.cfg, s.model, s.device
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n_seen = 0
    steps = math.ceil(len(s.splits.x_train) / cfg.batch_size)
    aug = cfg.dataset if cfg.augment else None
    bar = tqdm(batches(s.splits.x_train, s.splits.y_train, cfg.batch_size, True, s.gen, aug), total=steps,
               desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True, disable=None)
    for step, (xb, yb) in enumerate(bar):
        if s.world > 1:  # every rank draws the same batch and takes its share
            xb, yb = xb[s.rank::s.world], yb[s.rank::s.world]
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(cfg, device):
            out = s.net(xb)
            loss = loss_fn(cfg, out.float(), yb)
            if s.teacher is not None:
                with torch.no_grad():
                    soft = s.teacher(xb).float()
                w = cfg.distill_weight
                loss = (1 - w) * loss + w * distill_loss(out.float(), soft, cfg.distill_temperature)
        s.opt.zero_grad(set_to_none=True)
        (loss + regularizer(cfg, model)).backward()
        s.opt.step()
        n_seen += len(xb)
        loss_sum += loss.detach() * len(xb)
        correct += (out.argmax(1) == yb).sum()
        if step % 20 == 19 and not bar.disable:
            bar.set_postfix(loss=f"{loss_sum.item() / n_seen:.4f}", acc=f"{100 * correct.item() / n_seen:.2f}")
        if stop["signal"]:
            raise Interrupted(stop["signal"])
    lr_used = s.opt.param_groups[0]["lr"]
    s.sched.step()
    return loss_sum.item() / n_seen, 100.0 * correct.item() / n_seen, lr_used


def _end_epoch(s: _State, epoch: int, sums: tuple, t0: float, log) -> None:
    """Validation, the metrics row, best.pt when validation improves, last.pt every checkpoint_every epochs."""
    cfg, run = s.cfg, s.run
    train_loss, train_acc, lr_used = sums
    val_loss, val_acc = evaluate(s.model, s.splits.x_val, s.splits.y_val, cfg, s.device)
    seconds = time.time() - t0  # training and validation, as the GPU figures are quoted
    row = {"epoch": epoch, "train_loss": f"{train_loss:.5f}", "train_acc": f"{train_acc:.3f}",
           "val_loss": f"{val_loss:.5f}", "val_acc": f"{val_acc:.3f}", "lr": f"{lr_used:.3e}",
           "epoch_seconds": f"{seconds:.1f}"}
    run.append_metrics(row)  # before last.pt: a resume drops rows past the checkpoint
    if val_acc > s.best_acc:
        s.best_acc = val_acc
        save_atomic({"model": s.model.state_dict(), "config": cfg.to_dict(), "epoch": epoch,
                     "val_acc": val_acc}, run.dir / "best.pt")
    if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
        _save_last(s, epoch)
    log(f"epoch {epoch}/{cfg.epochs}  train loss {row['train_loss']} acc {row['train_acc']}%  "
        f"val acc {row['val_acc']}% (best {s.best_acc:.2f}%)  lr {row['lr']}  {seconds:.1f} s")


def _save_last(s: _State, epoch: int) -> None:
    """last.pt: everything an exact resume needs."""
    save_atomic({"model": s.model.state_dict(), "optimizer": s.opt.state_dict(),
                 "scheduler": s.sched.state_dict(), "generator": s.gen.get_state(),
                 "epoch": epoch, "best_val_acc": s.best_acc, "config": s.cfg.to_dict()}, s.run.dir / "last.pt")


def budget_epochs(done: int, epoch_seconds: float, elapsed: float, budget: float, cap: int) -> int:
    """How many epochs in all fit the time budget, the end of the run (PreciseBN, test) included."""
    left = budget - elapsed - 20.0 - FINISH_RESERVE * epoch_seconds
    return max(done, min(cap, done + int(left // epoch_seconds)))


def _fit_budget(s: _State, done: int, times: list, elapsed: float, log) -> None:
    """time_budget: after BUDGET_EPOCHS timed epochs, sets epochs to what fits and stretches the schedule
    to it (cosine: T_max; the lr moved by less than 0.01% so far). params.yml and checkpoints record it."""
    cfg = s.cfg
    per_epoch = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
    n = budget_epochs(done, per_epoch, elapsed, cfg.time_budget, cfg.epochs)
    log(f"time budget {cfg.time_budget:.0f} s: {per_epoch:.2f} s per epoch, {elapsed:.0f} s used -> {n} epochs "
        f"(asked {cfg.epochs})")
    if n == cfg.epochs:
        return
    cfg.epochs = n
    if isinstance(s.sched, torch.optim.lr_scheduler.CosineAnnealingLR):
        s.sched.T_max = n
    s.run.write_params(cfg)
    _save_last(s, done)


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
