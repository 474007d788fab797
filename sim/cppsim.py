"""cppsim: FINN's own C++ simulation of HLS layers (PrepareCppSim + CompileCppSim).

FINN compiles its generated C++ against finn-hlslib and Vitis HLS's headers and simulation
libraries. finn-hlslib is found as the datasets are: $FINN_HLSLIB, else FINN's dependency folder (filled
by `finn deps update`, which needs GitHub), else `../shared/finn-hlslib` beside the checkout; it is on no
package registry and never part of this repository. With Vitis HLS ($XILINX_HLS) FINN's standard cppsim
runs. Without it, sim/hls_headers.py assembles an include folder from the hls4ml wheel's open-source
ap_types and the project's stand-ins.

Batched: FINN's generated program simulates one image; the copy compiled here repeats its compute part
(or scales its numReps) for as many images as the input file holds (FINN_SIM_IMAGES), so one run of each
layer's program takes the whole test set.
"""
from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common.paths import SHARED

from .hls_headers import STANDINS, ap_types_dir, standin_hls_root

BESIDE_CHECKOUT = SHARED / "finn-hlslib"


def hlslib_dir() -> Path | None:
    cands = [os.environ.get("FINN_HLSLIB", "")]
    try:
        from finn.util.settings import get_settings
        cands.append(str(get_settings().finn_deps / "finn-hlslib"))
    except Exception:  # settings not initialised: only the variable counts
        pass
    cands.append(str(BESIDE_CHECKOUT))
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
    from hw_build.deps import pins
    return pins()["git_deps"]["finn-hlslib"]["commit"][:7]


def has_vector_pool(lib: Path) -> bool:
    """finn-hlslib 8d979e2 pools hls::vector words (MaxPoolFunction<vector>, Pool_batch<ISIZE, K>); older
    checkouts pool scalars (MaxPoolFunction<T, size>) and get the project's pool_compat.hpp instead."""
    f = lib / "pool.hpp"
    return f.is_file() and not re.search(r"template<typename T, unsigned size>\s*class MaxPoolFunction", f.read_text())


def hlslib_note(lib: Path) -> str:
    added = [n for n, ok in (("unflatten()", has_unflatten(lib)), ("the vector pool API", has_vector_pool(lib)))
             if not ok]
    return str(lib) + (f" (older than finn-plus's pinned {pinned_hlslib_commit()}: {' and '.join(added)} from "
                       f"sim/hls_standins)" if added else "")


def hlslib_for_build(lib: Path, work: Path) -> Path:
    """The finn-hlslib folder FINN compiles against: lib itself, or for an older checkout a folder of links
    to it in which flatten.hpp also includes the project's unflatten() and pool.hpp is the project's
    pool_compat.hpp. lib is never modified."""
    replace = {}
    if not has_unflatten(lib):
        replace["flatten.hpp"] = f'#include "{lib / "flatten.hpp"}"\n#include "finn_sim_unflatten.hpp"\n'
    if not has_vector_pool(lib):
        replace["pool.hpp"] = (STANDINS / "pool_compat.hpp").read_text()
    if not replace:
        return lib
    overlay = work / "finn-hlslib-overlay"
    if overlay.exists():
        shutil.rmtree(overlay)
    overlay.mkdir(parents=True)
    for f in lib.iterdir():
        if f.name not in replace:
            (overlay / f.name).symlink_to(f)
    shutil.copyfile(STANDINS / "unflatten.hpp", overlay / "finn_sim_unflatten.hpp")
    for name, text in replace.items():
        (overlay / name).write_text(text)
    return overlay


def vitis_hls_headers_problem() -> str | None:
    """$XILINX_HLS set to a folder without Vitis HLS's headers (include/ap_int.h): named, not blamed on
    finn-hlslib when the compile then fails."""
    hls = os.environ.get("XILINX_HLS")
    if hls and not (Path(hls) / "include" / "ap_int.h").is_file():
        return (f"$XILINX_HLS={hls} has no include/ap_int.h (Vitis HLS's headers): source Vitis HLS's "
                f"settings64.sh, or unset XILINX_HLS to use the hls4ml headers")
    return None


def cppsim_available() -> bool:
    if hlslib_dir() is None or shutil.which("g++") is None or vitis_hls_headers_problem():
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
    if vitis_hls_headers_problem():
        missing.append(vitis_hls_headers_problem())
    if shutil.which("g++") is None:
        missing.append("g++")
    return ("cppsim cannot run here: missing " + "; and ".join(missing)
            + ". Use --mode rtlsim (Verilator, no Xilinx tools) or --mode python meanwhile.")


