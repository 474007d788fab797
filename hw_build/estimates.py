"""FINN's estimates against a board, everything counted: totals, utilisation, fit check, summary, plots.

FINN's estimate report covers the compute layers. A board design also holds the data-width converters
and FIFOs that FINN inserts when it stitches the layers, and the shell around the accelerator. Here the
graph is first completed as FINN's stitching completes it (InsertDWC, InsertFIFO, SpecializeLayers on a
copy), FINN's per-node estimate is taken for every node, and the board's shell allowance (boards.py,
with its published source) is added. Every number here is an *estimate*.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .boards import SHELL_SOURCE, Board  # noqa: E402
from .errors import DoesNotFit  # noqa: E402

RESOURCES = ("LUT", "BRAM_18K", "URAM", "DSP")
FOLDING_ATTRS = ("PE", "SIMD", "ram_style", "resType", "parallel_window", "depth", "impl_style")
UNSIZED_FIFOS = ("FIFO depths are the minimal ones FINN inserts (unsized): FINN's FIFO sizing (distributed_sim, "
                 "live_fifo) needs Vivado's simulator or a board; 'make bitstream' sizes them there")


def final_graph(model, part: str):
    """A copy of the accelerator with FINN's data-width converters and FIFOs inserted, as FINN stitches it."""

    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
    m = copy.deepcopy(model)
    for t in (InsertDWC(), InsertFIFO(create_shallow_fifos=True), SpecializeLayers(part), GiveUniqueNodeNames(),
              GiveReadableTensorNames()):
        m = m.transform(t)
    return m


def _kind(op_type: str) -> str:
    return "fifo" if op_type.startswith("StreamingFIFO") else \
        "dwc" if op_type.startswith("StreamingDataWidthConverter") else "layer"


def _has_estimate(inst) -> bool:
    """False where FINN has no resource model for the node type (it reports 0 for everything)."""
    from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
    return any(getattr(type(inst), f) is not getattr(HWCustomOp, f)
               for f in ("lut_estimation", "bram_estimation", "dsp_estimation", "uram_estimation"))


def node_estimates(model, part: str) -> dict:
    """FINN's per-node estimate for every node, with its folding and, for MVAUs, its weight memory."""
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from qonnx.custom_op.registry import getCustomOp
    res = res_estimation(model, part)
    out = {}
    for node in model.graph.node:
        inst = getCustomOp(node)
        names = set(inst.get_nodeattr_types())
        r = res.get(node.name, {})
        n = {"kind": _kind(node.op_type), "estimated": _has_estimate(inst),
             **{k: float(r.get(k, 0)) for k in RESOURCES},
             **{a: inst.get_nodeattr(a) for a in FOLDING_ATTRS if a in names}}
        if {"MW", "MH", "PE", "SIMD"} <= names:
            mw, mh, pe, simd = (inst.get_nodeattr(a) for a in ("MW", "MH", "PE", "SIMD"))
            n["weight_memory"] = f"{mw * mh // (pe * simd)} x {pe * simd}"
            n["memory"] = "URAM" if n["URAM"] else "BRAM" if n["BRAM_18K"] else "LUTRAM"
            eff = r.get("URAM_efficiency" if n["URAM"] else "BRAM_efficiency")
            n["memory_efficiency"] = float(eff) if n["memory"] != "LUTRAM" and eff is not None else None
        out[node.name] = n
    return out


def collect(finn_report: Path, board: Board, clock_ns: float, model, max_utilization: float = 85.0,
            target_fps: float | None = None) -> dict:
    cycles = json.loads((finn_report / "estimate_layer_cycles.json").read_text())
    perf = json.loads((finn_report / "estimate_network_performance.json").read_text())
    nodes = node_estimates(final_graph(model, board.part), board.part)
    for name, n in nodes.items():
        n["cycles"] = int(cycles.get(name, 0))
    accel = {r: sum(n[r] for n in nodes.values()) for r in RESOURCES}
    by_kind = {k: {r: sum(n[r] for n in nodes.values() if n["kind"] == k) for r in RESOURCES}
               for k in ("layer", "dwc", "fifo")}
    counted = {r: accel[r] + board.shell[r] for r in RESOURCES}
    cap = board.capacity()
    max_cycles = max(cycles.values())
    fps = 1e9 / (clock_ns * max_cycles)
    return {
        "kind": "estimate (FINN's per-node models), everything counted",
        "board": board.name, "part": board.part, "clock_ns": clock_ns,
        "layers": nodes, "layers_total": by_kind["layer"], "dwc_total": by_kind["dwc"], "fifo_total": by_kind["fifo"],
        "accelerator_total": accel, "shell_allowance": dict(board.shell), "shell_source": SHELL_SOURCE,
        "total": counted, "capacity": cap,
        "utilisation_pct": {r: (100.0 * counted[r] / cap[r] if cap[r] else (0.0 if counted[r] == 0 else float("inf")))
                            for r in RESOURCES},
        "max_utilization_pct": max_utilization, "fifo_depths": "unsized: " + UNSIZED_FIFOS,
        "no_estimate": sorted({n.split("_")[0] for n, v in nodes.items() if not v["estimated"]}),
        "max_cycles": int(max_cycles), "bottleneck": max(cycles, key=cycles.get),
        "target_fps": target_fps,
        "cycle_budget": int(1e9 / (clock_ns * target_fps)) if target_fps else None,
        "fps": fps, "latency_us": perf["critical_path_cycles"] * clock_ns / 1000.0,
        "critical_path_cycles": int(perf["critical_path_cycles"]),
        "fps_per_klut": fps / (counted["LUT"] / 1000.0) if counted["LUT"] else None,
    }


