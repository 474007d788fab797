"""Checkpoint to FINN dataflow accelerator: a list of small steps ``step(model, ctx) -> model``.

FINN's own builder steps do the work; the project's steps (export, top-1, fit check) are named
and listed in STEPS. After every stage that changes the graph's function, real test images run
through it and are compared with the Brevitas model (verify.py).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .boards import Board, get_board
from . import finn_env
from .finn_env import ToolMissing, require_tools

ROOT = Path(__file__).resolve().parent.parent


class BuildError(RuntimeError):
    """A build that cannot go on; the message names the stage, the problem and the fix."""


class DoesNotFit(BuildError):
    pass


@dataclass
class HwConfig:
    checkpoint: Path
    board: str = "Pynq-Z1"
    target_fps: int | None = None
    folding: Path | None = None
    clock_ns: float = 10.0
    out: Path | None = None
    verify_images: int = 100          # -1: the whole test set, 0: no verification
    bitstream: bool = False
    data_dir: str = ""
    mvau_wwidth_max: int = 1024
    stop_after: str | None = None     # a step name: end the flow there

    def model_id(self, train_cfg) -> str:
        width = "" if train_cfg.width_scale == 1 else f"_w{train_cfg.width_scale:g}"
        return f"{train_cfg.model}_{precision_name(train_cfg)}{width}"


def precision_name(cfg) -> str:
    if not cfg.binarize:
        return "float"
    if cfg.tern_weights or cfg.tern_acts:
        return "ternary"
    return "binary"


@dataclass
class Context:
    """What steps share: the configs, the board, the output folder, the verifier."""
    hw: HwConfig
    board: Board
    out: Path
    finn_cfg: object
    train_cfg: object = None
    brevitas_model: object = None
    verifier: object = None
    parent: object = None          # dataflow parent model, once partitioned
    timings: dict = field(default_factory=dict)
    estimates: dict = field(default_factory=dict)


# --- steps ---------------------------------------------------------------------------------

def step_export(model, ctx: Context):
    """Checkpoint -> QONNX of the FINN-compilable twin, pixel input annotated UINT8."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from training.checkpoint import export_qonnx
    path = export_qonnx(ctx.brevitas_model, ctx.train_cfg, ctx.out / "model.onnx")
    model = ModelWrapper(str(path))
    model.set_tensor_datatype(model.graph.input[0].name, DataType["UINT8"])
    return model


def step_add_top1(model, ctx: Context):
    """The accelerator returns the top-1 class (FINN's LabelSelect), as finn-examples' builds do."""
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.insert_topk import InsertTopK
    model = model.transform(InsertTopK(k=1))
    model = model.transform(InferShapes())
    return model.transform(InferDataTypes())


def _finn_step(name):
    def step(model, ctx: Context):
        import finn.builder.build_dataflow_steps as steps
        return getattr(steps, name)(model, ctx.finn_cfg)
    step.__name__ = name
    step.__doc__ = f"FINN's {name}."
    return step


def step_streamline(model, ctx: Context):
    """FINN's step_streamline, then the project's BinaryPadToNHWC (FINN leaves bipolar -1 padding
    unconverted when it moves activations to the {0, 1} XNOR encoding)."""
    import finn.builder.build_dataflow_steps as steps
    from .transforms import BinaryPadToNHWC
    model = steps.step_streamline(model, ctx.finn_cfg)
    return model.transform(BinaryPadToNHWC())


def step_round_xnor_thresholds(model, ctx: Context):
    """Project transformation RoundAndClipXnorThresholds: FINN needs integer XNOR-MVAU thresholds in the
    popcount range."""
    from .transforms import RoundAndClipXnorThresholds
    return model.transform(RoundAndClipXnorThresholds())


def step_create_dataflow_partition(model, ctx: Context):
    """FINN's partition; the parent (layout nodes the host runs) is kept for verification and the driver."""
    import finn.builder.build_dataflow_steps as steps
    from qonnx.core.modelwrapper import ModelWrapper
    try:
        child = steps.step_create_dataflow_partition(model, ctx.finn_cfg)
    except Exception as e:
        raise BuildError(f"FINN cannot map this model to hardware layers: {e}. The layers FINN can build are "
                         f"listed in the README (binary/ternary conv and FC, max-pool, BN+sign as thresholds)") from None
    ctx.parent = ModelWrapper(str(Path(ctx.finn_cfg.output_dir) / "intermediate_models" / "dataflow_parent.onnx"))
    return child


