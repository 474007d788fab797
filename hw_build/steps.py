"""The flow's steps, each a small function ``step(model, ctx) -> model``, and the STEPS table.

FINN's own builder steps do the work; every deviation from FINN is a visible row here and a named
Transformation in transforms.py. Each row says whether real test images are compared with the Brevitas
model after the step (verify.py) and what the step leaves for later steps besides the model (`writes`: a
Context field, saved in the build folder, so that --start-step can restore it). Every other input of a
step is the model, the configs, the board or a file of the BuildFolder written by an earlier row.
"""
from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from common.files import write_json

from .boards import Board
from .build_folder import BuildFolder
from .config import HwConfig
from .errors import BuildError
from .finn_env import require_tools
from .tool_logs import ToolFailed, failure, finn_build_dir

if TYPE_CHECKING:  # the heavy imports are the steps' own
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from qonnx.core.modelwrapper import ModelWrapper
    from torch import nn

    from training.config import TrainConfig

    from .verify import Verifier


@dataclass
class Context:
    """What steps share: the configs, the board, the build folder, the verifier, and the two things
    steps hand on besides the model (parent, estimates: see the `writes` column of STEPS)."""
    hw: HwConfig
    board: Board
    folder: BuildFolder
    finn_cfg: DataflowBuildConfig
    train_cfg: TrainConfig
    brevitas_model: nn.Module
    verifier: Verifier | None = None
    parent: ModelWrapper | None = None   # written by create_dataflow_partition: the layout nodes the host runs
    estimates: dict = field(default_factory=dict)  # written by estimates: report/estimates.json
    timings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    name: str
    fn: Callable
    verify: bool = False   # compare real test images with the Brevitas model after it
    writes: str = ""       # the Context field it sets for later steps


def _read_parent(ctx: Context):
    return ctx.folder.load_model(ctx.folder.parent_model, ctx.folder.read_state())


# --start-step: how each Context field a step `writes` is read back from the build folder
RESTORERS = {
    "parent": _read_parent,
    "estimates": lambda ctx: ctx.folder.estimates(),
}


def restore(ctx: Context, field_name: str, step: str = "") -> None:
    """--start-step: a Context field an earlier run's step wrote, read back from the build folder; a field
    nobody taught to read back is refused by name (a later step would run on a value that is not there)."""
    if field_name not in RESTORERS:
        raise BuildError(f"--start-step cannot restore '{field_name}', which step {step} writes for later steps: "
                         f"build from the start (without --start-step)")
    setattr(ctx, field_name, RESTORERS[field_name](ctx))


def step_export(model, ctx: Context):
    """Checkpoint -> QONNX of the FINN-compilable twin, pixel input annotated UINT8."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    from training.export import export_qonnx
    path = export_qonnx(ctx.brevitas_model, ctx.train_cfg, ctx.folder.model_onnx)
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


def step_binary_pad(model, ctx: Context):
    """Project transformation BinaryPadToNHWC: FINN's streamlining leaves bipolar -1 padding unconverted
    when it moves activations to the {0, 1} XNOR encoding."""
    from .transforms import BinaryPadToNHWC
    return model.transform(BinaryPadToNHWC())


def step_round_xnor_thresholds(model, ctx: Context):
    """Project transformation RoundAndClipXnorThresholds: FINN needs integer XNOR-MVAU thresholds in the
    popcount range."""
    from .transforms import RoundAndClipXnorThresholds
    return model.transform(RoundAndClipXnorThresholds())


def step_minimize_bit_width(model, ctx: Context):
    """FINN's step_minimize_bit_width, then the project transformation XnorPopcountAccumulator: FINN sizes
    XNOR-MVAU accumulators for a dot product, not the popcount finn-hlslib computes there."""
    import finn.builder.build_dataflow_steps as steps

    from .transforms import XnorPopcountAccumulator, xnor_thresholds
    thresholds = xnor_thresholds(model)
    return steps.step_minimize_bit_width(model, ctx.finn_cfg).transform(XnorPopcountAccumulator(thresholds))


def step_create_dataflow_partition(model, ctx: Context):
    """FINN's partition; the parent (layout nodes the host runs) is kept for verification and the driver."""
    import finn.builder.build_dataflow_steps as steps
    from finn.util.exception import FINNUserError
    from qonnx.core.modelwrapper import ModelWrapper
    try:
        child = steps.step_create_dataflow_partition(model, ctx.finn_cfg)
    except (FINNUserError, AssertionError) as e:
        if isinstance(e, AssertionError) and "cycle-free graph violated" not in str(e):
            raise  # FINN's own bug: its traceback stays
        raise BuildError(f"FINN cannot map this model to hardware layers: {e}. The layers FINN can build are "
                         f"listed in the README (binary/ternary conv and FC, max-pool, BN+sign as thresholds)"
                         ) from None
    ctx.parent = ModelWrapper(str(ctx.folder.parent_model))
    return child


