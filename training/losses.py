"""What training minimises, with what, and how it is measured: the task loss (squared hinge or
cross-entropy), the distillation term and its teacher, the weight regulariser, the optimizer and
learning-rate schedule, and evaluation over a split."""
from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoint import load, preset_path
from .config import ConfigError, TrainConfig
from .data import augment, augment_variants, batches
from .models import weight_layers
from .speed import autocast


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
    teacher, tcfg, path = load(preset_path(cfg.distill_from))
    if tcfg.dataset != cfg.dataset:
        raise ConfigError(f"distill_from: {path} is a {tcfg.dataset} model; this run trains on {cfg.dataset}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(device).eval()


class TeacherCache:
    """The teacher's outputs for every training image under every variant the augmentation can draw (MNIST: 25
    shifts), computed once before the first epoch: one teacher pass per variant instead of one per epoch, used
    where the run has more epochs than there are variants. Computed as the steps would (same autocast)."""

    def __init__(self, teacher, x: torch.Tensor, aug_name: str | None, cfg: TrainConfig, device, log, tick=None):
        n_var, t0, out = augment_variants(aug_name) if aug_name else 1, time.time(), None
        with torch.no_grad(), autocast(cfg, device):
            for v in tqdm(range(n_var), desc="teacher outputs", leave=False, disable=None):
                for i in range(0, len(x), cfg.batch_size):  # the steps' batch: 2x faster than 1000 (1 CPU thread)
                    xb = x[i:i + cfg.batch_size]
                    xb = augment(xb, aug_name, None, torch.full((len(xb),), v, device=x.device)) if aug_name \
                        else xb.float()
                    o = teacher(xb).float()
                    if tick is not None:
                        tick()  # the thread count follows the free cores here too (CoreShare.update)
                    if out is None:
                        out = torch.empty(len(x), n_var, o.shape[1], device=x.device)
                    out[i:i + len(xb), v] = o
        self.out = out
        log(f"teacher outputs for {n_var} augmentation variants of {len(x):,} images, computed once: "
            f"{time.time() - t0:.0f} s")

    def __call__(self, index: torch.Tensor, variant: torch.Tensor) -> torch.Tensor:
        return self.out[index, variant]

    @staticmethod
    def pays(cfg: TrainConfig) -> bool:
        return cfg.epochs > (augment_variants(cfg.dataset) if cfg.augment else 1)


def regularizer(cfg: TrainConfig, model) -> torch.Tensor | float:
    if cfg.regularization == "none" or cfg.reg_strength == 0:
        return 0.0
    ws = [m.weight for m in weight_layers(model)]
    if cfg.regularization == "l2":
        return cfg.reg_strength * sum(w.pow(2).sum() for w in ws)
    return cfg.reg_strength * sum((1 - w.pow(2)).sum() for w in ws)  # "bin": pull latent weights to +-1


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


def make_optimizer(cfg: TrainConfig, model, device: torch.device | None = None):
    p, lr, wd = model.parameters(), cfg.lr, cfg.weight_decay
    if cfg.optimizer == "adam":  # fused on the GPU: one kernel for all parameters
        return torch.optim.Adam(p, lr=lr, weight_decay=wd, fused=bool(device and device.type == "cuda"))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(p, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(p, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    return torch.optim.ASGD(p, lr=lr, weight_decay=wd)


class ReplannedCosine(torch.optim.lr_scheduler.LRScheduler):
    """Cosine annealing over the run's progress (0 to 1) instead of a fixed epoch count, for time budgets:
    replan(remaining) sets how many epochs the rest of the anneal takes, the learning rate staying continuous and
    never rising. Never replanned, it is CosineAnnealingLR's schedule (lr of epoch k: base * (1 + cos(pi k/N)) / 2)."""

    def __init__(self, opt, epochs: int):
        self.progress, self.remaining = 0.0, epochs  # remaining: epochs of the plan not yet finished
        super().__init__(opt)

    def replan(self, remaining: int) -> None:
        self.remaining = max(1, remaining)

    def get_lr(self):
        return [base * 0.5 * (1.0 + math.cos(math.pi * self.progress)) for base in self.base_lrs]

    def step(self):  # once per finished epoch (the constructor's call only sets the first lr)
        if self.last_epoch >= 0:
            self.progress += (1.0 - self.progress) / max(self.remaining, 1)
            self.remaining = max(self.remaining - 1, 0)
        super().step()


def make_scheduler(cfg: TrainConfig, opt):
    if cfg.lr_schedule == "cosine":
        if cfg.time_budget:
            return ReplannedCosine(opt, cfg.epochs)
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.lr_milestones, gamma=cfg.lr_decay)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