def step_folding(model, ctx: Context):
    """PE/SIMD: a folding JSON (FINN's format) when given, else FINN's SetFolding to the target FPS."""
    import finn.builder.build_dataflow_steps as steps
    if ctx.finn_cfg.folding_config_file is not None:
        model = steps.step_apply_folding_config(model, ctx.finn_cfg)
        _check_folding_covers(model, ctx.finn_cfg.folding_config_file)
        return model
    return steps.step_target_fps_parallelization(model, ctx.finn_cfg)


def _check_folding_covers(model, path) -> None:
    names = set(json.loads(Path(path).read_text())) - {"Defaults"}
    hw = {n.name for n in model.graph.node if n.domain.startswith("finn.custom_op.fpgadataflow")}
    missing = sorted(n for n in hw - names if not n.startswith(("FMPadding", "LabelSelect", "StreamingDataWidth")))
    unknown = sorted(names - hw)
    bad = _indivisible_folding(model)
    if unknown or missing or bad:
        raise BuildError(f"folding file {path} does not match this model: unknown layers {unknown}, "
                         f"layers without an entry {missing}, folding that does not divide the layer {bad}. "
                         f"Start from finn/report/auto_folding_config.json of a --target-fps build")


def _indivisible_folding(model) -> list:
    """Layers whose PE/SIMD do not divide the dimension they fold."""
    from qonnx.custom_op.registry import getCustomOp
    pairs = (("MW", "SIMD"), ("MH", "PE"), ("IFMChannels", "SIMD"), ("NumChannels", "SIMD"), ("Channels", "PE"),
             ("NumChannels", "PE"))
    bad = []
    for node in model.graph.node:
        if not node.domain.startswith("finn.custom_op.fpgadataflow"):
            continue
        inst = getCustomOp(node)
        attrs = {a.name for a in node.attribute}
        for dim, fold in pairs:
            if dim in attrs and fold in attrs and inst.get_nodeattr(dim) % inst.get_nodeattr(fold):
                bad.append(f"{node.name} {fold}={inst.get_nodeattr(fold)} vs {dim}={inst.get_nodeattr(dim)}")
    return bad


def step_estimates(model, ctx: Context):
    """FINN's estimate reports, then the project's fit check, summary and plots."""
    import finn.builder.build_dataflow_steps as steps
    model = steps.step_generate_estimate_reports(model, ctx.finn_cfg)
    from .estimates import check_fit, collect, plot
    ctx.estimates = collect(Path(ctx.finn_cfg.output_dir) / "report", ctx.board, ctx.hw.clock_ns, model)
    report = ctx.out / "report"
    report.mkdir(parents=True, exist_ok=True)
    (report / "estimates.json").write_text(json.dumps(ctx.estimates, indent=2))
    plot(ctx.estimates, report)
    check_fit(ctx.estimates, ctx.board)
    return model


def step_driver_settings(model, ctx: Context):
    """FINN's PYNQ driver settings (settings.json: shapes, data types, packing) without Vivado.

    FINN's step_make_driver reads the IODMA-wrapped graph that ZynqBuild makes inside Vivado; this
    replays that wrapping (InsertIODMA, InsertDWC, SpecializeLayers, Floorplan, partition) on a copy
    and runs FINN's MakePYNQDriver on it. The accelerator model itself is unchanged.
    """
    import copy

    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from finn.transformation.fpgadataflow.floorplan import Floorplan
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.make_driver import MakePYNQDriver
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.util.basic import pynq_native_port_width
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    m = copy.deepcopy(model).transform(InferDataLayouts())
    for t in (InsertIODMA(pynq_native_port_width[ctx.board.finn_board]), InsertDWC(),
              SpecializeLayers(ctx.board.part), Floorplan(),
              CreateDataflowPartition(partition_model_dir=str(ctx.out / "finn" / "iodma_partitions"))):
        m = m.transform(t).transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())
    _name_dma_instances(m)
    m = m.transform(MakePYNQDriver("zynq-iodma", "FINNDMAOverlay", clk_period_ns=ctx.hw.clock_ns,
                                   board=ctx.board.finn_board))
    from .package import write_package
    write_package(ctx, Path(m.get_metadata_prop("pynq_driver_dir")) / "settings.json")
    return model