def step_rtl_mvau(model, ctx: Context):
    """Project transformation SplitThresholdsForRtlMVAU for the layers that the specialize config (FINN's
    specialize_layers_config JSON) gives to MVAU_rtl: the 8-bit first layer onto DSPs instead of LUTs."""
    from .transforms import SplitThresholdsForRtlMVAU
    path = ctx.finn_cfg.specialize_layers_config_file
    if path is None:
        return model
    cfg = json.loads(Path(path).read_text())
    names = [n for n, v in cfg.items() if n.startswith("MVAU") and v.get("preferred_impl_style") == "rtl"]
    unknown = sorted(set(cfg) - {"Defaults"} - {n.name for n in model.graph.node})
    if unknown:
        raise BuildError(f"specialize config {path} names layers this model does not have: {unknown}; names are "
                         f"those of intermediate/*_create_dataflow_partition.onnx (MVAU_0, ...)")
    return model.transform(SplitThresholdsForRtlMVAU(names))


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
    rtl = [n for n in unknown if "_rtl_" in n]
    if rtl and _has_no_rtl_mvau(model):
        raise BuildError(f"folding file {path} names RTL layers {rtl} that this build made HLS: the folding was made "
                         f"with a specialize config (which layers are RTL); give it with --specialize FILE "
                         f"(e.g. the .specialize.json beside the shipped folding)")
    if unknown or missing or bad:
        raise BuildError(f"folding file {path} does not match this model: unknown layers {unknown}, "
                         f"layers without an entry {missing}, folding that does not divide the layer {bad}. "
                         f"Start from finn/report/auto_folding_config.json of a --target-fps build")


def _has_no_rtl_mvau(model) -> bool:
    """No layer of the model was given the RTL MVAU (the specialize config's work)."""
    return not any(n.op_type == "MVAU_rtl" for n in model.graph.node)


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
    ctx.estimates = collect(ctx.folder.finn_report, ctx.board, ctx.hw.clock_ns, model,
                            ctx.hw.max_utilization, ctx.hw.target_fps or ctx.finn_cfg.target_fps)
    write_json(ctx.folder.estimates_file, ctx.estimates)
    plot(ctx.estimates, ctx.folder.report)
    check_fit(ctx.estimates, ctx.board)
    return model


def step_driver_settings(model, ctx: Context):
    """FINN's PYNQ driver settings (settings.json: shapes, data types, packing; runtime_weights/) without
    Vivado: FINN's MakePYNQDriver on a copy prepared as the bitstream flow prepares the graph (minimal FIFOs
    as step_set_fifo_depths inserts them, IODMAs as ZynqBuild wraps it), its output kept in the build
    folder's driver_settings/ (step check_driver compares it with FINN's own after a bitstream build)."""
    from finn.transformation.fpgadataflow.make_driver import MakePYNQDriver

    from .transforms import InsertMinimalFIFOs, WrapWithIODMAs
    m = copy.deepcopy(model).transform(InsertMinimalFIFOs(ctx.board.part))
    m = m.transform(WrapWithIODMAs(ctx.board, ctx.folder.finn_out / "iodma_partitions"))
    m = m.transform(MakePYNQDriver("zynq-iodma", "FINNDMAOverlay", clk_period_ns=ctx.hw.clock_ns,
                                   board=ctx.board.finn_board))
    shutil.rmtree(ctx.folder.driver_settings, ignore_errors=True)
    shutil.copytree(m.get_metadata_prop("pynq_driver_dir"), ctx.folder.driver_settings)
    return model


def step_stitched_ip_io(model, ctx: Context):
    """Real test images and the Brevitas model's top-1 for FINN's stitched-IP rtlsim (stitched.py)."""
    from training.checkpoint import predict
    from training.data import make_splits

    from .stitched import stitched_images, write_io
    n = stitched_images(ctx.hw.verify_images)
    if n:
        s = make_splits(ctx.train_cfg.dataset, ctx.hw.data_dir or ctx.train_cfg.data_dir, test_limit=n, train_limit=1)
        write_io(ctx.folder, s.x_test.numpy(), predict(ctx.brevitas_model, s.x_test).argmax(1).numpy())
    return model


def step_check_stitched_ip(model, ctx: Context):
    """FINN's stitched-IP rtlsim verdicts: a mismatch stops the build before synthesis (stitched.py)."""
    from .stitched import check, stitched_images
    if stitched_images(ctx.hw.verify_images):
        check(ctx.folder)
    return model


def step_record_rtlsim(model, ctx: Context):
    """FINN's measured rtlsim throughput and FIFO depths into report/estimates.json (simulated)."""
    from .stitched import record
    ctx.estimates = record(ctx.folder)
    return model


