"""make bench-packing: FINN's weight-file writing with FINN's own hex packing and with hw_build/finn_speedups.py's.

    python -m tools.bench_packing BUILD [BUILD ...] [--modes decoupled_verilog_dat,...] [--out FILE]

For every MVAU of each build folder's hw_codegen model and each weight-file mode, in one process: FINN's
make_weight_file with FINN's per-element packing, then with the vectorized one (what builds use), the two
files compared byte for byte. Prints a table and writes it as JSON (--out); exits 1 when any file differs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

MODES = ("hls_header", "decoupled_verilog_dat", "decoupled_runtime")


def bench_build(build_dir: Path, modes: list[str]) -> list[dict]:
    """One row per MVAU and mode: the seconds of each packing, the file's size, whether the files are equal."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hw_build.build_folder import BuildFolder
    from hw_build.finn_speedups import finns_own_packing
    model = ModelWrapper(str(BuildFolder(build_dir).last_stage("hw_codegen")))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for node in (n for n in model.graph.node if n.op_type.startswith("MVAU")):
            inst, w = getCustomOp(node), model.get_initializer(node.input[1])
            for mode in modes:
                row = {"build": build_dir.name, "layer": node.name, "mode": mode, "weights": int(w.size)}
                files = {}
                for name, packing in (("finn", finns_own_packing), ("ours", contextlib.nullcontext)):
                    with packing():
                        t0 = time.time()
                        inst.make_weight_file(w, mode, f"{tmp}/{name}")
                        row[f"{name}_s"] = round(time.time() - t0, 3)
                    files[name] = Path(f"{tmp}/{name}").read_bytes()
                row["bytes"], row["identical"] = len(files["ours"]), files["finn"] == files["ours"]
                rows.append(row)
                print(f"{row['build']:28s} {row['layer']:12s} {mode:22s} {row['weights']:>10,d} weights  "
                      f"FINN {row['finn_s']:8.2f} s  ours {row['ours_s']:6.2f} s  "
                      f"{'identical' if row['identical'] else 'DIFFERENT'}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("builds", nargs="+", type=Path, metavar="BUILD", help="build folders (run to hw_codegen)")
    p.add_argument("--modes", default="decoupled_verilog_dat",
                   help=f"comma-separated weight-file modes of FINN's make_weight_file, of {', '.join(MODES)} "
                        "(default: decoupled_verilog_dat, what hw_codegen writes for decoupled weights)")
    p.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        p.error(f"--modes: unknown {sorted(set(modes) - set(MODES))}; known: {', '.join(MODES)}")
    from hw_build.build_folder import BuildFolder
    for b in args.builds:
        if BuildFolder(b).last_stage("hw_codegen") is None:
            p.error(f"{b} holds no model after hw_codegen (intermediate/NN_hw_codegen.onnx): build one first, "
                    f"python -m hw_build --checkpoint ... --stop-after hw_codegen --out {b} "
                    "(make bench-packing builds the ZCU104 VGGNet7's)")
    from hw_build import finn_env
    finn_env.setup(create=False)
    import finn.util.data_packing as dp
    if not hasattr(dp.pack_innermost_dim_as_hex_string, "original"):
        p.error("BNN_FINN_SPEEDUPS=off is set: unset it to compare the two packings")
    rows = [r for b in args.builds for r in bench_build(b, modes)]
    finn_s, ours_s = sum(r["finn_s"] for r in rows), sum(r["ours_s"] for r in rows)
    print(f"all: FINN's packing {finn_s:.1f} s, ours {ours_s:.1f} s ({finn_s / max(ours_s, 1e-9):.0f}x), "
          f"{sum(r['identical'] for r in rows)} of {len(rows)} files identical")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
