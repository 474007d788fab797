"""The training loop: run folder, metrics, atomic checkpoints, resume, interrupt handling. What it
minimises is in losses.py, how fast it runs in speed.py, the end of a run in finish.py."""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from common.faults import fault_point
from common.files import require_destination
from common.folder_lock import FolderLock

from .checkpoint import init_from, init_latent_magnitudes, read_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import Splits, batches, make_splits
from .finish import finish
from .losses import (
    TeacherCache,
    distill_loss,
    evaluate,
    load_teacher,
    loss_fn,
    make_optimizer,
    make_scheduler,
    regularizer,
)
from .models import build_model
from .run_folder import Run
from .speed import BUDGET_EPOCHS, CoreShare, autocast, distributed, pick_device, replan, resolve_speed


class Interrupted(Exception):
    pass


def train(cfg: TrainConfig, run_id: str = "", resume: Path | None = None, log=print) -> Path:
    """Trains, writing everything into the run folder; returns it. Resumes from last.pt when given."""
    t_start = time.time()
    s = _start(cfg, run_id, resume, log)
    # one process per run folder: a second resume of the same folder is refused, naming this process
    ours = s.run is not None and s.rank == 0
    with FolderLock(s.run.dir, "run folder", markers=("params.yml",)) if ours else nullcontext():
        cfg = s.cfg  # with 'auto' precision and compile resolved
        stop = {"signal": None}

        def on_signal(signum, frame):
            stop["signal"] = signal.Signals(signum).name

        main = threading.current_thread() is threading.main_thread()  # a worker thread (Dask) cannot take signals
        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
        epoch, times, said = s.start_epoch, [], {}
        asked = cfg.epochs  # a time budget's ceiling (a resumed run's: the plan its last.pt recorded)
        if s.start_epoch and s.rank == 0:  # a resumed run's budget counts the epochs it already trained
            t_start -= sum(float(r["epoch_seconds"]) for r in s.run.read_metrics())
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
                if cfg.time_budget and epoch >= BUDGET_EPOCHS and len(times) >= 2:  # speed without compiling
                    if replan(cfg, s.sched, epoch, times, time.time() - t_start, asked, log, said):
                        s.run.write_params(cfg)  # params.yml and checkpoints record the new epoch count
                        _save_last(s, epoch)
                if stop["signal"]:
                    raise Interrupted(stop["signal"])
        except Interrupted as e:
            if s.rank:
                raise
            save_checkpoint({"model": s.model.state_dict(), "config": cfg.to_dict(), "epoch": current,
                         "partial": True}, s.run.dir / "interrupted.pt")
            if (s.run.dir / "last.pt").is_file():
                log(f"\n{e}: stopped in epoch {current}; last saved epoch is in {s.run.dir / 'last.pt'}. "
                    f"Continue with: python -m training --resume {s.run.dir}")
            else:
                log(f"\n{e}: stopped in epoch {current}, before any epoch was saved: there is nothing to resume. "
                    f"Start again with the same command ({s.run.dir} can be deleted)")
            raise
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            if s.world > 1 or "LOCAL_RANK" in os.environ:
                import torch.distributed as dist
                dist.destroy_process_group()
        if s.rank:
            return None
        try:
            fault_point("train:finish")
            finish(s.run, cfg, s.splits, s.device, log)
        except KeyboardInterrupt:
            log(f"\ninterrupted while finishing (final.pt, test accuracy, curves); every epoch is saved. "
                f"Finish it with: python -m training --resume {s.run.dir}")
            raise Interrupted("SIGINT") from None
        return s.run.dir


@dataclass
class _State:
    """What one training run carries from epoch to epoch."""
    cfg: TrainConfig
    device: torch.device
    splits: Splits
    model: torch.nn.Module
    net: torch.nn.Module           # what the forward pass runs: the model, DDP-wrapped and/or compiled
    rank: int
    world: int
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    run: Run | None               # None on ranks other than 0
    start_epoch: int
    best_acc: float
    log: object
    teacher: torch.nn.Module | None
    teacher_cache: TeacherCache | None  # the teacher's outputs per image and augmentation variant, where it pays
    cores: CoreShare | None       # threads 0 on the CPU: the thread count follows the cores other work leaves
    swa: dict | None = None       # {"n": epochs averaged, "params": running means} with swa_start


