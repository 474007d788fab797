"""FINN's estimate reports against a board: totals, utilisation, fit check, plots."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .boards import Board  # noqa: E402

RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")


FOLDING_ATTRS = ("PE", "SIMD", "ram_style", "resType", "parallel_window")


def folding_of(model) -> dict:
    """Each HW layer's folding attributes, and an MVAU's weight memory as depth x width bits."""
    from qonnx.custom_op.registry import getCustomOp
    out = {}
    for node in model.graph.node:
        if not node.domain.startswith("finn.custom_op.fpgadataflow"):
            continue
        inst = getCustomOp(node)
        names = set(inst.get_nodeattr_types())  # declared attributes, set or at their defaults
        f = {a: inst.get_nodeattr(a) for a in FOLDING_ATTRS if a in names}
        if {"MW", "MH", "PE", "SIMD"} <= names:
            mw, mh, pe, simd = (inst.get_nodeattr(a) for a in ("MW", "MH", "PE", "SIMD"))
            f["weight_memory"] = f"{mw * mh // (pe * simd)} x {pe * simd}"
        out[node.name] = f
    return out


def collect(finn_report: Path, board: Board, clock_ns: float, model=None) -> dict:
    res = json.loads((finn_report / "estimate_layer_resources.json").read_text())
    cycles = json.loads((finn_report / "estimate_layer_cycles.json").read_text())
    perf = json.loads((finn_report / "estimate_network_performance.json").read_text())
    layers = {k: {r: float(v.get(r, 0)) for r in RESOURCES} for k, v in res.items() if k != "total"}
    total = {r: sum(l[r] for l in layers.values()) for r in RESOURCES}
    cap = board.capacity()
    max_cycles = max(cycles.values())
    fold = folding_of(model) if model is not None else {}
    fps = 1e9 / (clock_ns * max_cycles)
    return {
        "board": board.name, "part": board.part, "clock_ns": clock_ns,
        "layers": {k: {**layers.get(k, {}), "cycles": int(cycles.get(k, 0)), **fold.get(k, {})} for k in cycles},
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
             f"  {'layer':32s} {'cycles':>8s} {'LUT':>7s} {'BRAM18':>6s} {'URAM':>4s} {'DSP':>4s}  "
             f"{'PE':>3s} {'SIMD':>4s}  {'ram_style':11s} {'weight memory':15s}"]
    for name, l in est["layers"].items():
        lines.append(f"  {name:32s} {l['cycles']:8,d} {l.get('LUT', 0):7.0f} {l.get('BRAM_18K', 0):6.0f} "
                     f"{l.get('URAM', 0):4.0f} {l.get('DSP', 0):4.0f}  {l.get('PE', ''):>3} {l.get('SIMD', ''):>4}  "
                     f"{l.get('ram_style', ''):11s} {l.get('weight_memory', ''):15s}")
    return "\n".join(x for x in lines if x) + "\n"


def plot(est: dict, out_dir: Path) -> None:
    """Horizontal bars, one row per layer in flow order: readable for VGGNet7's 27+ layers."""
    names = list(est["layers"])
    short = [n.replace("ConvolutionInputGenerator", "SWG") for n in names]
    height = 1.5 + 0.22 * len(names)
    fig, ax = plt.subplots(figsize=(8, height))
    cyc = [est["layers"][n]["cycles"] for n in names]
    ax.barh(short, cyc, color=["tab:red" if n == est["bottleneck"] else "tab:blue" for n in names])
    ax.invert_yaxis()
    ax.set(xlabel="cycles per image (red: bottleneck)",
           title=f"estimated cycles per layer: {est['fps']:,.0f} FPS at {1000 / est['clock_ns']:.0f} MHz")
    fig.tight_layout()
    fig.savefig(out_dir / "cycles_per_layer.png", dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(RESOURCES), figsize=(4 * len(RESOURCES), height), sharey=True)
    for ax, r in zip(axes, RESOURCES):
        values = [est["layers"][n].get(r, 0) for n in names]
        ax.barh(short, values)
        ax.set_xlim(0, max(1.0, max(values)) * 1.05)
        ax.set(title=f"{r}: {est['total'][r]:,.0f} of {est['capacity'][r]:,}\n"
                     f"({est['utilisation_pct'][r]:.1f}%, FINN estimate)")
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out_dir / "resources_per_layer.png", dpi=100)
    plt.close(fig)
