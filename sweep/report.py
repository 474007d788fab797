"""A sweep's outputs: table.csv, the Pareto plots and the findings text (all numbers FINN estimates, everything
counted, and test accuracy of each trained point)."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ["option_set", "key", "test_acc_pct", "target_fps", "fps_est", "latency_us", "LUT", "BRAM18", "URAM",
           "DSP", "fps_per_klut", "fits", "verified", "verified_images", "note"]


def rows(results: list[dict]) -> list[dict]:
    out = []
    for r in results:
        for fps, b in r["builds"].items():
            t = b.get("total") or {}
            out.append({"option_set": r["name"], "key": r["key"], "test_acc_pct": round(r["test_acc"], 2),
                        "target_fps": int(fps), "fps_est": round(b["fps"]) if b.get("fps") else "",
                        "latency_us": round(b["latency_us"], 1) if b.get("latency_us") else "",
                        "LUT": round(t.get("LUT", 0)) if t else "", "BRAM18": round(t.get("BRAM_18K", 0)) if t else "",
                        "URAM": round(t.get("URAM", 0)) if t else "", "DSP": round(t.get("DSP", 0)) if t else "",
                        "fps_per_klut": round(b["fps_per_klut"]) if b.get("fps_per_klut") else "",
                        "fits": b["fits"], "verified": b["verified"], "verified_images": b.get("verified_images"),
                        "note": b.get("note", "")[:200]})
    return out


def write_table(table: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)


def _pareto(points):
    """Points (lut, acc) not beaten by another with less LUT and at least the accuracy."""
    front, best = [], -1.0
    for lut, acc in sorted(points):
        if acc > best:
            front.append((lut, acc))
            best = acc
    return front


def plot(table: list[dict], out: Path, board: str) -> None:
    targets = sorted({r["target_fps"] for r in table})
    fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets), 4.5), squeeze=False)
    for ax, fps in zip(axes[0], targets):
        pts = [r for r in table if r["target_fps"] == fps and r["LUT"] != ""]
        for r in pts:
            ax.scatter(r["LUT"], r["test_acc_pct"], marker="o", s=36,
                       facecolors="tab:blue" if r["fits"] else "none", edgecolors="tab:blue")
            ax.annotate(r["option_set"], (r["LUT"], r["test_acc_pct"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        front = _pareto([(r["LUT"], r["test_acc_pct"]) for r in pts if r["fits"]])
        if front:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", lw=1,
                    label="Pareto front (fits)")
            ax.legend(fontsize=7, loc="lower right")
        ax.set(xlabel="LUT, everything counted (FINN estimate)", ylabel="test accuracy %",
               title=f"{fps:,} FPS target on {board}\n(filled: fits the 85% limit)")
    fig.tight_layout()
    fig.savefig(out / "pareto_lut.png", dpi=100)
    plt.close(fig)
    best = {}
    for r in table:
        if r["fits"] and r["fps_est"] != "":
            best[r["option_set"]] = max(best.get(r["option_set"], (0, 0)), (r["fps_est"], r["test_acc_pct"]))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, (fps, acc) in best.items():
        ax.scatter(fps, acc, color="tab:blue")
        ax.annotate(name, (fps, acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel="highest estimated FPS that fits (of the targets built)", ylabel="test accuracy %",
           title=f"accuracy against the highest frame rate that fits {board}")
    fig.tight_layout()
    fig.savefig(out / "pareto_fps.png", dpi=100)
    plt.close(fig)


def findings(table: list[dict], baseline: str = "binary") -> str:
    """Accuracy bought per LUT against the baseline option set, per frame-rate target."""
    lines = []
    for fps in sorted({r["target_fps"] for r in table}):
        at = {r["option_set"]: r for r in table if r["target_fps"] == fps and r["LUT"] != ""}
        if baseline not in at:
            continue
        b = at[baseline]
        lines.append(f"At {fps:,} FPS (target) on the board, {baseline}: {b['test_acc_pct']:.2f}% at {b['LUT']:,} LUT"
                     f"{'' if b['fits'] else ' (does not fit)'}.")
        for name, r in sorted(at.items(), key=lambda kv: kv[1]["LUT"]):
            if name == baseline:
                continue
            dacc, dlut = r["test_acc_pct"] - b["test_acc_pct"], r["LUT"] - b["LUT"]
            per = (f"{dacc / (dlut / 1000):+.3f} pp per kLUT" if dlut >= 100 else
                   "about the same LUT" if abs(dlut) < 100 else "fewer LUT")
            lines.append(f"  {name}: {r['test_acc_pct']:.2f}% ({dacc:+.2f} pp) at {r['LUT']:,} LUT ({dlut:+,}), "
                         f"{per}{'' if r['fits'] else '; does not fit'}")
    return "\n".join(lines) + "\n"
