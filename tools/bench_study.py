"""Training speed side by side with the study's own code, on this CPU, measured the same way.

The study's repository (RWTH-IDS/efficient-binary-neural-networks) is not part of this project: give a
checkout with --study-repo. Both sides run on the same thread count and the same prepared batches
(data preparation excluded), with the study's optimizer and loss: LeNet5 SGD lr 0.01 momentum 0.99
with the squared hinge loss, VGGNet7 Adam lr 1e-3 with cross-entropy. The study's side is its own
train() function of main.py over a list of batches (its latent-weight copy and clamp, its per-step
.item() and progress line included; its progress bar a no-op where that package is absent); ours is the
training step of training/train.py in each mode.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

import torch
import yaml

from common import compat  # noqa: F401
from common.errors import UserError, cli
from tools.bench_train import MODES as BENCH_MODES
from tools.bench_train import native_modes, prepared_batches, time_steps
from training.config import TrainConfig
from training.publish import this_machine
from training.speed import cpu_has_native_bf16

STUDY = {  # model -> (study preset, dataset, our optimizer/loss settings that match it)
    "lenet5": ("config/binary_mnist.yml", "mnist", dict(optimizer="sgd", lr=0.01, momentum=0.99, loss="sqr_hinge")),
    "vggnet7": ("config/binary_cifar10.yml", "cifar10", dict(optimizer="adam", lr=1e-3, loss="cross_entropy")),
}


def _installed(name: str) -> bool:
    return name in sys.modules or importlib.util.find_spec(name) is not None


class _QuietBar:  # stands in for the 'progress' package where it is not installed
    def __init__(self, *a, **kw):
        pass

    def next(self):
        pass


def load_study(repo: Path):
    """The study's main.py as a module; torchvision (its data loading only) and progress stubbed if absent."""
    if not (repo / "main.py").is_file() or not (repo / "models" / "lenet.py").is_file():
        raise UserError(f"--study-repo: {repo} is not a checkout of RWTH-IDS/efficient-binary-neural-networks "
                        "(main.py and models/lenet.py missing); clone it and pass its folder")
    if not _installed("torchvision"):
        for name in ("torchvision", "torchvision.transforms", "torchvision.datasets"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
        sys.modules["torchvision"].datasets = sys.modules["torchvision.datasets"]
    if not _installed("progress"):
        sys.modules["progress"] = types.ModuleType("progress")
        sys.modules["progress.bar"] = types.ModuleType("progress.bar")
        sys.modules["progress.bar"].Bar = _QuietBar
    sys.path.insert(0, str(repo))
    spec = importlib.util.spec_from_file_location("study_main", repo / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study_images_per_s(study, repo: Path, model_name: str, data: list, warmup: int = 2) -> float:
    preset, dataset, _ = STUDY[model_name]
    args = argparse.Namespace(**yaml.safe_load((repo / preset).read_text()))
    args.cuda, args.n_gpus = False, 0
    torch.manual_seed(0)
    net = (study.LeNet5_binary if model_name == "lenet5" else study.VGGNet7_binary)(args)
    device = torch.device("cpu")
    if args.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=args.lr, betas=(0.9, 0.999))
    else:
        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum)
    criterion = study.SquareHingeLoss(device=device) if args.loss == "SquareHingeLoss" else torch.nn.CrossEntropyLoss()
    scale, shift = (1 / 255, 0.0) if dataset == "mnist" else (2 / 255, -1.0)  # its ToTensor (+ Normalize)
    loader = [(x * scale + shift, y) for x, y in data]
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # its per-step progress line
        study.train(net, loader[:warmup], opt, device, criterion, args, 0)
        t0 = time.perf_counter()
        study.train(net, loader[warmup:], opt, device, criterion, args, 1)
        seconds = time.perf_counter() - t0
    return sum(len(y) for _, y in loader[warmup:]) / seconds


def our_images_per_s(model_name: str, data: list, mode: dict) -> float:
    _, dataset, opt_kw = STUDY[model_name]
    cfg = TrainConfig(model=model_name, dataset=dataset, batch_size=len(data[0][1]), **mode, **opt_kw)
    return time_steps(cfg, data)


MODES = {k: v for k, v in BENCH_MODES.items() if not v["channels_last"]}  # make bench's, the study's layout


def modes(names: str) -> dict:
    """Our modes to time, by name; bf16 ones only where the CPU computes bf16 natively."""
    unknown = [n for n in names.split(",") if n not in MODES]
    if unknown:
        raise UserError(f"--modes: unknown mode {unknown[0]!r}; known: {', '.join(MODES)}")
    return native_modes({n: MODES[n] for n in names.split(",")})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_study", description=__doc__.split("\n\n")[0])
    p.add_argument("--study-repo", type=Path, required=True,
                   help="a checkout of github.com/RWTH-IDS/efficient-binary-neural-networks (not part of this project)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads on both sides (the issue's figure: 1)")
    p.add_argument("--batch", type=int, default=50, help="batch size on both sides (the study's: 50)")
    p.add_argument("--steps", type=int, default=60, help="timed steps for LeNet5 (VGGNet7: a sixth), after 2 warm-up")
    p.add_argument("--models", default="lenet5,vggnet7", help="comma-separated: lenet5, vggnet7")
    p.add_argument("--modes", default=",".join(MODES),
                   help="comma-separated modes of ours: " + ", ".join(MODES) + " (bf16 ones only on native-bf16 CPUs)")
    p.add_argument("--out", type=Path, default=Path("results/bench_study.json"), help="JSON results")
    args = p.parse_args(argv)
    our_modes = modes(args.modes)
    if set(args.models.split(",")) - set(STUDY):
        raise UserError(f"--models: {args.models!r}; known: {', '.join(STUDY)}")
    torch.set_num_threads(args.threads)
    repo = args.study_repo.resolve()
    study = load_study(repo)
    rows = []
    for model_name in args.models.split(","):
        steps = args.steps if model_name == "lenet5" else max(4, args.steps // 6)
        data = prepared_batches(STUDY[model_name][1], args.batch, steps + 2)
        ref = study_images_per_s(study, repo, model_name, data)
        print(f"{model_name:8s} study's code          {ref:8.1f} images/s", flush=True)
        rows.append({"model": model_name, "side": "study", "mode": "fp32", "images_per_s": ref})
        for name, mode in our_modes.items():
            ips = our_images_per_s(model_name, data, mode)
            print(f"{model_name:8s} ours {name:16s} {ips:8.1f} images/s  {ips / ref:5.2f}x the study's", flush=True)
            rows.append({"model": model_name, "side": "ours", "mode": name, "images_per_s": ips,
                         "vs_study": ips / ref})  # unrounded: a slow side must not round to 0
    result = {"cpu": this_machine(), "bf16_native": cpu_has_native_bf16(), "threads": args.threads,
              "batch": args.batch, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main))