def _start(cfg: TrainConfig, run_id: str, resume: Path | None, log) -> _State:
    """A new run folder or a resumed one; data on the training device; model, optimizer, schedule."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if resume is None:
        require_destination(cfg.results, "results folder", "--results")  # before any work, writing nothing
    device = pick_device(cfg)
    teacher = load_teacher(cfg, device) if cfg.distill_from else None  # an input: checked before the data loads
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # exact for +-1 operands
    torch.manual_seed(cfg.seed)
    splits = make_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, cfg.train_limit, cfg.test_limit)
    splits = type(splits)(*(t.to(device) for t in vars(splits).values()))  # resident: one copy, no per-step H2D
    cfg = resolve_speed(cfg, device, len(splits.x_train))
    teacher_note = f", teacher compile {cfg.teacher_compile}" if teacher is not None else ""
    if resume is None:
        log(f"precision {cfg.amp}, compile {cfg.compile}{teacher_note}, {torch.get_num_threads()} CPU threads, "
            f"device {device}")
    elif teacher_note:  # a run from before teacher_compile existed resolves it now: say what this part runs
        log(f"teacher compile {cfg.teacher_compile}")
    model = build_model(cfg).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net, rank, world = distributed(model, device)
    if rank:
        log = lambda *a: None  # noqa: E731  (rank 0 alone writes and reports)
    opt, start_epoch, best_acc, swa = make_optimizer(cfg, model, device), 0, -1.0, None
    sched = make_scheduler(cfg, opt)
    gen = torch.Generator(device).manual_seed(cfg.seed)
    if resume is not None:
        run = Run(resume)
        ck = read_checkpoint(resume / "last.pt", device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        start_epoch, best_acc, swa = ck["epoch"], ck["best_val_acc"], ck.get("swa")
        if (resume / "best.pt").is_file():  # with checkpoint_every > 1, best.pt may be newer than last.pt
            best_acc = max(best_acc, read_checkpoint(resume / "best.pt")["val_acc"])
        run.truncate_metrics(start_epoch)
        log(f"resuming {resume} at epoch {start_epoch + 1}/{cfg.epochs}")
    else:
        if cfg.init_from:
            log(init_from(model, cfg.init_from))
        if cfg.init_latent_from:
            log(init_latent_magnitudes(model, cfg.init_latent_from))
        run = None
        if rank == 0:
            run = Run.create(cfg, run_id or f"{cfg.model}_{'binary' if cfg.binarize else 'float'}")
            save_checkpoint({"model": model.state_dict(), "config": cfg.to_dict()}, run.dir / "init.pt")
            log(f"run folder: {run.dir}")
    if cfg.compile == "on":  # resolved above: 'auto' is gone
        net = torch.compile(net)  # the training forward only; evaluation runs the module as it is
    if teacher is not None and cfg.teacher_compile == "on":  # its forward in every step (or the cache)
        teacher = torch.compile(teacher)
    cores = CoreShare(log) if device.type == "cpu" and not cfg.threads and world == 1 else None
    cache = None
    if teacher is not None and TeacherCache.pays(cfg):
        cache = TeacherCache(teacher, splits.x_train, cfg.dataset if cfg.augment else None, cfg, device, log,
                             cores.update if cores else None)
    return _State(cfg=cfg, device=device, splits=splits, model=model, net=net, rank=rank, world=world, opt=opt,
                  sched=sched, gen=gen, run=run, start_epoch=start_epoch, best_acc=best_acc, log=log,
                  teacher=teacher, teacher_cache=cache, cores=cores, swa=swa)


def _train_epoch(s: _State, epoch: int, stop: dict) -> tuple:
    """One pass over the training split. Loss and accuracy sums stay on the device: no host sync per step."""
    cfg, model, device = s.cfg, s.model, s.device
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    n_seen = 0
    steps = math.ceil(len(s.splits.x_train) / cfg.batch_size)
    aug = cfg.dataset if cfg.augment else None
    bar = tqdm(batches(s.splits.x_train, s.splits.y_train, cfg.batch_size, True, s.gen, aug, with_index=True),
               total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True, disable=None)
    for step, (xb, yb, index, variant) in enumerate(bar):
        if s.world > 1:  # every rank draws the same batch and takes its share
            xb, yb, index, variant = (t[s.rank::s.world] for t in (xb, yb, index, variant))
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(cfg, device):
            out = s.net(xb)
            loss = loss_fn(cfg, out.float(), yb)
            if s.teacher is not None:
                if s.teacher_cache is not None:
                    soft = s.teacher_cache(index, variant)
                else:
                    with torch.no_grad():
                        soft = s.teacher(xb).float()
                w = cfg.distill_weight
                loss = (1 - w) * loss + w * distill_loss(out.float(), soft, cfg.distill_temperature)
        s.opt.zero_grad(set_to_none=True)
        (loss + regularizer(cfg, model)).backward()
        s.opt.step()
        n_seen += len(xb)
        fault_point(f"train:epoch{epoch + 1}")
        loss_sum += loss.detach() * len(xb)
        correct += (out.argmax(1) == yb).sum()
        if s.cores is not None and step % 20 == 19:
            s.cores.update()
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
    has_val = s.splits.has_val
    val_loss, val_acc = evaluate(s.model, s.splits.x_val, s.splits.y_val, cfg, s.device) if has_val else (0, 0)
    seconds = time.time() - t0  # training and validation, as the GPU figures are quoted
    row = {"epoch": epoch, "train_loss": f"{train_loss:.5f}", "train_acc": f"{train_acc:.3f}",
           "val_loss": f"{val_loss:.5f}" if has_val else "", "val_acc": f"{val_acc:.3f}" if has_val else "",
           "lr": f"{lr_used:.3e}", "epoch_seconds": f"{seconds:.1f}"}
    run.append_metrics(row)  # before last.pt: a resume drops rows past the checkpoint
    if cfg.swa_start and epoch >= cfg.swa_start:
        s.swa = swa_update(s.swa, s.model)
    if has_val and val_acc > s.best_acc:
        s.best_acc = val_acc
        save_checkpoint({"model": s.model.state_dict(), "config": cfg.to_dict(), "epoch": epoch,
                     "val_acc": val_acc}, run.dir / "best.pt")
    if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
        _save_last(s, epoch)
    val = f"val acc {row['val_acc']}% (best {s.best_acc:.2f}%)" if has_val else "no validation split"
    log(f"epoch {epoch}/{cfg.epochs}  train loss {row['train_loss']} acc {row['train_acc']}%  "
        f"{val}  lr {row['lr']}  {seconds:.1f} s")


def _save_last(s: _State, epoch: int) -> None:
    """last.pt: everything an exact resume needs."""
    save_checkpoint({"model": s.model.state_dict(), "optimizer": s.opt.state_dict(),
                 "scheduler": s.sched.state_dict(), "generator": s.gen.get_state(),
                 "epoch": epoch, "best_val_acc": s.best_acc, "config": s.cfg.to_dict(), "swa": s.swa},
                s.run.dir / "last.pt")


@torch.no_grad()
def swa_update(swa: dict | None, model) -> dict:
    """The running mean of the trained parameters over the epochs' ends (float64: exact over any run length)."""
    params = {n: p.detach().double() for n, p in model.named_parameters()}
    if swa is None:
        return {"n": 1, "params": {n: p.clone() for n, p in params.items()}}
    k = swa["n"] + 1
    for n, p in params.items():
        swa["params"][n] += (p - swa["params"][n]) / k
    return {"n": k, "params": swa["params"]}