def compile_cppsim(build, work: Path, names: list) -> tuple[object, dict]:
    """FINN's PrepareCppSim, then each layer's own compile (two at a time) on a copy of the dataflow model.
    Returns the model (exec_mode cppsim), {layer: compiler error} for layers that did not compile and
    {layer: compile seconds}."""

    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from qonnx.custom_op.registry import getCustomOp
    lib = hlslib_dir()
    older = "" if has_unflatten(lib) and has_vector_pool(lib) else (
        f" [{lib} predates the finn-hlslib commit finn-plus pins ({pinned_hlslib_commit()}), whose API FINN "
        f"generates this layer's code for]")
    deps = work / "finn_deps"
    deps.mkdir(parents=True, exist_ok=True)
    link = deps / "finn-hlslib"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(hlslib_for_build(lib, work))

    def compile_one(node):
        t0 = time.time()
        try:
            batch_program(Path(getCustomOp(node).get_nodeattr("code_gen_dir_cppsim")))
            getCustomOp(node).compile_singlenode_code()
            return node.name, None, round(time.time() - t0, 1)
        except Exception as e:  # the compiler's own first error says why
            text = str(e) + "\n" + str(getattr(e, "output", "") or "") + str(getattr(e, "stderr", "") or "")
            first = next((line.strip() for line in text.splitlines() if "error:" in line), text.strip()[:300])
            return node.name, re.sub(r"^\S*/", "", first) + older, None  # file:line:col: error: ..., no folder
    with cppsim_settings(deps, work):
        model = copy.deepcopy(build.child).transform(SetExecMode("cppsim")).transform(PrepareCppSim())
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(compile_one, [n for n in model.graph.node if n.name in names]))
    return model, {name: err for name, err, _ in results if err}, {name: t for name, _, t in results}


NO_INLINE = "-fno-builtin -fno-inline"


@contextlib.contextmanager
def cppsim_settings(deps: Path, work: Path):
    """What cppsim changes of FINN and the process, for the compile only, restored after (a build later in the
    same process, the sweep's or the tests', sees FINN as it was): FINN's deps folder (where its compile reads
    finn-hlslib), $XILINX_HLS (the hls4ml headers standing in for Vitis HLS's when it is not installed),
    $FINN_CUSTOM_HLS, and FINN's compile command (inlining_allowed)."""
    import finn
    from finn.util.settings import get_settings
    settings, saved_deps = get_settings(), get_settings().finn_deps
    saved_env = {k: os.environ.get(k) for k in ("XILINX_HLS", "FINN_CUSTOM_HLS")}
    os.environ.setdefault("FINN_CUSTOM_HLS", str(Path(finn.__file__).parent / "custom_hls"))
    if not os.environ.get("XILINX_HLS"):
        os.environ["XILINX_HLS"] = str(standin_hls_root(work))
    settings.finn_deps = deps
    try:
        with inlining_allowed():
            yield
    finally:
        settings.finn_deps = saved_deps
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def inlining_allowed():
    """FINN's cppsim compile command without its `-fno-builtin -fno-inline` (and quiet): with the ap_int arithmetic
    inlined the programs compute the same outputs (tests compare every layer with the python mode) about
    4x faster (measured on LeNet5's SIMD-800 XNOR layer: 0.64 -> 0.15 s per image)."""
    from finn.util.basic import CppBuilder
    original = CppBuilder.append_includes

    def append_includes(self, flags):  # and -w: finn-hlslib's deprecation warnings are not the user's to fix
        original(self, "-w" if flags.strip() == NO_INLINE else flags)
    CppBuilder.append_includes = append_includes
    try:
        yield
    finally:
        CppBuilder.append_includes = original


IMAGES_FN = """#include <cstdlib>
#include <string>
#include <vector>
// project patch (sim/cppsim.py, batched cppsim): the image count of this run, and a weight stream read
// once and repeated (FINN's reader packs the file again on every repetition, numReps times per image)
static unsigned finn_sim_images() {
  const char *s = std::getenv("FINN_SIM_IMAGES");
  return s ? (unsigned)std::atoi(s) : 1u;
}
static std::string finn_sim_file(char const *dir, char const *name) {  // FINN_SIM_DIR: where this run's files are
  const char *d = std::getenv("FINN_SIM_DIR");
  return std::string(d ? d : dir) + "/" + name;
}
template <typename PackedT, typename ElemT, typename NpyT>
void finn_sim_npy2apintstream_repeated(char const *path, hls::stream<PackedT> &out, bool reverse_inner, size_t reps) {
  hls::stream<PackedT> once;
  npy2apintstream<PackedT, ElemT, NpyT>(path, once, reverse_inner, 1);
  std::vector<PackedT> words;
  while (!once.empty()) words.push_back(once.read());
  for (size_t r = 0; r < reps; r++)
    for (auto const &w : words) out.write(w);
}
"""