def step_check_driver(model, ctx: Context):
    """After FINN's make_driver: its driver settings for the real build equal the package's (driver_check.py)."""
    from .driver_check import check_driver
    check_driver(ctx.folder.driver_settings, ctx.folder.finn_driver)
    return model


def step_package(model, ctx: Context):
    """The project's deployment package deploy/ (package.py): driver, settings, test data, runtime weights."""
    from .package import write_package
    write_package(ctx.folder, ctx.hw, ctx.train_cfg, ctx.board, ctx.estimates)
    return model


def _tool_step(name, tools=("vitis_hls", "vivado")):
    finn_step = _finn_step(name)

    def step(model, ctx: Context):
        require_tools(name, tools)
        if name != "step_hw_ipgen":
            require_hls_rtl(model, name.removeprefix("step_"), ctx.folder.root)
        since = time.time()
        try:
            return finn_step(model, ctx)
        except Exception as e:
            failed = failure(name.removeprefix("step_"), e, [finn_build_dir(), ctx.folder.finn_out], since,
                             ctx.folder.root)
            if failed is None:
                raise
            raise failed from e
    step.__name__ = name
    step.__doc__ = f"FINN's {name} (needs {', '.join(tools)})."
    return step


# The order is the flow.
STEPS = [
    Step("export", step_export, verify=True),
    Step("qonnx_to_finn", _finn_step("step_qonnx_to_finn"), verify=True),
    Step("tidy_up", _finn_step("step_tidy_up"), verify=True),
    Step("add_top1", step_add_top1, verify=True),
    # FINN's streamlining leaves a padded binary net computing with -1 in the {0, 1} encoding: verified
    # after binary_pad, which fixes that (the stage in between is wrong by FINN's design, not checked)
    Step("streamline", _finn_step("step_streamline")),
    Step("binary_pad", step_binary_pad, verify=True),
    Step("convert_to_hw", _finn_step("step_convert_to_hw"), verify=True),
    Step("round_xnor_thresholds", step_round_xnor_thresholds, verify=True),
    Step("create_dataflow_partition", step_create_dataflow_partition, verify=True, writes="parent"),
    Step("rtl_mvau", step_rtl_mvau, verify=True),
    Step("specialize_layers", _finn_step("step_specialize_layers"), verify=True),
    Step("folding", step_folding),
    Step("minimize_bit_width", step_minimize_bit_width, verify=True),
    Step("estimates", step_estimates, writes="estimates"),
    Step("hw_codegen", _finn_step("step_hw_codegen"), verify=True),
    Step("driver_settings", step_driver_settings),   # -> driver_settings/
    Step("package", step_package),                   # driver_settings/ -> deploy/
]
TOOL_STEPS = [
    Step("stitched_ip_io", step_stitched_ip_io),     # -> verification/stitched_ip/ (FINN's verify input)
    Step("finn_config", lambda model, ctx: _finn_config(model, ctx)),  # -> finn/dataflow_build_config.json
    Step("hw_ipgen", _tool_step("step_hw_ipgen", ("vitis_hls",))),
    Step("set_fifo_depths", _tool_step("step_set_fifo_depths")),
    Step("create_stitched_ip", _tool_step("step_create_stitched_ip", ("vivado",))),  # + FINN's stitched rtlsim
    Step("check_stitched_ip", step_check_stitched_ip),
    Step("measure_rtlsim_performance", _tool_step("step_measure_rtlsim_performance", ("vivado",))),
    Step("record_rtlsim", step_record_rtlsim, writes="estimates"),
    Step("synthesize_bitfile", _tool_step("step_synthesize_bitfile", ("vivado",))),
    Step("check_timing", lambda model, ctx: _check_timing(model, ctx), writes="estimates"),  # WNS/TNS, stop on < 0
    Step("make_driver", _tool_step("step_make_driver", ("vivado",))),
    Step("check_driver", step_check_driver),         # finn/driver/ == driver_settings/
    Step("deployment_package", _tool_step("step_deployment_package", ("vivado",))),
    Step("board_files", lambda model, ctx: _board_files(model, ctx)),
    Step("check_hwh", lambda model, ctx: _check_hwh(model, ctx)),  # the .hwh holds what deploy/ drives
]