def _name_dma_instances(model) -> None:
    """Instance names as MakeZYNQProject gives them in the block design (idma0, odma0, ...)."""
    from qonnx.custom_op.registry import getCustomOp
    counts = {"idma": 0, "odma": 0}
    for node in model.get_nodes_by_op_type("StreamingDataflowPartition"):
        kind = ("idma" if model.find_producer(node.input[0]) is None else
                "odma" if not model.find_consumers(node.output[0]) else None)
        name = node.name
        if kind:
            name, counts[kind] = f"{kind}{counts[kind]}", counts[kind] + 1
        getCustomOp(node).set_nodeattr("instance_name", name)


def _tool_step(name, tools=("vitis_hls", "vivado")):
    finn_step = _finn_step(name)

    def step(model, ctx: Context):
        require_tools(name, tools)
        return finn_step(model, ctx)
    step.__name__ = name
    step.__doc__ = f"FINN's {name} (needs {', '.join(tools)})."
    return step


# (name, function, verify after it). The order is the flow.
STEPS = [
    ("export", step_export, True),
    ("qonnx_to_finn", _finn_step("step_qonnx_to_finn"), True),
    ("tidy_up", _finn_step("step_tidy_up"), True),
    ("add_top1", step_add_top1, True),
    ("streamline", step_streamline, True),
    ("convert_to_hw", _finn_step("step_convert_to_hw"), True),
    ("round_xnor_thresholds", step_round_xnor_thresholds, True),
    ("create_dataflow_partition", step_create_dataflow_partition, True),
    ("specialize_layers", _finn_step("step_specialize_layers"), True),
    ("folding", step_folding, False),
    ("minimize_bit_width", _finn_step("step_minimize_bit_width"), True),
    ("estimates", step_estimates, False),
    ("hw_codegen", _finn_step("step_hw_codegen"), True),
    ("driver_settings", step_driver_settings, False),
]
TOOL_STEPS = [
    ("hw_ipgen", _tool_step("step_hw_ipgen", ("vitis_hls",)), False),
    ("set_fifo_depths", _tool_step("step_set_fifo_depths"), False),
    ("create_stitched_ip", _tool_step("step_create_stitched_ip", ("vivado",)), False),
    ("measure_rtlsim_performance", _tool_step("step_measure_rtlsim_performance", ("vivado",)), False),
    ("synthesize_bitfile", _tool_step("step_synthesize_bitfile", ("vivado",)), False),
    ("make_driver", _tool_step("step_make_driver", ("vivado",)), False),
    ("deployment_package", _tool_step("step_deployment_package", ("vivado",)), False),
    ("board_files", lambda model, ctx: _board_files(model, ctx), False),
]


def _board_files(model, ctx: Context):
    """Bitfile and hwh from FINN's deployment package into the project's deploy/ folder."""
    from .package import add_bitfile
    add_bitfile(ctx)
    return model


# --- running ---------------------------------------------------------------------------------

def default_out(hw: HwConfig, train_cfg) -> Path:
    return ROOT / "build" / f"{hw.model_id(train_cfg)}_{get_board(hw.board).name}"


def shipped_folding(hw: HwConfig, train_cfg) -> Path | None:
    p = ROOT / "configs" / "folding" / f"{hw.model_id(train_cfg)}_{get_board(hw.board).name}.json"
    return p if p.is_file() else None


