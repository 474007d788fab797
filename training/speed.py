"""The speed policy: device, precision (bf16 where the machine computes it natively), compilation, DDP
under torchrun, and how many epochs fit a time budget. Decided at run time, recorded in params.yml."""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from .config import ConfigError, TrainConfig


def pick_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but torch sees no GPU; use --device cpu or auto")
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


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
    Measured on one AMD EPYC core (python -m tools.bench_study): bf16+compile 2.3x our fp32 eager for LeNet5
    and 2.0x for VGGNet7; VGGNet7 fp32+compile 0.99x. A distillation teacher's forward alone, fp32 on machine B
    (full-width VGGNet7, batch 100, 2 threads; tools/bench_train.py): 69.3 images/s eager, 139.7 compiled, the
    same logits."""
    amp, comp, teacher = cfg.amp, cfg.compile, cfg.teacher_compile
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "none"
    long_run = device.type == "cuda" or math.ceil(n_train / cfg.batch_size) * cfg.epochs >= COMPILE_MIN_STEPS
    if comp == "auto":
        comp = "on" if long_run and not (device.type == "cpu" and cfg.model == "vggnet7" and amp == "none") else "off"
    if teacher == "auto":  # inference only: compiled pays even where the training step's backward does not
        teacher = "on" if comp == "on" or long_run else "off"
    return dataclasses.replace(cfg, amp=amp, compile=comp, teacher_compile=teacher)


class CoreShare:
    """threads 0 (auto) on the CPU: as many torch threads as the cores that other work leaves free, decided again
    every few seconds from /proc/stat (this process's own CPU time taken out). An OpenMP team with a thread on a
    core another process holds waits at every barrier for that core's time slice: measured on 2 cores beside a
    1-thread training, LeNet5's first epoch took 152.6 s with 2 threads (10 s alone), and the second over 4 min."""
    INTERVAL = 5.0  # seconds between decisions

    def __init__(self, log, first_look: float = 0.5):
        self.cores = sorted(os.sched_getaffinity(0))
        self.threads, self.log = torch.get_num_threads(), log
        self._mark = self._sample()
        if self._mark is not None and first_look:  # decided before the first work, from a short look
            time.sleep(first_look)
            self.update(force=True)

    def _sample(self) -> tuple:
        """(wall, busy CPU seconds of our cores, this process's CPU seconds)"""
        busy, ours = 0.0, os.times()
        try:
            for line in Path("/proc/stat").read_text().splitlines()[1:]:
                name, *ticks = line.split()
                if not name.startswith("cpu") or int(name[3:]) not in self.cores:
                    continue
                t = [int(x) for x in ticks]
                busy += sum(t[:8]) - t[3] - t[4]  # all but idle and iowait
        except (OSError, ValueError):
            return None
        return time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), ours.user + ours.system

    def update(self, force: bool = False) -> None:
        if self._mark is None or (not force and time.monotonic() - self._mark[0] < self.INTERVAL):
            return
        now = self._sample()
        if now is None or now[0] <= self._mark[0]:
            return
        others = max(0.0, (now[1] - self._mark[1]) - (now[2] - self._mark[2])) / (now[0] - self._mark[0])
        self._mark = now
        want = max(1, min(len(self.cores), len(self.cores) - round(others)))
        if want != self.threads:
            self.log(f"other work is using {others:.1f} of the {len(self.cores)} cores: {want} training "
                     f"thread{'s' if want > 1 else ''} (was {self.threads})")
            torch.set_num_threads(want)
            self.threads = want


def autocast(cfg: TrainConfig, device: torch.device):
    if cfg.amp not in ("bf16", "fp16"):  # "auto" is resolved before the loop (resolve_speed)
        return nullcontext()
    dtype = torch.bfloat16 if cfg.amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


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


BUDGET_EPOCHS = 3  # epochs timed before a time budget first sets the number of epochs (the first includes compiling)
SPEED_WINDOW = 5  # the budget re-plans every epoch from the median of the latest epochs (the first left out)
FINISH_RESERVE = 1.2  # the end of a run (PreciseBN on two checkpoints, test) in epochs' time, plus 20 s


def budget_epochs(done: int, epoch_seconds: float, elapsed: float, budget: float, cap: int) -> int:
    """How many epochs in all fit the time budget, the end of the run (PreciseBN, test) included."""
    left = budget - elapsed - 20.0 - FINISH_RESERVE * epoch_seconds
    return max(done, min(cap, done + int(left // epoch_seconds)))


def replan(cfg: TrainConfig, sched, done: int, times: list, elapsed: float, asked: int, log, said: dict) -> bool:
    """time_budget: from BUDGET_EPOCHS timed epochs on, sets cfg.epochs to what fits the time left at the speed of
    the latest epochs (at most the epochs asked), and the cosine anneal to end with it: a run slowed by other work
    at its start gets back the epochs it can afford once the work ends. True when the epoch count changed.
    said: the plan last logged ({"epochs": n}); a plan is logged first, then when it is 5% away from the last
    logged one (a slow drift is said once it adds up)."""
    per_epoch = statistics.median(times[1:][-SPEED_WINDOW:] if len(times) > 1 else times)
    n = budget_epochs(done, per_epoch, elapsed, cfg.time_budget, asked)
    if n == cfg.epochs:
        return False
    last = said.get("epochs")
    if last is None or abs(n - last) >= max(2, last // 20):
        cut = (f"; {asked - n} fewer than asked: a shorter anneal, expect lower accuracy"
               f"{' (' + cfg.budget_note + ')' if cfg.budget_note else ''}" if n < asked else "")
        log(f"time budget {cfg.time_budget:.0f} s: {per_epoch:.2f} s per epoch lately, {elapsed:.0f} s used -> "
            f"{n} epochs (asked {asked}){cut}")
        said["epochs"] = n
    cfg.epochs = n
    if hasattr(sched, "replan"):
        sched.replan(n - done)
    return True