def require_hls_rtl(model, step: str, out: Path) -> None:
    """The steps after hw_ipgen stitch, simulate and synthesize the RTL Vitis HLS exported for each HLS layer:
    an IP folder without it (an interrupted run, a tool that exported nothing) stops here, naming the layer,
    instead of inside FINN's Vivado projects."""
    from qonnx.custom_op.registry import getCustomOp
    for node in model.graph.node:
        if node.op_type.endswith("_hls") and node.domain.startswith("finn.custom_op.fpgadataflow"):
            ip = Path(getCustomOp(node).get_nodeattr("ip_path") or "")
            if not list((ip / "hdl" / "verilog").glob("*.v")):
                raise ToolFailed(
                    f"{step} needs the RTL Vitis HLS exports for every HLS layer, and {node.name}'s IP folder "
                    f"{ip} holds none (hdl/verilog/*.v; its vitis_hls.log is beside project_{node.name}): "
                    f"hw_ipgen ran without a working Vitis HLS. With the real tools sourced, python -m hw_build "
                    f"--replay {out} --bitstream --start-step hw_ipgen generates it again")


def _check_timing(model, ctx: Context):
    """Vivado's post-route WNS/TNS into report/estimates.json and the summary; negative slack stops here,
    before the package, unless --allow-timing-violation (timing.py)."""
    from .timing import check_timing
    resume = (f"python -m hw_build --replay {ctx.folder.root} --bitstream --start-step check_timing checks it "
              f"again")
    timing = check_timing(ctx.folder.finn_report / "post_route_timing.rpt", ctx.hw.clock_ns,
                          ctx.hw.allow_timing_violation, resume)
    ctx.estimates = {**ctx.folder.estimates(), "timing": timing}
    write_json(ctx.folder.estimates_file, ctx.estimates)
    return model


def _finn_config(model, ctx: Context):
    """The configuration FINN's steps run with, written by FINN's own serializer (to_json) where FINN's
    command line reads one (finn build CONFIG MODEL): every path in it inside this build folder."""
    point_at(ctx.finn_cfg, ctx.folder)
    ctx.folder.finn_out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json.loads(ctx.finn_cfg.to_json()), indent=2)  # FINN's serializer; indented to read
    (ctx.folder.finn_out / "dataflow_build_config.json").write_text(text)
    return model


def _check_hwh(model, ctx: Context):
    """The bitfile's .hwh, read by PYNQ's own parser, has the IPs and address ranges the driver uses (hwh.py)."""
    from .hwh import check_hwh
    check_hwh(ctx.folder.deploy / "bitfile" / "finn-accel.hwh", ctx.folder.deploy)
    return model


def _board_files(model, ctx: Context):
    """Bitfile and hwh from FINN's deployment package into the project's deploy/ folder."""
    from .package import add_bitfile
    add_bitfile(ctx.folder)
    return model


def make_finn_cfg(hw: HwConfig, board: Board, folder: BuildFolder, folding: Path | None,
                  specialize: Path | None = None):
    from finn.builder.build_dataflow_config import (
        DataflowBuildConfig,
        DataflowOutputType,
        ShellFlowType,
        VerificationStepType,
    )

    from .stitched import stitched_images
    outputs, verify = [DataflowOutputType.ESTIMATE_REPORTS], []
    if hw.bitstream:
        outputs += [DataflowOutputType.STITCHED_IP, *([DataflowOutputType.RTLSIM_PERFORMANCE] if simulates(hw) else []),
                    DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER,
                    DataflowOutputType.DEPLOYMENT_PACKAGE]
        verify = [VerificationStepType.STITCHED_IP_RTLSIM] if stitched_images(hw.verify_images) else []
    cfg = DataflowBuildConfig(
        output_dir=str(folder.finn_out), synth_clk_period_ns=hw.clock_ns, board=board.finn_board,
        fpga_part=board.part, shell_flow_type=ShellFlowType.VIVADO_ZYNQ, generate_outputs=outputs,
        target_fps=None if folding else (hw.target_fps or 10_000), folding_config_file=folding,
        specialize_layers_config_file=specialize,
        mvau_wwidth_max=hw.mvau_wwidth_max, save_intermediate_models=True, verify_steps=verify,
        auto_fifo_depths=hw.fifo_depths is None,
        fifo_config_file=Path(hw.fifo_depths).resolve() if hw.fifo_depths else None)
    return point_at(cfg, folder)


def simulates(hw: HwConfig) -> bool:
    """Whether a bitstream build runs Vivado's simulator: FINN's FIFO sizing (unless --fifo-depths), its
    stitched-IP verification (--verify-images) and then its rtlsim throughput measurement."""
    from .stitched import stitched_images
    return hw.fifo_depths is None or stitched_images(hw.verify_images) > 0


def point_at(cfg, folder: BuildFolder):
    """FINN's output and verification paths in `folder`: at creation, and again when a staged build's folder
    is adopted (a path into the staging folder would outlive it)."""
    cfg.output_dir = str(folder.finn_out)
    cfg.verify_input_npy = str(folder.stitched_io / "input.npy")
    cfg.verify_expected_output_npy = str(folder.stitched_io / "expected_output.npy")
    return cfg