def check_fit(est: dict, board: Board) -> None:
    limit = est["max_utilization_pct"]
    over = [r for r in RESOURCES if est["total"][r] > limit / 100.0 * est["capacity"][r]]
    if not over:
        return
    parts = []
    for r in over:
        top = sorted(est["layers"].items(), key=lambda kv: -kv[1].get(r, 0))[:3]
        users = ", ".join(f"{k} {v.get(r, 0):.0f}" for k, v in top)
        parts.append(f"{r}: {est['total'][r]:.0f} of {est['capacity'][r]} ({est['utilisation_pct'][r]:.1f}%, "
                     f"limit {limit:g}%; most used by {users})")
    raise DoesNotFit(f"the design does not fit the {board.name} ({board.part}) with every resource counted "
                     f"(layers, data-width converters, FIFOs and the shell allowance): " + "; ".join(parts)
                     + ". Lower --target-fps, fold more (smaller PE/SIMD), move weight memories (ram_style) or "
                       "multiplications (resType dsp) to idle resources, a smaller width_scale, a larger board "
                       "(--list-boards), or raise --max-utilization knowingly")


def _fmt(n: dict, r: str) -> str:
    return f"{n[r]:.0f}" if n["estimated"] else "n/e"


def summary(est: dict, board: Board) -> str:
    u, t = est["utilisation_pct"], est["total"]
    lines = [f"estimates for {board.name} ({board.part}) at {1000 / est['clock_ns']:.0f} MHz "
             f"({est['kind']}):",
             f"  throughput {est['fps']:,.0f} FPS (bottleneck {est['bottleneck']}, {est['max_cycles']:,} cycles), "
             f"latency {est['latency_us']:.1f} us",
             (f"  target {est['target_fps']:,.0f} FPS = {est['cycle_budget']:,} cycles per image"
              if est["target_fps"] else ""),
             f"  LUT {t['LUT']:,.0f} / {board.lut:,} ({u['LUT']:.1f}%)   "
             f"BRAM18 {t['BRAM_18K']:.0f} / {board.bram18} ({u['BRAM_18K']:.1f}%)   "
             f"URAM {t['URAM']:.0f} / {board.uram}   DSP {t['DSP']:.0f} / {board.dsp} ({u['DSP']:.1f}%)   "
             f"limit {est['max_utilization_pct']:g}% of each",
             "  counted: " + "; ".join(
                 f"{label} LUT {v['LUT']:,.0f}, BRAM18 {v['BRAM_18K']:.0f}, URAM {v['URAM']:.0f}, DSP {v['DSP']:.0f}"
                 for label, v in (("layers", est["layers_total"]), ("data-width converters", est["dwc_total"]),
                                  ("FIFOs", est["fifo_total"]), ("shell allowance", est["shell_allowance"]))),
             f"  ({est['shell_source']})",
             f"  {est['fps_per_klut']:.0f} FPS per kLUT (everything counted)" if est["fps_per_klut"] else "",
             f"  n/e: no FINN resource model for {', '.join(est['no_estimate'])} (counted as 0)"
             if est["no_estimate"] else "",
             "  FF: FINN has no flip-flop estimate for these layers; not counted",
             f"  {'node':34s} {'cycles':>8s} {'LUT':>6s} {'BRAM18':>6s} {'URAM':>4s} {'DSP':>4s}  "
             f"{'PE':>3s} {'SIMD':>4s} {'resType':7s} {'ram_style':11s} {'weight memory':15s} {'in':6s} {'eff':>5s}"]
    fifos = {}
    for name, n in est["layers"].items():
        if n["kind"] == "fifo":
            fifos[name] = n.get("depth")
            continue
        eff = n.get("memory_efficiency")
        lines.append(f"  {name:34s} {n['cycles']:8,d} {_fmt(n, 'LUT'):>6s} {_fmt(n, 'BRAM_18K'):>6s} "
                     f"{_fmt(n, 'URAM'):>4s} {_fmt(n, 'DSP'):>4s}  {n.get('PE', ''):>3} {n.get('SIMD', ''):>4} "
                     f"{n.get('resType', ''):7s} {n.get('ram_style', ''):11s} {n.get('weight_memory', ''):15s} "
                     f"{n.get('memory', ''):6s} {'' if eff is None else f'{100 * eff:.0f}%':>5s}")
    depths = sorted(set(fifos.values()))
    if isinstance(est.get("fifo_depths"), dict):  # a bitstream build: FINN's sizing, per FIFO
        sized = est["fifo_depths"]
        lines.append(f"  FIFOs sized by FINN: {len(sized)}, depths {min(sized.values())}..{max(sized.values())} "
                     f"(report/estimates.json fifo_depths)")
    else:
        lines.append(f"  FIFOs: {len(fifos)}, depths {', '.join(map(str, depths))}; {UNSIZED_FIFOS}")
    if (est.get("rtlsim") or {}).get("fps"):
        lines.append(f"  simulated: {est['rtlsim']['fps']:,.0f} FPS in FINN's stitched-IP rtlsim beside the estimate "
                     f"{est['fps']:,.0f} FPS")
    timing = est.get("timing")
    if timing:
        verdict = "met" if timing["met"] else "NOT met (--allow-timing-violation)"
        lines.append(f"  timing (measured by Vivado, post-route): WNS {timing['wns_ns']:.3f} ns, "
                     f"TNS {timing['tns_ns']:.3f} ns at {timing['clock_ns']:g} ns: {verdict}")
    return "\n".join(x for x in lines if x) + "\n"


