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
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class InferError(RuntimeError):
    """Bad input (exit 2) or missing hardware or pynq (exit 3); the message names the problem and the fix.
    The project's error contract (common/errors.py), kept here so that driver/ needs nothing else."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


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


def _read_json(path: Path, key: str = "") -> dict:
    """A package file: UTF-8 JSON holding a mapping (with `key`), else one line naming the file (the project's
    read_user_file, mirrored: driver/ runs alone on the board)."""
    fix = "copy the package again from the build's deploy/ folder (make build / make bitstream)"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InferError(f"{path} is not valid JSON text ({' '.join(str(e).split())[:120]}); {fix}") from None
    if not isinstance(data, dict) or (key and not isinstance(data.get(key), dict)):
        raise InferError(f"{path} is not a deployment package's {path.name}{f' (no {key})' if key else ''}; {fix}")
    return data


def load_package(pkg: Path, n: int):
    for f in ("settings.json", "data/test_x.npy", "data/test_y.npy"):
        if not (pkg / f).is_file():
            raise InferError(f"{pkg / f} not found: --package must be a deployment package "
                             f"(build/<model>_<board>/deploy, made by 'make build' / 'make bitstream')")
    settings = _read_json(pkg / "settings.json", "driver_information")["driver_information"]
    info = _read_json(pkg / "package.json") if (pkg / "package.json").is_file() else {}
    x, y = np.load(pkg / "data" / "test_x.npy"), np.load(pkg / "data" / "test_y.npy")
    if n:
        x, y = x[:n], y[:n]
    want = tuple(settings["io_shape_dict"]["ishape_normal"][0][1:])
    if x.shape[1:] != want or x.dtype != np.uint8:
        raise InferError(f"test images are {x.dtype}{list(x.shape[1:])} but the accelerator takes uint8{list(want)} "
                         f"(NHWC): the data does not fit this model")
    if len(x) != len(y):
        raise InferError(f"{len(x)} images but {len(y)} labels in {pkg / 'data'}")
    return settings, info, x, y


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


def build_folder(pkg: Path, given: Path | None) -> Path:
    """The build folder the simulation backends run: given, or the one holding the package."""
    build = (given or pkg.parent).resolve()
    if not (build / "build_state.json").is_file():
        raise InferError(f"{build} is not a build folder (no build_state.json): --backend sim and emulated run the "
                         f"build's graph; give --build DIR (the folder python -m hw_build wrote)")
    return build


def open_accelerator(pkg: Path, settings: dict, bitfile: Path, batch: int, emulated: bool, sim_mode: str = "python",
                     timeout_s: float = 60.0, build: Path | None = None):
    """driver/accel.py's Accelerator (numpy + pynq only); emulated: on the stand-in pynq of sim/pynq_standin,
    whose fabric is a simulator process in the project's environment."""
    if emulated:
        root = HERE.parent
        if not (root / "sim" / "fabric.py").is_file():
            raise InferError("--backend emulated runs from the project checkout: python driver/infer.py ...")
        sys.path.insert(0, str(root / "sim" / "pynq_standin"))
        os.environ["BNN_FABRIC"] = json.dumps({"argv": [sys.executable, "-m", "sim.fabric", str(build),
                                                        "--mode", sim_mode],
                                               "cwd": str(root)})
    else:
        for f in (bitfile, bitfile.with_suffix(".hwh")):
            if not f.is_file():
                raise InferError(f"{f} not found: build the bitstream with 'make bitstream' (needs Vivado) and copy "
                                 f"the whole deploy/ folder to the board; without a bitstream, --backend sim runs "
                                 f"the same package on the build's simulation")
    try:
        import pynq  # noqa: F401
    except ImportError:
        raise InferError("pynq is not importable: run on a PYNQ board image with its Python (PYNQ 3.x: "
                         "'source /etc/profile.d/pynq_venv.sh' as root), or use --backend sim", 3) from None
    sys.path.insert(0, str(HERE))
    from accel import Accelerator, AccelError
    try:
        return Accelerator(bitfile, settings, pkg / "runtime_weights", batch_size=batch, timeout_s=timeout_s)
    except AccelError as e:
        raise InferError(str(e)) from None
    except (MemoryError, RuntimeError) as e:
        if "allocate" in str(e).lower() or isinstance(e, MemoryError):
            raise InferError(f"could not allocate DMA buffers for a batch of {batch} images ({e}); "
                             f"use a smaller --batch") from None
        if "No Devices Found" in str(e):
            raise InferError("no FPGA found by pynq: run on a PYNQ board (Pynq-Z1/Z2, ZCU104, KV260, AUP-ZU3) "
                             "as root, or use --backend sim", 3) from None
        raise


def check_board(package_board: str | None, running: str | None) -> None:
    """PYNQ images name their board in $BOARD; a bitfile for another part would not configure (or worse)."""
    if package_board and running and package_board.lower().replace("-", "") != running.lower().replace("-", ""):
        raise InferError(f"this package was built for {package_board}, and this board says it is {running} ($BOARD): "
                         f"build for it (make bitstream BOARD={running}), or pass --any-board if the boards share "
                         f"the part and pinout")


def run_overlay(accel, x, batch, bar):
    """Top-1 per image; the last partial batch runs on a smaller DMA transfer of the same buffers."""
    out = np.empty(len(x), dtype=np.int64)
    t0 = time.time()
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        if len(xb) < batch:
            xb = np.concatenate([xb, np.zeros((batch - len(xb),) + xb.shape[1:], xb.dtype)])
        res = accel.execute(xb)
        out[i:i + batch] = np.asarray(res).reshape(batch, -1)[: min(batch, len(x) - i), 0]
        bar.update(min(batch, len(x) - i))
    total = time.time() - t0
    accel.batch_size = 1
    lat = []
    for k in range(min(10, len(x))):
        t = time.time()
        accel.execute(x[k:k + 1])
        lat.append(time.time() - t)
    return out, total, float(np.median(lat))


def run_sim(pkg: Path, build_dir: Path, n: int, mode: str, bar):
    root = HERE.parent
    if not (root / "sim" / "run.py").is_file():
        raise InferError("--backend sim runs from the project checkout: python driver/infer.py --backend sim ...")
    sys.path.insert(0, str(root))
    from sim.run import Build, run_graph
    build = Build.load(build_dir)
    x = np.load(pkg / "data" / "test_x.npy")[: n or None].transpose(0, 3, 1, 2)
    t0 = time.time()
    top1 = run_graph(build, x, mode)[0]
    bar.update(len(x))
    return top1, time.time() - t0


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