def batch_program(code_gen_dir: Path) -> None:
    """Lets FINN's generated cppsim program take FINN_SIM_IMAGES images in one run: a layer with numReps
    (the MVAU) repeats numReps per image; any other repeats its compute part once per image. The output
    file's leading dimension becomes the image count. FINN's compute code itself is unchanged."""
    for cpp in code_gen_dir.glob("execute_*.cpp"):
        lines = cpp.read_text().splitlines()
        main = next(i for i, l in enumerate(lines) if l.startswith("int main"))
        reps = [i for i, l in enumerate(lines) if re.match(r"\s*#define numReps\s+\d+\s*$", l)]
        reads = [i for i, l in enumerate(lines) if re.search(r"\bnpy2(apint|vector)stream<", l)]
        writes = [i for i, l in enumerate(lines) if re.search(r"\b(apint|vector)stream2npy<", l)]
        if not reads or len(writes) != 1 or not re.search(r"\{\s*1\s*,", lines[writes[0]]):
            raise RuntimeError(f"{cpp.name}: not the layout of FINN's cppsim program; cannot batch it")
        lines[writes[0]] = re.sub(r"\{\s*1\s*,", "{finn_sim_images(),", lines[writes[0]], count=1)
        for i in reads + writes:  # the image files (not the weights) from FINN_SIM_DIR when set
            lines[i] = re.sub(r'"([^"]*)/((input_0|output_0)\.npy)"', r'finn_sim_file("\1", "\2").c_str()', lines[i])
        if reps:
            n = lines[reps[0]].split()[-1]
            lines[reps[0]] = f"#define numReps ({n} * finn_sim_images())"
            for i in reads:  # weight streams, repeated numReps times
                lines[i] = re.sub(r"\bnpy2apintstream<(.*), numReps\);",
                                  r"finn_sim_npy2apintstream_repeated<\1, numReps);", lines[i])
        else:
            lines.insert(writes[0], "}")
            lines.insert(reads[-1] + 1, "for (unsigned finn_sim_i = 0; finn_sim_i < finn_sim_images(); finn_sim_i++) {")
        lines.insert(main, IMAGES_FN)
        cpp.write_text("\n".join(lines) + "\n")


class CppsimLayer:
    """One compiled HLS layer, run once on a whole batch as FINN's execute_node runs it on one image: the
    input folded to the stream layout (bipolar stored as binary), the output file reshaped back (binary to
    bipolar). Weight streams (input_1.npy) are those PrepareCppSim wrote from the model."""

    def __init__(self, model, node):
        from qonnx.core.datatype import DataType
        from qonnx.custom_op.registry import getCustomOp
        self.inst = inst = getCustomOp(node)
        self.dir = Path(inst.get_nodeattr("code_gen_dir_cppsim"))
        self.exe = inst.get_nodeattr("executable_path")
        self.bipolar_in = inst.get_input_datatype(0) == DataType["BIPOLAR"]
        self.bipolar_out = inst.get_output_datatype(0) == DataType["BIPOLAR"]
        self.pool = node.op_type.startswith("Pool")
        dynamic = [n for n in node.input[1:] if n and model.get_initializer(n) is None]
        if dynamic:
            raise RuntimeError(f"{node.name}: batched cppsim takes layers with one streamed input; {dynamic} too")

    def __call__(self, x: np.ndarray, processes: int = 2) -> np.ndarray:
        """All images of x through the layer's program, split over `processes` runs side by side."""
        n = len(x)
        v = (x + 1) / 2 if self.bipolar_in else x
        if self.pool:
            v = python_to_hw_window_order(self.inst, v)
        v = np.ascontiguousarray(v, np.float32).reshape((n,) + tuple(self.inst.get_folded_input_shape(0))[1:])
        parts = [p for p in np.array_split(np.arange(n), max(1, min(processes, os.cpu_count() or 1, n))) if len(p)]
        runs = []
        for k, idx in enumerate(parts):
            d = self.dir / f"run_{k}"
            d.mkdir(exist_ok=True)
            np.save(d / "input_0.npy", v[idx])
            env = {**os.environ, "FINN_SIM_IMAGES": str(len(idx)), "FINN_SIM_DIR": str(d)}
            runs.append((d, subprocess.Popen([self.exe], cwd=self.dir, env=env, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True)))
        out = []
        for d, proc in runs:
            err = proc.communicate()[1]
            if proc.returncode:
                raise RuntimeError(f"{self.inst.onnx_node.name}: cppsim program failed ({proc.returncode}): "
                                   f"{err.strip()[-300:]}")
            out.append(np.load(d / "output_0.npy"))
        y = np.concatenate(out).reshape((n,) + tuple(self.inst.get_normal_output_shape(0))[1:])
        return 2 * y - 1 if self.bipolar_out else y


def python_to_hw_window_order(inst, x: np.ndarray) -> np.ndarray:
    """Pooling windows as the hardware streams them into Pool_hls, channel-fold-major (C/PE, K, PE), from
    the (K, C/PE, PE) order of FINN's Python models (the inverse of verilator.hw_to_python_order)."""
    k = int(np.prod(inst.get_nodeattr("KernelSize")))
    pe, c = inst.get_nodeattr("PE"), inst.get_nodeattr("Channels")
    lead = x.shape[:-1]
    return x.reshape(*lead, k, c // pe, pe).swapaxes(-3, -2).reshape(*lead, k * c)
