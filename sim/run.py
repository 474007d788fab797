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
import resource
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import UserError
from hw_build.build_folder import BuildFolder

MODES = ("python", "finn", "rtlsim", "cppsim", "auto")


class SimError(UserError):
    """Bad input to a simulation (no build, wrong dataset, missing simulator); names the fix."""


@dataclass
class Build:
    """What a hardware build left in its folder, loaded for simulation."""
    folder: BuildFolder
    state: dict
    child: object
    parent: object
    estimates: dict

    @classmethod
    def load(cls, build_dir: Path) -> "Build":
        folder = BuildFolder(build_dir)
        state = folder.read_state()
        if state is None:
            raise SimError(f"{folder.root} holds no hardware build (no build_state.json). Run "
                           f"'make build MODEL=... BOARD=...' or 'python -m hw_build' first")
        if "hw_codegen" not in state.get("done", []):
            raise SimError(f"the build in {folder.root} stopped before hw_codegen ({state.get('done', [])[-1:]}); "
                           f"run it again to completion")
        if not folder.checkpoint_unchanged(state):
            raise SimError(f"the checkpoint of the build in {folder.root} ({folder.own_checkpoint(state)}) is "
                           f"missing or changed since the build; build again")
        from hw_build import finn_env
        finn_env.setup(folder.finn_tmp)
        return cls(folder, state, folder.load_model(folder.last_stage("hw_codegen"), state),
                   folder.load_model(folder.parent_model, state), folder.estimates())


def reference_and_images(build: Build, n: int, data_dir: str = ""):
    """Test images, labels and the Brevitas model's top-1 for the build's checkpoint."""
    from training.checkpoint import load, predict
    from training.data import DATASETS, make_splits
    model, cfg, _ = load(build.folder.own_checkpoint(build.state))
    s = make_splits(cfg.dataset, data_dir or cfg.data_dir, train_limit=1, test_limit=max(n, 0))
    expected = build.parent.get_tensor_shape(build.parent.graph.input[0].name)
    chw = DATASETS[cfg.dataset].chw
    if tuple(expected[1:]) not in (chw, chw[1:] + (chw[0],)):
        raise SimError(f"the build takes {expected}, which is not {cfg.dataset}")
    return s.x_test.numpy(), s.y_test.numpy(), predict(model, s.x_test).argmax(1).numpy(), cfg


def check_images_fit(build: Build, images: np.ndarray) -> None:
    shape = tuple(build.parent.get_tensor_shape(build.parent.graph.input[0].name))
    c, h, w = images.shape[1:]
    if (1, c, h, w) != shape and (1, h, w, c) != shape:
        raise SimError(f"images of shape {images.shape[1:]} do not fit the accelerator's input {shape[1:]} "
                       f"(a dataset of another model?)")


# --- python and finn modes ------------------------------------------------------------------------

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

def resolve_batch_size(build: Build, mode: str, batch_size: int | None) -> int:
    """The batch the python kernels run (1 for finn mode): the one given, checked against the memory available
    now before any work, or sized to BATCH_MEMORY."""
    if mode == "finn":
        return 1
    if batch_size is not None and batch_size < 1:
        raise SimError(f"--batch-size must be at least 1, got {batch_size}")
    from graph.batched import BatchedGraph
    from graph.execute import default_batch_size
    graph = BatchedGraph(build.child)
    if batch_size is None:
        return default_batch_size(graph)
    need, avail = graph.peak_bytes_per_image() * batch_size, available_memory()
    if avail and need > 0.8 * avail:
        raise SimError(f"--batch-size {batch_size} needs about {need / 2**30:.1f} GiB for this accelerator's largest "
                       f"layer tensors, more than the {avail / 2**30:.1f} GiB available; use --batch-size "
                       f"{max(1, int(0.8 * avail * batch_size / need))} or less (or leave it out: sized automatically)")
    return batch_size


def available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


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
    out = Path(out) if out else build.folder.sim
    from common.files import require_destination
    from common.folder_lock import FolderLock  # a folder the project did not make is never written into
    FolderLock(out, "simulation output folder", markers=tuple(f"report_{m}.json" for m in MODES)).check_ours()
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
    t0 = time.time()
    top1, layers = run_graph(build, images, mode, min(workers, os.cpu_count() or 1), out / "work", log, batch_size)
    wall = time.time() - t0
    report = {
        "build": str(build.folder.root), "checkpoint": str(build.folder.own_checkpoint(build.state)), "mode": mode,
        "images": int(len(images)),
        "accuracy_pct": float(100 * (top1 == labels).mean()),
        "brevitas_accuracy_pct": float(100 * (ref_top1 == labels).mean()),
        "agreement_with_brevitas_pct": float(100 * (top1 == ref_top1).mean()),
        "disagreeing_images": [int(i) for i in np.nonzero(top1 != ref_top1)[0][:100]],
        "layer_modes": modes, "layers": [vars(r) for r in layers],
        "all_simulated_layers_bit_exact": all(r.bit_exact_vs_python for r in layers if r.mode != "python"),
        "wall_s": round(wall, 1), "images_per_s": round(len(images) / wall, 1),
        "batch_size": batch_size,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    cpp_run_s = sum(r.run_s or 0 for r in layers if r.mode == "cppsim")
    if any(r.mode == "cppsim" for r in layers):
        from .cppsim import hlslib_dir, hlslib_note
        report["finn_hlslib"] = hlslib_note(hlslib_dir())
        report["cppsim_run_s"] = round(cpp_run_s, 2)  # the HLS layers' programs alone, compile excluded
        report["cppsim_images_per_s"] = round(len(images) / max(cpp_run_s, 0.01), 1)
    sim_cycles = [r.cycles_per_image for r in layers if r.cycles_per_image]
    if sim_cycles:
        report["max_rtl_cycles_per_image"] = max(sim_cycles)
    (out / f"report_{mode}.json").write_text(json.dumps(report, indent=2))
    log(summary(report))
    return report


def summary(r: dict) -> str:
    lines = [f"{r['mode']} simulation of {r['build']}: {r['images']} images in {r['wall_s']} s "
             f"({r['images_per_s']} images/s, batch {r.get('batch_size')}, peak memory {r.get('peak_rss_mib')} MiB)",
             f"  accuracy {r['accuracy_pct']:.2f}% (Brevitas model {r['brevitas_accuracy_pct']:.2f}%), "
             f"top-1 agreement with Brevitas {r['agreement_with_brevitas_pct']:.2f}%"]
    if r["layers"]:
        lines.append(f"  {'layer':34s} {'mode':7s} {'bit-exact':9s} {'cycles/img':>10s} {'estimate':>9s} "
                     f"{'compile s':>9s} {'run s':>7s}")
        for l in r["layers"]:
            be = "" if l["bit_exact_vs_python"] is None else str(l["bit_exact_vs_python"])
            cy = f"{l['cycles_per_image']:10.0f}" if l["cycles_per_image"] else " " * 10
            lines.append(f"  {l['name']:34s} {l['mode']:7s} {be:9s} {cy} {l['estimated_cycles'] or '':>9} "
                         f"{l.get('compile_s') or '':>9} {l.get('run_s') or '':>7}")
            if l.get("note"):
                lines.append(f"    {l['note']}")
        if r.get("finn_hlslib"):
            lines.append(f"  cppsim against finn-hlslib {r['finn_hlslib']}; the HLS layers' programs ran "
                         f"{r['cppsim_run_s']} s ({r['cppsim_images_per_s']} images/s, compile excluded)")
    return "\n".join(lines)
