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
import re
import shutil
import subprocess
from pathlib import Path


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


def has_unflatten(lib: Path) -> bool:
    """FINN 1.6's generated code calls unflatten() of finn-hlslib's flatten.hpp (finn-plus pins finn-hlslib
    8d979e2); older checkouts lack it and get the project's own (hls_standins/unflatten.hpp)."""
    f = lib / "flatten.hpp"
    return f.is_file() and "unflatten" in f.read_text()


def pinned_hlslib_commit() -> str:
    """The finn-hlslib commit finn-plus generates code for, from its own dependency list."""
    import yaml
    import finn
    deps = yaml.safe_load((Path(finn.__file__).parent / "interface" / "external_dependencies.yaml").read_text())
    return deps["git_deps"]["finn-hlslib"]["commit"][:7]


def hlslib_note(lib: Path) -> str:
    return str(lib) + ("" if has_unflatten(lib) else
                       f" (older than finn-plus's pinned {pinned_hlslib_commit()}: unflatten() added from "
                       f"sim/hls_standins)")


def hlslib_for_build(lib: Path, work: Path) -> Path:
    """The finn-hlslib folder FINN compiles against: lib itself, or for an older checkout a folder of links
    to it whose flatten.hpp also includes the project's unflatten(). lib is never modified."""
    if has_unflatten(lib):
        return lib
    overlay = work / "finn-hlslib-overlay"
    if overlay.exists():
        shutil.rmtree(overlay)
    overlay.mkdir(parents=True)
    for f in lib.iterdir():
        if f.name != "flatten.hpp":
            (overlay / f.name).symlink_to(f)
    shutil.copyfile(STANDINS / "unflatten.hpp", overlay / "finn_sim_unflatten.hpp")
    (overlay / "flatten.hpp").write_text(f'#include "{lib / "flatten.hpp"}"\n#include "finn_sim_unflatten.hpp"\n')
    return overlay


def ap_types_dir() -> Path | None:
    spec = importlib.util.find_spec("hls4ml")  # located, not imported (its imports are heavy)
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
    return d if (d / "ap_int.h").is_file() else None


def cppsim_available() -> bool:
    if hlslib_dir() is None or shutil.which("g++") is None:
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


def compile_cppsim(build, work: Path, names: list) -> tuple[object, dict]:
    """FINN's PrepareCppSim, then each layer's own compile (two at a time) on a copy of the dataflow model.
    Returns the model (exec_mode cppsim) and {layer: compiler error} for layers that did not compile."""
    import copy
    from concurrent.futures import ThreadPoolExecutor

    import finn
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from finn.util.settings import get_settings
    from qonnx.custom_op.registry import getCustomOp
    lib = hlslib_dir()
    older = "" if has_unflatten(lib) else (f" [{lib} predates the finn-hlslib commit finn-plus pins "
                                           f"({pinned_hlslib_commit()}), whose API FINN generates this layer's code for]")
    deps = work / "finn_deps"
    deps.mkdir(parents=True, exist_ok=True)
    link = deps / "finn-hlslib"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(hlslib_for_build(lib, work))
    os.environ.setdefault("FINN_CUSTOM_HLS", str(Path(finn.__file__).parent / "custom_hls"))
    if not os.environ.get("XILINX_HLS"):
        os.environ["XILINX_HLS"] = str(standin_hls_root(work))

    def compile_one(node):
        try:
            getCustomOp(node).compile_singlenode_code()
            return node.name, None
        except Exception as e:  # the compiler's own first error says why
            text = str(e) + "\n" + str(getattr(e, "output", "") or "") + str(getattr(e, "stderr", "") or "")
            first = next((line.strip() for line in text.splitlines() if "error:" in line), text.strip()[:300])
            return node.name, re.sub(r"^\S*/", "", first) + older  # file:line:col: error: ..., no folder
    settings, saved = get_settings(), get_settings().finn_deps
    settings.finn_deps = deps  # FINN's compile reads finn-hlslib from here; restored after
    try:
        model = copy.deepcopy(build.child).transform(SetExecMode("cppsim")).transform(PrepareCppSim())
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(compile_one, [n for n in model.graph.node if n.name in names]))
    finally:
        settings.finn_deps = saved
    return model, {name: err for name, err in results if err}
