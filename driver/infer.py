#!/usr/bin/env python3
"""Test-set inference on the accelerator: on a PYNQ board, or without one.

On the board (the default backend) this runs in the board image's Python with numpy and pynq
only: accel.py beside it loads the bitfile, writes runtime weights, packs the images into FINN's
stream format and drives FINN's IODMAs; this script feeds it the test set in batches and measures.
Without a board: --backend sim runs the build's dataflow graph in simulation, and --backend
emulated runs this same board code path on a stand-in pynq (sim/pynq_standin) whose fabric is a
simulator process.

  python3 infer.py        # on the board, in the package, as root in PYNQ's Python (sudo -i, then
                          # source /etc/profile.d/pynq_venv.sh; plain sudo drops that venv and XILINX_XRT)
  python driver/infer.py --backend sim --package build/lenet5_binary_Pynq-Z1/deploy
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # its parts beside it: the package's folder on the board, driver/ here
from infer_backends import check_board, open_accelerator, run_overlay, run_sim  # noqa: E402,F401  (the API)
from infer_errors import InferError  # noqa: E402
from infer_package import build_folder, load_package  # noqa: E402


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--package", type=Path, default=HERE,
                   help="deployment package folder (settings.json, package.json, data/, bitfile/)")
    p.add_argument("--backend", choices=["board", "sim", "emulated"], default="board",
                   help="board: the FPGA through pynq; sim: the build's dataflow graph in simulation; emulated: "
                        "the board code path on an emulated pynq backed by the simulator")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="board and emulated: seconds one batch may take before the run is declared stalled")
    p.add_argument("--any-board", action="store_true",
                   help="board: run although $BOARD (set by PYNQ images) names another board than the package's")
    p.add_argument("--batch", type=int, help="images per accelerator call, the DMA buffer size (board and emulated; "
                                          "default 100)")
    p.add_argument("-n", "--images", type=int, default=0, help="first N test images; 0: all in the package")
    p.add_argument("--bitfile", type=Path, help="bitfile (default PACKAGE/bitfile/finn-accel.bit; .hwh beside it)")
    p.add_argument("--build", type=Path, metavar="DIR",
                   help="sim and emulated: the build folder the package came from (default: the folder holding "
                        "the package, build/NAME for build/NAME/deploy)")
    p.add_argument("--sim-mode", choices=["python", "rtlsim"],
                   help="simulation used by --backend sim / emulated (default python)")
    p.add_argument("--out", type=Path, help="JSON report (default PACKAGE/report_<backend>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def progress(total, enabled):
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit="img", disable=not enabled)
    except ImportError:  # board images may lack tqdm
        class Bar:
            def __init__(self):
                self.n = 0

            def update(self, k):
                self.n += k
                if enabled:
                    print(f"\r{self.n}/{total} images", end="", file=sys.stderr, flush=True)

            def __enter__(self):
                return self

            def __exit__(self, *a):
                if enabled:
                    print(file=sys.stderr)
        return Bar()


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    pkg = args.package.resolve()
    try:
        if args.sim_mode and args.backend == "board":
            raise InferError("--sim-mode chooses the simulation of --backend sim / emulated; on the board there is "
                             "none: drop --sim-mode")
        if args.batch is not None and args.backend == "sim":
            raise InferError("--batch sizes the DMA buffers of the board and emulated backends; --backend sim runs "
                             "without them: drop --batch")
        args.sim_mode, args.batch = args.sim_mode or "python", args.batch if args.batch is not None else 100
        if args.batch <= 0:
            raise InferError(f"--batch must be positive, got {args.batch}")
        if not args.timeout > 0:
            raise InferError(f"--timeout must be a positive number of seconds, got {args.timeout}")

        if args.images < 0:
            raise InferError(f"-n takes N >= 0 images (0: all in the package), got {args.images}")
        out = args.out or pkg / f"report_{args.backend}.json"
        if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):  # before the inference, not after
            raise InferError(f"the report {out} cannot be written ({out.parent} is not a folder you can write to): "
                             f"give --out a file in one")
        settings, info, x, y = load_package(pkg, args.images)
        args.batch = min(args.batch, len(x))
        bitfile = (args.bitfile or pkg / "bitfile" / "finn-accel.bit").resolve()
        build = build_folder(pkg, args.build) if args.backend != "board" else None
        with progress(len(x), not args.no_progress) as bar:
            if args.backend == "sim":
                top1, total = run_sim(pkg, build, len(x), args.sim_mode, bar)
                latency = None
            else:  # open_accelerator puts this folder on sys.path for accel.py
                if args.backend == "board" and not args.any_board:
                    check_board(info.get("board"), os.environ.get("BOARD"))
                accel = open_accelerator(pkg, settings, bitfile, args.batch, args.backend == "emulated", args.sim_mode,
                                         args.timeout, build)
                from accel import AccelError  # beside this file (open_accelerator put it on the path)
                try:
                    top1, total, latency = run_overlay(accel, x, args.batch, bar)
                except AccelError as e:
                    raise InferError(str(e)) from None
    except InferError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    report = {"backend": args.backend, "model": info.get("model"), "board": info.get("board"),
              "images": int(len(x)), "batch": args.batch, "accuracy_pct": float(100 * (top1 == y).mean()),
              "correct": int((top1 == y).sum()), "seconds": round(total, 3),
              "images_per_s": round(len(x) / total, 1),
              "latency_ms_batch1": None if latency is None else round(1000 * latency, 3),
              "estimated_fps": info.get("estimated_fps"),
              "note": {"board": "measured on the FPGA, including host-side packing",
                       "sim": f"{args.sim_mode} simulation on the host: speed says nothing of the FPGA",
                       "emulated": "board code path on an emulated pynq; speed is the simulator's"}[args.backend]}
    line = (f"{report['images']} images: accuracy {report['accuracy_pct']:.2f}%  {report['images_per_s']} images/s  "
            + (f"latency {report['latency_ms_batch1']} ms (batch 1)  " if latency is not None else "")
            + f"[{args.backend}]")
    try:
        out.write_text(json.dumps(report, indent=2))
    except OSError as e:  # the result is printed all the same, then where it could not go
        print(line)
        print(f"error: the report could not be written to {out} ({e.strerror or e}); the result is above: give "
              f"--out a file in a folder you can write to", file=sys.stderr)
        return 2
    print(f"{line} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
