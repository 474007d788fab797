"""What a simulation reports: report_<mode>.json and its summary."""
from __future__ import annotations

import resource

import numpy as np


def make_report(build, mode: str, results: tuple, modes: dict, layers: list, timing: tuple) -> dict:
    """results: (images, labels, the Brevitas top-1, the simulated top-1); timing: (wall seconds, batch size)."""
    images, labels, ref_top1, top1 = results
    wall, batch_size = timing
    report = {
        "build": str(build.folder.root), "checkpoint": str(build.folder.own_checkpoint(build.state)), "mode": mode,
        "images": int(len(images)),
        "accuracy_pct": float(100 * (top1 == labels).mean()),
        "brevitas_accuracy_pct": float(100 * (ref_top1 == labels).mean()),
        "agreement_with_brevitas_pct": float(100 * (top1 == ref_top1).mean()),
        "disagreeing_images": [int(i) for i in np.nonzero(top1 != ref_top1)[0][:100]],
        "layer_modes": modes, "layers": [vars(r) for r in layers],
        "all_simulated_layers_bit_exact": all(r.bit_exact_vs_python for r in layers if r.mode != "python"),
        "wall_s": round(wall, 1), "images_per_s": round(len(images) / wall, 1),
        "batch_size": batch_size,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    cpp_run_s = sum(r.run_s or 0 for r in layers if r.mode == "cppsim")
    if any(r.mode == "cppsim" for r in layers):
        from .cppsim import hlslib_dir, hlslib_note
        report["finn_hlslib"] = hlslib_note(hlslib_dir())
        report["cppsim_run_s"] = round(cpp_run_s, 2)  # the HLS layers' programs alone, compile excluded
        report["cppsim_images_per_s"] = round(len(images) / max(cpp_run_s, 0.01), 1)
    sim_cycles = [r.cycles_per_image for r in layers if r.cycles_per_image]
    if sim_cycles:
        report["max_rtl_cycles_per_image"] = max(sim_cycles)
    return report


def summary(r: dict) -> str:
    lines = [f"{r['mode']} simulation of {r['build']}: {r['images']} images in {r['wall_s']} s "
             f"({r['images_per_s']} images/s, batch {r.get('batch_size')}, peak memory {r.get('peak_rss_mib')} MiB)",
             f"  accuracy {r['accuracy_pct']:.2f}% (Brevitas model {r['brevitas_accuracy_pct']:.2f}%), "
             f"top-1 agreement with Brevitas {r['agreement_with_brevitas_pct']:.2f}%"]
    if r["layers"]:
        lines.append(f"  {'layer':34s} {'mode':7s} {'bit-exact':9s} {'cycles/img':>10s} {'estimate':>9s} "
                     f"{'compile s':>9s} {'run s':>7s}")
        for l in r["layers"]:
            be = "" if l["bit_exact_vs_python"] is None else str(l["bit_exact_vs_python"])
            cy = f"{l['cycles_per_image']:10.0f}" if l["cycles_per_image"] else " " * 10
            lines.append(f"  {l['name']:34s} {l['mode']:7s} {be:9s} {cy} {l['estimated_cycles'] or '':>9} "
                         f"{l.get('compile_s') or '':>9} {l.get('run_s') or '':>7}")
            if l.get("note"):
                lines.append(f"    {l['note']}")
        if r.get("finn_hlslib"):
            lines.append(f"  cppsim against finn-hlslib {r['finn_hlslib']}; the HLS layers' programs ran "
                         f"{r['cppsim_run_s']} s ({r['cppsim_images_per_s']} images/s, compile excluded)")
    return "\n".join(lines)