def _rows(est: dict) -> list[tuple[str, dict]]:
    """Layers one row each in flow order; converters, FIFOs and the shell one row per kind."""
    rows = [(n.replace("ConvolutionInputGenerator", "SWG"), v) for n, v in est["layers"].items()
            if v["kind"] == "layer"]
    for kind, label in (("dwc", "data-width converters"), ("fifo", "FIFOs (unsized)")):
        k = sum(v["kind"] == kind for v in est["layers"].values())
        rows.append((f"{label} x{k}", {**est[f"{kind}_total"], "estimated": True}))
    rows.append(("shell allowance", {**est["shell_allowance"], "estimated": True}))
    return rows


def plot(est: dict, out_dir: Path) -> None:
    """Horizontal bars, one row per layer in flow order: readable for VGGNet7's 27+ layers."""
    layers = [(n, v) for n, v in est["layers"].items() if v["kind"] == "layer"]
    short = [n.replace("ConvolutionInputGenerator", "SWG") for n, _ in layers]
    height = 1.5 + 0.22 * (len(layers) + 3)
    fig, ax = plt.subplots(figsize=(8, height))
    ax.barh(short, [v["cycles"] for _, v in layers],
            color=["tab:red" if n == est["bottleneck"] else "tab:blue" for n, _ in layers])
    if est.get("cycle_budget"):
        ax.axvline(est["cycle_budget"], color="k", ls="--",
                   label=f"budget of {est['target_fps']:,.0f} FPS: {est['cycle_budget']:,} cycles")
        ax.legend(loc="lower right", fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="cycles per image (red: bottleneck)",
           title=f"estimated cycles per layer: {est['fps']:,.0f} FPS at {1000 / est['clock_ns']:.0f} MHz")
    fig.tight_layout()
    fig.savefig(out_dir / "cycles_per_layer.png", dpi=100)
    plt.close(fig)
    rows = _rows(est)
    fig, axes = plt.subplots(1, len(RESOURCES), figsize=(4 * len(RESOURCES), height), sharey=True)
    for ax, r in zip(axes, RESOURCES):
        values = [v.get(r, 0) for _, v in rows]
        colors = ["tab:gray" if "shell" in n else "tab:blue" for n, _ in rows]
        bars = ax.barh([n for n, _ in rows], values, color=colors)
        for bar, (_, v) in zip(bars, rows):
            if not v["estimated"]:  # no FINN model: a marker, not a zero
                bar.set_hatch("//")
                ax.text(0, bar.get_y() + bar.get_height() / 2, " no estimate", va="center", fontsize=7, color="gray")
        lim = est["max_utilization_pct"] / 100.0 * est["capacity"][r]
        ax.set_xlim(0, max(1.0, max(values)) * 1.05)
        ax.set(title=f"{r}: {est['total'][r]:,.0f} of {est['capacity'][r]:,}\n"
                     f"({est['utilisation_pct'][r]:.1f}%, limit {lim:,.0f}; estimate)")
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(out_dir / "resources_per_layer.png", dpi=100)
    plt.close(fig)
