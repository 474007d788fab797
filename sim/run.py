"""Test-set inference of a hardware build's folded dataflow graph, without hardware.

python: every layer's function computed exactly on whole batches of images (graph/batched.py), bit for
        bit what FINN's Python model of the layer computes (tested node by node).
finn:   FINN's own Python execution (execute_onnx), image by image: the reference python mode is tested
        against; about 20-70x slower (spread over --workers processes).
rtlsim: every RTL-specialized layer runs as RTL in Verilator (random stalls on), the HLS-only layers
        in the python mode, layer by layer over all images (mixed mode); each RTL layer's output is
        compared bit-exactly with the python mode's and its cycles with FINN's estimate.
cppsim: HLS layers compiled from FINN's generated C++ (needs finn-hlslib; see cppsim.py).
auto:   the most faithful mode available for each layer.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from common.faults import fault_point

from .load import Build, SimError, check_images_fit, reference_and_images, resolve_batch_size  # noqa: F401  (the API)
from .modes import layer_modes, run_graph  # noqa: F401  (the API)
from .report import make_report, summary

MODES = ("python", "finn", "rtlsim", "cppsim", "auto")


@dataclass
class SimOptions:
    """How a simulation runs, apart from what it simulates: its report folder (default BUILD/sim), processes
    of the finn mode, images per batch of the python mode (default: sized to the memory)."""
    out: Path | None = None
    workers: int = 2
    batch_size: int | None = None


def simulate(build_dir: Path, mode: str = "auto", n: int = 1000, data_dir: str = "",
             options: SimOptions | None = None, log=print) -> dict:
    opts = options or SimOptions()
    out, workers, batch_size = opts.out, opts.workers, opts.batch_size
    if mode not in MODES:
        raise SimError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    build = Build.load(build_dir)
    from common.files import require_destination
    from common.folder_lock import FolderLock
    if out:  # a folder the user names: never written into unless a simulation made it (BUILD/sim is the build's)
        markers = ("sim.log",) + tuple(f"report_{m}.json" for m in MODES)
        FolderLock(Path(out), "simulation output folder", markers=markers).check_ours()
    out = Path(out) if out else build.folder.sim
    require_destination(out, "simulation output folder", "--out")
    batch_size = resolve_batch_size(build, mode, batch_size)
    images, labels, ref_top1, cfg = reference_and_images(build, n, data_dir)
    check_images_fit(build, images)
    modes = layer_modes(build, mode)
    from .cppsim import cppsim_available, cppsim_requirements
    if mode == "cppsim" and not cppsim_available():
        raise SimError(cppsim_requirements())
    out.mkdir(parents=True, exist_ok=True)
    from common.files import logged
    log = logged(log, out / "sim.log")
    log(f"simulating {build.folder.root} in {mode} mode on {len(images)} test images")
    fault_point("sim:start")
    t0 = time.time()
    top1, layers = run_graph(build, images, mode, min(workers, os.cpu_count() or 1), out / "work", log, batch_size)
    wall = time.time() - t0
    report = make_report(build, mode, (images, labels, ref_top1, top1), modes, layers, (wall, batch_size))
    (out / f"report_{mode}.json").write_text(json.dumps(report, indent=2))
    log(summary(report))
    return report
