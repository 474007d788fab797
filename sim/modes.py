"""The simulation modes over a loaded build: python (the exact batched executor), finn (FINN's own execution,
image by image, in worker processes), and the mixed rtlsim/cppsim run that takes each layer to its simulator."""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .load import Build, SimError

_RUNNER = None


def _init_worker(build_dir: str):
    global _RUNNER
    from graph.execute import StageRunner
    b = Build.load(Path(build_dir))
    _RUNNER = StageRunner(b.child, b.parent, engine="finn")


def _run_chunk(images: np.ndarray) -> np.ndarray:
    return _RUNNER.run(images)[0]


def run_finn(build: Build, images: np.ndarray, workers: int = 2, chunk: int = 50) -> np.ndarray:
    """FINN's own execution, image by image, spread over processes."""
    chunks = [images[i:i + chunk] for i in range(0, len(images), chunk)]
    out = []
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                             initargs=(str(build.folder.root),)) as pool, \
            tqdm(total=len(images), desc="finn sim", unit="img", disable=None) as bar:
        for res in pool.map(_run_chunk, chunks):
            out.append(res)
            bar.update(len(res))
    return np.concatenate(out)


def run_python(build: Build, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    from graph.execute import StageRunner
    runner = StageRunner(build.child, build.parent, batch_size=batch_size)
    with tqdm(total=len(images), desc="python sim", unit="img", disable=None) as bar:
        return runner.run(images, progress=bar.update)[0]


def run_graph(build: Build, images: np.ndarray, mode: str = "python", workers: int = 1, work: Path | None = None,
              log=lambda *a: None, batch_size: int | None = None) -> tuple[np.ndarray, list]:
    """The one place the accelerator graph runs: (n, C, H, W) pixels -> top-1 per image and, in mixed mode,
    per-layer reports. python: batched exact kernels; finn: FINN's execution (in this process, or spread over
    `workers` processes); rtlsim / cppsim / auto: layer by layer, each layer in its mode (layer_modes)."""
    if mode == "finn":
        if workers <= 1:
            from graph.execute import StageRunner
            return StageRunner(build.child, build.parent, engine="finn").run(images)[0], []
        return run_finn(build, images, workers=workers), []
    modes = layer_modes(build, mode)
    if set(modes.values()) == {"python"}:
        return run_python(build, images, batch_size), []
    log(f"mixed-mode simulation of {len(images)} images: "
        + ", ".join(f"{m} {sum(v == m for v in modes.values())}" for m in ("rtlsim", "cppsim", "python")))
    return run_mixed(build, images, modes, work or build.folder.sim / "work", log)


# --- mixed mode (rtlsim / cppsim / python per layer) -------------------------------------------

@dataclass
class LayerReport:
    name: str
    mode: str
    bit_exact_vs_python: bool | None = None
    mismatched_images: list = field(default_factory=list)
    cycles_per_image: float | None = None
    first_output_cycles: int | None = None
    estimated_cycles: int | None = None
    compile_s: float | None = None
    run_s: float | None = None      # the simulator's time for all images (rtlsim: with and without stalls)
    stall_pct: int | None = None
    note: str | None = None


def layer_modes(build: Build, mode: str) -> dict:
    """Which mode runs each layer; rtlsim needs an RTL layer, cppsim an HLS layer with finn-hlslib."""
    from .cppsim import cppsim_available
    modes = {}
    for node in build.child.graph.node:
        rtl, hls = node.op_type.endswith("_rtl"), node.op_type.endswith("_hls")
        if mode in ("python", "finn"):
            modes[node.name] = "python"
        elif mode == "rtlsim":
            modes[node.name] = "rtlsim" if rtl else "python"
        elif mode == "cppsim":
            modes[node.name] = "cppsim" if hls else "python"
        else:  # auto: RTL in Verilator, HLS in cppsim where it can be built, else Python
            modes[node.name] = "rtlsim" if rtl else ("cppsim" if hls and cppsim_available() else "python")
    return modes


def run_mixed(build: Build, images: np.ndarray, modes: dict, work: Path, log=print) -> tuple[np.ndarray, list]:
    """Layer by layer over all images; returns top-1 per image and per-layer reports. Every layer's output is
    also computed by the python mode (the batched exact kernels), the reference a simulated layer must match."""
    from graph.batched import BatchedGraph
    from graph.execute import StageRunner

    from .verilator import hw_to_python_order, pack_input, unpack_output, words_per_image
    runner = StageRunner(build.child, build.parent)
    kernels = {node.name: fn for node, fn, _ in BatchedGraph(build.child, fuse=False).plan}
    acts = np.concatenate([runner._pre(runner.to_graph_layout(images[i:i + runner.batch_size]))
                           for i in range(0, len(images), runner.batch_size)])
    n = len(acts)
    est = build.estimates.get("layers", {})
    compiled = _compile_rtl_layers(build, modes, n, work)
    cpp_model, cpp_failed, cpp_compile_s = None, {}, {}
    if "cppsim" in modes.values():
        from .cppsim import compile_cppsim
        cpp_layers = [k for k, v in modes.items() if v == "cppsim"]
        cpp_model, cpp_failed, cpp_compile_s = compile_cppsim(build, work, cpp_layers)
        if len(cpp_failed) == sum(v == "cppsim" for v in modes.values()):
            raise SimError("cppsim: no HLS layer compiled against the configured finn-hlslib; first error: "
                           + next(iter(cpp_failed.values())))
        for name, err in cpp_failed.items():  # the report names each fallback and its compiler error
            modes[name] = "python"
            log(f"  {name}: cppsim did not compile ({err}); this layer runs in python")
    reports = []
    for node in build.child.graph.node:
        mode = modes[node.name]
        rep = LayerReport(node.name, mode, estimated_cycles=est.get(node.name, {}).get("cycles"))
        if node.name in cpp_failed:
            rep.note = "cppsim did not compile: " + cpp_failed[node.name]
        ref = np.concatenate([kernels[node.name](acts[i:i + runner.batch_size])[0]
                              for i in range(0, n, runner.batch_size)])
        if mode == "rtlsim":
            layer, rep.compile_s = compiled[node.name]
            inst = layer.inst
            t0 = time.time()
            n_out = words_per_image(inst, "out") * n
            packed = pack_input(inst, acts[:, None])
            words, _, _ = layer.run(packed, n_out)  # random valid/ready stalls
            rep.stall_pct = layer.stall
            got = np.asarray(hw_to_python_order(inst, unpack_output(inst, words, n))).reshape(ref.shape)
            free, cycles, first = layer.run(packed, n_out, stall_pct=0)  # cycles without stalls
            if free != words:
                raise SimError(f"{node.name}: RTL output depends on stalls (AXI-stream protocol problem)")
            rep.cycles_per_image, rep.first_output_cycles = cycles / n, first
            rep.run_s = round(time.time() - t0, 2)
            log(f"  {node.name:34s} rtlsim  bit-exact {_compare(rep, got, ref)} ({layer.stall}% stalls)  "
                f"{cycles / n:9.0f} cycles/image (FINN estimate {rep.estimated_cycles})  compile {rep.compile_s} s")
        elif mode == "cppsim":
            from .cppsim import CppsimLayer
            layer = CppsimLayer(cpp_model, next(c for c in cpp_model.graph.node if c.name == node.name))
            t0, rep.compile_s = time.time(), cpp_compile_s.get(node.name)
            got = np.concatenate([layer(acts[i:i + CPPSIM_BATCH]) for i in tqdm(
                range(0, n, CPPSIM_BATCH), desc=f"{node.name} (cppsim)", leave=False, disable=None)])
            rep.run_s = round(time.time() - t0, 2)
            log(f"  {node.name:34s} cppsim  bit-exact {_compare(rep, got.reshape(ref.shape), ref)}  "
                f"{n / max(rep.run_s, 1e-9):.1f} images/s  compile {rep.compile_s} s")
        else:
            got = ref
        acts = got.reshape(ref.shape)
        reports.append(rep)
    return acts.reshape(n, -1)[:, 0].astype(np.int64), reports


CPPSIM_BATCH = 2000  # images per run of a layer's cppsim program (bounds its input and output files)


def _compare(rep: LayerReport, got: np.ndarray, ref: np.ndarray) -> bool:
    bad = np.nonzero((got != ref).reshape(len(ref), -1).any(1))[0]
    rep.bit_exact_vs_python, rep.mismatched_images = not len(bad), [int(i) for i in bad]
    return rep.bit_exact_vs_python


def _compile_rtl_layers(build: Build, modes: dict, n_images: int, work: Path) -> dict:
    """Verilates every RTL layer up front, two at a time (each compile is a separate process)."""
    from qonnx.custom_op.registry import getCustomOp

    from .verilator import RtlLayer, words_per_image
    layers = {}
    for node in build.child.graph.node:
        if modes[node.name] == "rtlsim":
            inst = getCustomOp(node)
            layers[node.name] = RtlLayer(inst, work)

    def comp(item):
        name, layer = item
        n_in = words_per_image(layer.inst, "in") * n_images
        n_out = words_per_image(layer.inst, "out") * n_images
        return name, (layer, round(layer.compile(n_in, n_out), 1))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(comp, layers.items()))


# --- entry ---------------------------------------------------------------------------------------
