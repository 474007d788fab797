"""cppsim: FINN's own C++ simulation of HLS layers (PrepareCppSim + CompileCppSim).

It compiles FINN's generated C++ against finn-hlslib and Vitis HLS's headers and libraries.
finn-hlslib is found in FINN's dependency folder (filled by `finn deps update`, which needs GitHub)
or at $FINN_HLSLIB; the HLS headers and libraries come from $XILINX_HLS (Vitis HLS).
"""
from __future__ import annotations

import os
from pathlib import Path


def hlslib_dir() -> Path | None:
    cands = [os.environ.get("FINN_HLSLIB", "")]
    try:
        from finn.util.settings import get_settings
        cands.append(str(get_settings().finn_deps / "finn-hlslib"))
    except Exception:  # settings not initialised: only the variable counts
        pass
    for c in cands:
        if c and (Path(c) / "mvau.hpp").is_file():
            return Path(c)
    return None


def cppsim_available() -> bool:
    return hlslib_dir() is not None and bool(os.environ.get("XILINX_HLS"))


def cppsim_requirements() -> str:
    have_lib, have_hls = hlslib_dir() is not None, bool(os.environ.get("XILINX_HLS"))
    missing = []
    if not have_lib:
        missing.append("finn-hlslib (not on any package registry: clone https://github.com/Xilinx/finn-hlslib "
                       "and set FINN_HLSLIB=/path/to/finn-hlslib, or run 'finn deps update' where GitHub is "
                       "reachable)")
    if not have_hls:
        missing.append("Vitis HLS headers and simulation libraries (source Vitis HLS's settings64.sh, "
                       "which sets XILINX_HLS)")
    return ("cppsim cannot run here: missing " + "; and ".join(missing)
            + ". Use --mode rtlsim (Verilator, no Xilinx tools) or --mode python meanwhile.")


def run_cppsim_layer(node, build, acts, work: Path):
    """One HLS layer over all images through FINN's cppsim."""
    if not cppsim_available():
        from .run import SimError
        raise SimError(cppsim_requirements())
    import copy

    import numpy as np
    from finn.core.onnx_exec import execute_onnx
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    model = copy.deepcopy(build.child)
    model = model.transform(SetExecMode("cppsim")).transform(PrepareCppSim()).transform(CompileCppSim())
    target = next(n for n in model.graph.node if n.name == node.name)
    return np.stack([execute_onnx(model, {target.input[0]: a}, return_full_exec_context=True,
                                  start_node=target, end_node=target)[target.output[0]] for a in acts])
