"""Where the images run: the board (accel.py on pynq), the emulated board (accel.py on the stand-in pynq) or
the build's simulation."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from infer_errors import InferError

HERE = Path(__file__).resolve().parent


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
