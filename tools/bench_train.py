"""make bench: training images/s of the binary LeNet5 and VGGNet7 in fp32 and the faster modes.

Synthetic-free: real MNIST/CIFAR-10 batches, the real training step (forward, loss, backward,
Adam step with the latent-weight clamp), and a distillation teacher's forward eager and compiled.
Also a short accuracy check that bf16 autocast trains as well as fp32 on the same images.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from common import compat  # noqa: F401
from common.registry import NETWORKS
from training.config import TrainConfig
from training.data import batches, make_splits
from training.losses import loss_fn, make_optimizer
from training.models import build_model
from training.speed import autocast, cpu_has_native_bf16

MODES = {"fp32": dict(amp="none", channels_last=False, compile="off"),
         "fp32+compile": dict(amp="none", channels_last=False, compile="on"),
         "bf16": dict(amp="bf16", channels_last=False, compile="off"),
         "bf16+compile": dict(amp="bf16", channels_last=False, compile="on"),
         # channels_last + compile: inductor fails
         "bf16+channels_last": dict(amp="bf16", channels_last=True, compile="off")}


def native_modes(modes: dict) -> dict:
    """The modes worth timing on this CPU: bf16 ones only where it computes bf16 natively (emulated: 7-13x slower)."""
    return {k: v for k, v in modes.items() if v["amp"] != "bf16" or cpu_has_native_bf16()}


def prepared_batches(dataset: str, batch: int, n: int) -> list:
    """n training batches as the loop sees them, built before timing (data preparation is not timed)."""
    s = make_splits(dataset, train_limit=batch * n, test_limit=1)
    return list(batches(s.x_train, s.y_train, batch))


def time_steps(cfg: TrainConfig, data: list, warmup: int = 2) -> float:
    """Images/s of training/train.py's step (autocast forward, loss, backward, optimizer step; loss summed on
    the device) over prepared batches, after warm-up steps (which include compiling)."""
    torch._dynamo.reset()  # each setting compiles afresh (the Block code object is shared between models)
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if cfg.compile == "on" else model
    opt, device, loss_sum = make_optimizer(cfg, model), torch.device("cpu"), torch.zeros(())
    for i, (xb, yb) in enumerate(data):
        if i == warmup:
            t0 = time.perf_counter()
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(cfg, device):
            loss = loss_fn(cfg, net(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(xb)
    loss_sum.item()
    return sum(len(y) for _, y in data[warmup:]) / (time.perf_counter() - t0)


def images_per_s(model_name: str, mode: dict, batch: int, steps: int, threads: int) -> float:
    dataset = NETWORKS[model_name].dataset
    cfg = TrainConfig(model=model_name, dataset=dataset, batch_size=batch, threads=threads, **mode)
    torch.set_num_threads(threads)
    return time_steps(cfg, prepared_batches(dataset, batch, steps + 2))


def teacher_forward(amp: str, batch: int, steps: int, threads: int) -> dict:
    """A distillation teacher's forward (the shipped full-width VGGNet7, loaded by training's load_teacher)
    on augmented CIFAR-10 training batches, eager and compiled side by side: images/s and how far the logits
    differ (teacher_compile: auto rests on this)."""
    from training.data import augment
    from training.losses import load_teacher
    torch.set_num_threads(threads)
    cfg = TrainConfig(model="vggnet7", dataset="cifar10", amp=amp, distill_from="pretrained/vggnet7/binary")
    teacher = load_teacher(cfg, torch.device("cpu"))
    x = make_splits("cifar10", train_limit=batch * (steps + 1), test_limit=1).x_train
    gen = torch.Generator().manual_seed(0)
    data = [augment(x[i:i + batch], "cifar10", gen) for i in range(0, len(x), batch)]
    row, logits = {"amp": amp, "batch": batch}, {}
    torch._dynamo.reset()
    for name, net in (("eager", teacher), ("compiled", torch.compile(teacher))):
        with torch.no_grad(), autocast(cfg, torch.device("cpu")):
            net(data[0])  # warm-up (compiling)
            t0 = time.perf_counter()
            logits[name] = torch.cat([net(xb).float() for xb in data[1:]])
        row[f"{name}_images_per_s"] = round(len(logits[name]) / (time.perf_counter() - t0), 1)
    row["logits_max_abs_diff"] = (logits["eager"] - logits["compiled"]).abs().max().item()
    row["top1_differs"] = int((logits["eager"].argmax(1) != logits["compiled"].argmax(1)).sum())
    return row


def accuracy_check(amp: str, threads: int) -> float:
    from training.train import train
    cfg = TrainConfig(epochs=2, train_limit=5000, val_size=1000, test_limit=2000, amp=amp, threads=threads,
                      results="/tmp/bnn_bench_runs", augment=False)
    run = train(cfg, run_id=f"bench_{amp}", log=lambda *a: None)
    return float((run / "test_accuracy.txt").read_text().split()[0])


def gpu_epochs(model_name: str, batch: int, lr: float, amp: str, compile: str, epochs: int, log=print,
               device: str = "cuda", **extra) -> dict:
    """The real training loop on CUDA (data resident, on-device augmentation and metrics) for a few epochs
    of the full training split: seconds per epoch (training + validation) as metrics.csv records them."""
    from training.train import train
    preset = {"lenet5": "configs/lenet5_binary.yml", "vggnet7": "configs/vggnet7_binary.yml"}[model_name]
    from training.config import resolve
    cfg, _ = resolve(preset, dict(batch_size=batch, lr=lr, amp=amp, compile=compile, epochs=epochs,
                                  device=device, channels_last=True, precise_bn=False,
                                  results="/tmp/bnn_bench_runs", **extra))
    t0 = time.time()
    run = train(cfg, run_id=f"gpu_{model_name}_{amp}_{compile}", log=lambda *a: None)
    seconds = [float(r["epoch_seconds"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    row = {"model": model_name, "device": name, "batch": batch, "amp": amp,
           "compile": compile, "epoch_seconds": seconds, "steady_epoch_seconds": min(seconds[1:] or seconds),
           "wall_seconds": round(time.time() - t0, 1)}
    log(f"{model_name:8s} {name} amp={amp} compile={compile} batch {batch}: epochs {seconds} s "
        f"(first includes compiling), steady {row['steady_epoch_seconds']} s per epoch of 45k+5k images")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per setting (LeNet5; VGGNet7 a quarter)")
    p.add_argument("--out", type=Path, default=Path("results/bench.json"), help="JSON results")
    p.add_argument("--no-accuracy", action="store_true", help="skip the fp32-vs-bf16 accuracy check")
    p.add_argument("--gpu-only", action="store_true", help="with CUDA: only the GPU epoch times")
    p.add_argument("--gpu-epochs", type=int, default=3, help="epochs timed on the GPU (the first compiles)")
    args = p.parse_args(argv)
    if torch.cuda.is_available():
        gpu = [gpu_epochs("vggnet7", 500, 0.003, "bf16", "on", args.gpu_epochs)]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_name("bench_gpu.json").write_text(json.dumps(gpu, indent=2))
        if args.gpu_only:
            return 0
    rows = []
    modes = native_modes(MODES)
    if len(modes) < len(MODES):
        print("this CPU has no native bf16 (AVX512-BF16 or AMX): bf16 rows skipped (emulated, 7-13x slower)")
    for model_name, batch, epoch_images, steps in (("lenet5", 100, 50_000, args.steps),
                                                    ("vggnet7", 50, 45_000, max(4, args.steps // 4))):
        for name, mode in modes.items():
            ips = images_per_s(model_name, mode, batch, steps, args.threads)
            rows.append({"model": model_name, "mode": name, "batch": batch, "images_per_s": round(ips, 1),
                         "epoch_minutes": round(epoch_images / ips / 60, 2)})
            print(f"{model_name:8s} {name:20s} batch {batch:4d}: {ips:8.1f} images/s, "
                  f"epoch of {epoch_images:,} images {epoch_images / ips / 60:6.2f} min", flush=True)
    result = {"threads": args.threads, "throughput": rows, "teacher_forward": []}
    for amp in ("none", "bf16") if cpu_has_native_bf16() else ("none",):
        row = teacher_forward(amp, 100, max(4, args.steps // 4), args.threads)
        result["teacher_forward"].append(row)
        print(f"teacher   {'fp32' if amp == 'none' else amp:20s} batch 100: eager {row['eager_images_per_s']:.1f}, "
              f"compiled {row['compiled_images_per_s']:.1f} images/s; logits max |d| "
              f"{row['logits_max_abs_diff']:.3g}, top-1 differs on {row['top1_differs']}", flush=True)
    if not args.no_accuracy and cpu_has_native_bf16():
        result["accuracy_check"] = {amp: accuracy_check(amp, args.threads) for amp in ("none", "bf16")}
        print(f"2 epochs on 5,000 MNIST images, test accuracy: fp32 {result['accuracy_check']['none']:.2f}%, "
              f"bf16 {result['accuracy_check']['bf16']:.2f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
