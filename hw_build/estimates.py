"""FINN's estimate reports against a board: totals, utilisation, fit check, plots."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .boards import Board  # noqa: E402

RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")


def collect(finn_report: Path, board: Board, clock_ns: float) -> dict:
    res = json.loads((finn_report / "estimate_layer_resources.json").read_text())
    cycles = json.loads((finn_report / "estimate_layer_cycles.json").read_text())
    perf = json.loads((finn_report / "estimate_network_performance.json").read_text())
    layers = {k: {r: float(v.get(r, 0)) for r in RESOURCES} for k, v in res.items() if k != "total"}
    total = {r: sum(l[r] for l in layers.values()) for r in RESOURCES}
    cap = board.capacity()
    max_cycles = max(cycles.values())
    fps = 1e9 / (clock_ns * max_cycles)
    return {
        "board": board.name, "part": board.part, "clock_ns": clock_ns,
        "layers": {k: {**layers.get(k, {}), "cycles": int(cycles.get(k, 0))} for k in cycles},
        "total": total, "capacity": cap,
        "utilisation_pct": {r: (100.0 * total[r] / cap[r] if cap[r] else (0.0 if total[r] == 0 else float("inf")))
                            for r in RESOURCES},
        "max_cycles": int(max_cycles), "bottleneck": max(cycles, key=cycles.get),
        "fps": fps, "latency_us": perf["critical_path_cycles"] * clock_ns / 1000.0,
        "critical_path_cycles": int(perf["critical_path_cycles"]),
        "fps_per_klut": fps / (total["LUT"] / 1000.0) if total["LUT"] else None,
    }


def check_fit(est: dict, board: Board) -> None:
    from .flow import DoesNotFit
    over = [r for r in RESOURCES if est["total"][r] > est["capacity"][r]]
    if not over:
        return
    parts = []
    for r in over:
        top = sorted(est["layers"].items(), key=lambda kv: -kv[1].get(r, 0))[:3]
        users = ", ".join(f"{k} {v.get(r, 0):.0f}" for k, v in top)
        parts.append(f"{r}: needs {est['total'][r]:.0f} of {est['capacity'][r]} "
                     f"({est['total'][r] - est['capacity'][r]:.0f} over; most used by {users})")
    raise DoesNotFit(f"the design does not fit the {board.name} ({board.part}): " + "; ".join(parts)
                     + ". Lower --target-fps, fold more (smaller PE/SIMD), a smaller width_scale, "
                       "or a larger board (see --list-boards)")


def summary(est: dict, board: Board) -> str:
    u = est["utilisation_pct"]
    lines = [f"estimates for {board.name} ({board.part}) at {1000 / est['clock_ns']:.0f} MHz:",
             f"  throughput {est['fps']:,.0f} FPS (bottleneck {est['bottleneck']}, {est['max_cycles']:,} cycles), "
             f"latency {est['latency_us']:.1f} us",
             f"  LUT {est['total']['LUT']:,.0f} / {board.lut:,} ({u['LUT']:.1f}%)   "
             f"BRAM18 {est['total']['BRAM_18K']:.0f} / {board.bram18} ({u['BRAM_18K']:.1f}%)   "
             f"URAM {est['total']['URAM']:.0f} / {board.uram}   DSP {est['total']['DSP']:.0f} / {board.dsp}",
             f"  {est['fps_per_klut']:.0f} FPS per kLUT" if est["fps_per_klut"] else "",
             f"  {'layer':32s} {'cycles':>8s} {'LUT':>7s} {'BRAM18':>7s}"]
    for name, l in est["layers"].items():
        lines.append(f"  {name:32s} {l['cycles']:8,d} {l.get('LUT', 0):7.0f} {l.get('BRAM_18K', 0):7.0f}")
    return "\n".join(x for x in lines if x) + "\n"


def plot(est: dict, out_dir: Path) -> None:
    names = list(est["layers"])
    short = [n.replace("ConvolutionInputGenerator", "SWG") for n in names]
    fig, ax = plt.subplots(figsize=(10, 4))
    cyc = [est["layers"][n]["cycles"] for n in names]
    ax.bar(short, cyc, color=["tab:red" if n == est["bottleneck"] else "tab:blue" for n in names])
    ax.set(ylabel="cycles per image", title=f"estimated cycles per layer ({est['fps']:,.0f} FPS at "
                                            f"{1000 / est['clock_ns']:.0f} MHz)")
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    fig.savefig(out_dir / "cycles_per_layer.png", dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, r in zip(axes, ("LUT", "BRAM_18K")):
        ax.bar(short, [est["layers"][n].get(r, 0) for n in names])
        ax.set(title=f"{r}: {est['total'][r]:,.0f} of {est['capacity'][r]:,} ({est['utilisation_pct'][r]:.1f}%)")
        ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    fig.savefig(out_dir / "resources_per_layer.png", dpi=100)
    plt.close(fig)
