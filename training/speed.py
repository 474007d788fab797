"""The speed policy: device, precision (bf16 where the machine computes it natively), compilation, DDP
under torchrun, and how many epochs fit a time budget. Decided at run time, recorded in params.yml."""
from __future__ import annotations

import dataclasses
import math
import os
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
    and 2.0x for VGGNet7; VGGNet7 fp32+compile 0.99x."""
    amp, comp = cfg.amp, cfg.compile
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "none"
    if comp == "auto":
        steps = math.ceil(n_train / cfg.batch_size) * cfg.epochs
        comp = "on" if device.type == "cuda" or (
            steps >= COMPILE_MIN_STEPS and not (cfg.model == "vggnet7" and amp == "none")) else "off"
    return dataclasses.replace(cfg, amp=amp, compile=comp)


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


BUDGET_EPOCHS = 3  # epochs timed before a time budget sets the number of epochs (the first includes compiling)
FINISH_RESERVE = 1.2  # the end of a run (PreciseBN on two checkpoints, test) in epochs' time, plus 20 s


def budget_epochs(done: int, epoch_seconds: float, elapsed: float, budget: float, cap: int) -> int:
    """How many epochs in all fit the time budget, the end of the run (PreciseBN, test) included."""
    left = budget - elapsed - 20.0 - FINISH_RESERVE * epoch_seconds
    return max(done, min(cap, done + int(left // epoch_seconds)))


def fit_budget(cfg: TrainConfig, sched, done: int, times: list, elapsed: float, log) -> bool:
    """time_budget: after BUDGET_EPOCHS timed epochs, sets cfg.epochs to what fits and stretches the schedule
    to it (cosine: T_max; the lr moved by less than 0.01% so far). True when the epoch count changed."""
    per_epoch = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
    n = budget_epochs(done, per_epoch, elapsed, cfg.time_budget, cfg.epochs)
    log(f"time budget {cfg.time_budget:.0f} s: {per_epoch:.2f} s per epoch, {elapsed:.0f} s used -> {n} epochs "
        f"(asked {cfg.epochs})")
    if n == cfg.epochs:
        return False
    cfg.epochs = n
    if isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR):
        sched.T_max = n
    return True