def make_finn_cfg(hw: HwConfig, board: Board, out: Path, folding: Path | None):
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType, ShellFlowType
    outputs = [DataflowOutputType.ESTIMATE_REPORTS]
    if hw.bitstream:
        outputs += [DataflowOutputType.STITCHED_IP, DataflowOutputType.RTLSIM_PERFORMANCE,
                    DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER,
                    DataflowOutputType.DEPLOYMENT_PACKAGE]
    return DataflowBuildConfig(
        output_dir=str(out / "finn"), synth_clk_period_ns=hw.clock_ns, board=board.finn_board,
        fpga_part=board.part, shell_flow_type=ShellFlowType.VIVADO_ZYNQ, generate_outputs=outputs,
        target_fps=None if folding else (hw.target_fps or 10_000), folding_config_file=folding,
        mvau_wwidth_max=hw.mvau_wwidth_max, save_intermediate_models=True, verify_steps=[])


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build(hw: HwConfig, log=print) -> Context:
    """Runs the flow; returns the context (estimates, verification, timings)."""
    from training.checkpoint import load, predict
    from training.data import make_splits

    board = get_board(hw.board)
    model_t, train_cfg, src_ck = load(hw.checkpoint)
    if not train_cfg.binarize:
        raise BuildError(f"{src_ck} is a float model; FINN builds quantized nets (binarize: true)")
    out = Path(hw.out) if hw.out else default_out(hw, train_cfg)
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / f"checkpoint{src_ck.suffix}"  # its own copy (.pt or compact .npz): sim and driver compare with it
    if src_ck.resolve() != ck_path.resolve():
        shutil.copyfile(src_ck, ck_path)
    finn_env.setup(out / "finn_tmp")
    folding = Path(hw.folding) if hw.folding else (None if hw.target_fps else shipped_folding(hw, train_cfg))
    if folding is not None and not folding.is_file():
        raise BuildError(f"folding file {folding} not found")
    ctx = Context(hw, board, out, make_finn_cfg(hw, board, out, folding), train_cfg, model_t)
    log(f"building {src_ck} for {board.name} ({board.part}) at {1000 / hw.clock_ns:.0f} MHz -> {out}")
    log("folding: " + (f"{folding}" if folding else f"automatic to {ctx.finn_cfg.target_fps} FPS"))

    if hw.verify_images:
        n = 0 if hw.verify_images < 0 else hw.verify_images
        s = make_splits(train_cfg.dataset, hw.data_dir or train_cfg.data_dir, test_limit=n, train_limit=1)
        logits = predict(model_t, s.x_test).double().numpy()
        from .verify import Verifier
        ctx.verifier = Verifier(s.x_test.numpy(), np.arange(len(s.x_test)), logits, out / "verification")

    steps = STEPS + (TOOL_STEPS if hw.bitstream else [])
    names = [n for n, _, _ in steps]
    if hw.stop_after:
        if hw.stop_after not in names:
            raise BuildError(f"--stop-after {hw.stop_after!r} is not a step; steps: {', '.join(names)}")
        steps = steps[:names.index(hw.stop_after) + 1]
    (out / "intermediate").mkdir(exist_ok=True)
    state = {"source_checkpoint": str(src_ck), "checkpoint": str(ck_path.resolve()),
             "checkpoint_sha256": _sha256(ck_path), "board": board.name,
             "clock_ns": hw.clock_ns, "folding": str(folding) if folding else None,
             "target_fps": ctx.finn_cfg.target_fps, "done": []}
    model = None
    try:
        for i, (name, fn, verify) in enumerate(steps):
            t0 = time.time()
            model = fn(model, ctx)
            ctx.timings[name] = round(time.time() - t0, 2)
            model.save(str(out / "intermediate" / f"{i:02d}_{name}.onnx"))
            state["done"].append(name)
            log(f"[{i + 1:2d}/{len(steps)}] {name:28s} {ctx.timings[name]:6.1f} s")
            if verify and ctx.verifier is not None:
                partitioned = ctx.parent is not None
                r = ctx.verifier.check(name, model, ctx.parent if partitioned else None)
                ctx.timings[f"verify_{name}"] = r.seconds
    except ToolMissing as e:
        state["stopped_at"] = name
        log(f"\nstopped before {name}: {e}")
        raise
    finally:
        state["timings_s"] = ctx.timings
        (out / "build_state.json").write_text(json.dumps(state, indent=2))
        if ctx.verifier is not None and ctx.verifier.results:
            log("\n" + ctx.verifier.summary())
    if ctx.estimates:
        from .estimates import summary
        text = summary(ctx.estimates, ctx.board)
        (out / "report" / "summary.txt").write_text(text + _timing_text(ctx.timings))
        log(text)
    log(_timing_text(ctx.timings))
    return ctx


def _timing_text(timings: dict) -> str:
    steps = {k: v for k, v in timings.items() if not k.startswith("verify_")}
    ver = sum(v for k, v in timings.items() if k.startswith("verify_"))
    return (f"time: {sum(steps.values()):.1f} s in FINN steps, {ver:.1f} s verifying, "
            f"{sum(steps.values()) + ver:.1f} s in all\n")
