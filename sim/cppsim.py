"""cppsim: FINN's own C++ simulation of HLS layers (PrepareCppSim + CompileCppSim).

FINN compiles its generated C++ against finn-hlslib and Vitis HLS's headers and simulation
libraries. finn-hlslib comes from FINN's dependency folder (filled by `finn deps update`, which needs
GitHub) or from $FINN_HLSLIB; it is on no package registry and never part of this repository.
With Vitis HLS ($XILINX_HLS) FINN's standard cppsim runs. Without it, an include folder is assembled
in the build directory from the hls4ml wheel's open-source ap_types and the project's stand-ins
(sim/hls_standins/README.md).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

STANDINS = Path(__file__).resolve().parent / "hls_standins"


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


def _hlslib_recent(lib: Path) -> bool:
    """FINN 1.6's generated code calls flatten()/unflatten() of finn-hlslib's flatten.hpp (finn-plus pins
    finn-hlslib 8d979e2; older checkouts lack unflatten)."""
    f = lib / "flatten.hpp"
    return f.is_file() and "unflatten" in f.read_text()


def ap_types_dir() -> Path | None:
    spec = importlib.util.find_spec("hls4ml")  # located, not imported (its imports are heavy)
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
    return d if (d / "ap_int.h").is_file() else None


def cppsim_available() -> bool:
    if hlslib_dir() is None or shutil.which("g++") is None:
        return False
    if not _hlslib_recent(hlslib_dir()):
        return False
    return bool(os.environ.get("XILINX_HLS")) or ap_types_dir() is not None


def cppsim_requirements() -> str:
    missing = []
    lib = hlslib_dir()
    if lib is None:
        missing.append("finn-hlslib (on no package registry: clone https://github.com/Xilinx/finn-hlslib, check out "
                       "the commit finn-plus pins in finn/interface/external_dependencies.yaml or a later one with "
                       "flatten.hpp, and set FINN_HLSLIB=/path/to/finn-hlslib; or run 'finn deps update' where "
                       "GitHub is reachable)")
    elif not _hlslib_recent(lib):
        missing.append(f"a newer finn-hlslib: {lib} lacks unflatten() in flatten.hpp, which FINN 1.6's generated "
                       f"code calls; check out the commit finn-plus pins (8d979e2, in "
                       f"finn/interface/external_dependencies.yaml)")
    if not os.environ.get("XILINX_HLS") and ap_types_dir() is None:
        missing.append("HLS headers: Vitis HLS ($XILINX_HLS), or the hls4ml wheel's ap_types (make setup installs it)")
    if shutil.which("g++") is None:
        missing.append("g++")
    return ("cppsim cannot run here: missing " + "; and ".join(missing)
            + ". Use --mode rtlsim (Verilator, no Xilinx tools) or --mode python meanwhile.")


def standin_hls_root(work: Path) -> Path:
    """A folder shaped like $XILINX_HLS (include/, lnx64/...) for FINN's compile script."""
    root = work / "hls_standin"
    inc, csim, fpo = root / "include", root / "lnx64" / "lib" / "csim", root / "lnx64" / "tools" / "fpo_v7_1"
    stamp = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(STANDINS.glob("*.h")))).hexdigest()
    if (root / ".ready").is_file() and (root / ".ready").read_text() == stamp:
        return root
    for d in (inc, csim, fpo):
        d.mkdir(parents=True, exist_ok=True)
    src = ap_types_dir()
    for f in src.iterdir():
        dst = inc / f.name
        if f.is_dir():
            shutil.copytree(f, dst, dirs_exist_ok=True)
        else:
            shutil.copyfile(f, dst)
    base = (inc / "ap_int_base.h").read_text()
    (inc / "ap_int_base.h").write_text(base.replace(
        "static const int width = _AP_W;", "static const int width = _AP_W;\n  static const bool sign_flag = _AP_S;", 1))
    with open(inc / "ap_int.h", "a") as f:
        f.write("\n#include <hls_half.h>\n")
    for f in STANDINS.glob("*.h"):
        shutil.copyfile(f, inc / f.name)
    for lib in (csim / "libhlsmc++-GCC46.so", fpo / "libIp_floating_point_v7_1_bitacc_cmodel.so",
                fpo / "libgmp.so", fpo / "libmpfr.so"):
        subprocess.run(["gcc", "-shared", "-x", "c", "-", "-o", str(lib)], input="", text=True, check=True)
    (root / ".ready").write_text(stamp)
    return root


def compile_cppsim(build, work: Path):
    """FINN's PrepareCppSim + CompileCppSim on a copy of the dataflow model; returns it (exec_mode cppsim)."""
    import copy

    import finn
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from finn.util.settings import get_settings
    lib = hlslib_dir()
    deps = work / "finn_deps"
    deps.mkdir(parents=True, exist_ok=True)
    link = deps / "finn-hlslib"
    if not link.exists():
        link.symlink_to(lib)
    get_settings().finn_deps = deps
    os.environ.setdefault("FINN_CUSTOM_HLS", str(Path(finn.__file__).parent / "custom_hls"))
    if not os.environ.get("XILINX_HLS"):
        os.environ["XILINX_HLS"] = str(standin_hls_root(work))
    model = copy.deepcopy(build.child)
    return model.transform(SetExecMode("cppsim")).transform(PrepareCppSim()).transform(CompileCppSim())


def run_cppsim_layer(model, node_name: str, acts: list) -> np.ndarray:
    """One compiled HLS layer over all images."""
    from finn.core.onnx_exec import execute_onnx
    target = next(n for n in model.graph.node if n.name == node_name)
    return np.stack([execute_onnx(model, {target.input[0]: a}, return_full_exec_context=True,
                                  start_node=target, end_node=target)[target.output[0]] for a in acts])
