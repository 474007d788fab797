"""make bench-sim: how fast the accelerator's graph simulates, next to the trained model on the same images.

    python -m tools.bench_sim BUILD [BUILD ...] [-n 10000] [--batch-size B] [--finn-images 50] [--cppsim-images 200]

For each build folder, in one process and one run: the Brevitas model's test-set inference (what
`python -m training --inference` computes, timed without process start and data loading), the python mode
(batched exact kernels) on the same images, FINN's own per-image execution on a sample (its images/s only),
and cppsim on a sample where finn-hlslib is found (the HLS layers' compiled programs, compile excluded;
every HLS layer checked bit-exact). Prints a table and writes it as JSON (--out); exits 1 when the python mode
disagrees with the Brevitas model on any image or FINN's execution with it on its sample.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def bench_build(build_dir: Path, n: int, batch_size: int | None, finn_images: int, data_dir: str = "",
                cppsim_images: int = 0) -> dict:
    import torch

    from sim.run import Build, reference_and_images, resolve_batch_size, run_graph
    from training.checkpoint import load, predict
    build = Build.load(build_dir)
    batch_size = resolve_batch_size(build, "python", batch_size)
    images, labels, _, _ = reference_and_images(build, n, data_dir)
    model, _, _ = load(build.folder.own_checkpoint(build.state))
    x = torch.from_numpy(images)
    t0 = time.time()
    ref = predict(model, x).argmax(1).numpy()
    t_brevitas = time.time() - t0
    t0 = time.time()
    top1 = run_graph(build, images, "python", batch_size=batch_size)[0]
    t_python = time.time() - t0
    k = min(finn_images, len(images))
    t0 = time.time()
    finn_top1 = run_graph(build, images[:k], "finn")[0] if k else np.zeros(0, int)
    t_finn = time.time() - t0
    cpp = cppsim(build_dir, cppsim_images, data_dir)
    return {"build": str(build_dir), "checkpoint": str(build.folder.own_checkpoint(build.state)),
            "images": int(len(images)),
            "brevitas_inference_s": round(t_brevitas, 1), "python_sim_s": round(t_python, 1),
            "ratio": round(t_python / t_brevitas, 2), "python_images_per_s": round(len(images) / t_python, 1),
            "finn_images_per_s": round(k / t_finn, 1) if k else None,
            "python_accuracy_pct": float(100 * (top1 == labels).mean()),
            "agreement_with_brevitas_pct": float(100 * (top1 == ref).mean()),
            "finn_agrees_on_sample": bool(np.array_equal(finn_top1, top1[:k])), **cpp,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def cppsim(build_dir: Path, k: int, data_dir: str) -> dict:
    """cppsim's speed on k images (compile excluded), or why it did not run."""
    from sim.cppsim import cppsim_available, cppsim_requirements
    from sim.run import simulate
    if not k or not cppsim_available():
        return {"cppsim_images_per_s": None, "cppsim_note": "not run" if not k else cppsim_requirements()}
    r = simulate(build_dir, "cppsim", k, data_dir, log=lambda *a: None)
    layers = [l for l in r["layers"] if l["mode"] == "cppsim"]
    return {"cppsim_images": r["images"], "cppsim_run_s": r["cppsim_run_s"],
            "cppsim_images_per_s": r["cppsim_images_per_s"],
            "cppsim_compile_s": round(sum(l["compile_s"] or 0 for l in layers), 1),
            "cppsim_layers_bit_exact": f"{sum(bool(l['bit_exact_vs_python']) for l in layers)}/{len(layers)}"}


def table(rows: list) -> str:
    lines = [f"{'build':44s} {'images':>6s} {'Brevitas s':>10s} {'python s':>9s} {'ratio':>6s} {'python img/s':>12s} "
             f"{'finn img/s':>10s} {'cppsim img/s':>12s} {'agree':>7s} {'peak MiB':>8s}"]
    for r in rows:
        lines.append(f"{Path(r['build']).name:44s} {r['images']:6d} {r['brevitas_inference_s']:10.1f} "
                     f"{r['python_sim_s']:9.1f} {r['ratio']:6.2f} {r['python_images_per_s']:12.1f} "
                     f"{r['finn_images_per_s'] or 0:10.1f} {r['cppsim_images_per_s'] or 0:12.1f} "
                     f"{r['agreement_with_brevitas_pct']:6.2f}% {r['peak_rss_mib']:8d}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from common import compat  # noqa: F401
    from common.errors import cli
    return cli(_main, argv)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_sim", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("builds", nargs="+", type=Path, help="build folders of 'python -m hw_build'")
    p.add_argument("-n", "--images", type=int, default=0, help="first N test images; 0: the whole test set")
    p.add_argument("--batch-size", type=int, help="images per batch of the python mode (default: sized to memory)")
    p.add_argument("--finn-images", type=int, default=50, help="images for FINN's per-image execution (its speed)")
    p.add_argument("--cppsim-images", type=int, default=200,
                   help="images for cppsim's speed (0: skip; skipped too where finn-hlslib is not found)")
    p.add_argument("--data-dir", default="", help="dataset folder (default: the checkpoint's, then $BNN_DATA_DIR)")
    p.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    from sim.run import SimError
    if min(args.images, args.finn_images, args.cppsim_images) < 0:
        raise SimError("-n, --finn-images and --cppsim-images take N >= 0 images")
    rows = []
    for b in args.builds:
        rows.append(bench_build(b, args.images, args.batch_size, args.finn_images, args.data_dir, args.cppsim_images))
        print(table(rows[-1:]).splitlines()[-1] if len(rows) > 1 else table(rows), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    wrong = [f"{Path(r['build']).name}: python mode agrees with Brevitas on {r['agreement_with_brevitas_pct']:.2f}%"
             f"{'' if r['finn_agrees_on_sample'] else ', FINN differs on its sample'}" for r in rows
             if r["agreement_with_brevitas_pct"] < 100 or not r["finn_agrees_on_sample"]]
    if wrong:  # a benchmark that is also the whole-test-set check of the simulators
        print("mismatch: " + "; ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
