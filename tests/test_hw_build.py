"""The FINN flow on real checkpoints and real images, without Xilinx tools."""
import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, ROOT
from conftest import init_checkpoint as _init_checkpoint

from hw_build.__main__ import main as hw_main
from hw_build.boards import BoardError, get_board
from hw_build.build_folder import BuildFolder
from hw_build.finn_env import ToolMissing, missing_tools
from hw_build.flow import BuildError, DoesNotFit, HwConfig, build

pytestmark = [pytest.mark.needs_data, pytest.mark.finn]
PRETRAINED = ROOT / "pretrained" / "lenet5" / "binary"


@pytest.fixture(scope="module")
def tiny_build(tiny_run, tmp_path_factory):
    """The tiny trained LeNet5 through every step that runs without tools."""
    out = tmp_path_factory.mktemp("build")
    build(HwConfig(checkpoint=tiny_run, board="Pynq-Z1", target_fps=2000, out=out, verify_images=20,
                   data_dir=str(DATA)), log=lambda *a: None)
    return out, None


def test_small_model_is_verified_at_every_stage(tiny_build):
    out, _ = tiny_build
    report = json.loads((out / "verification" / "report.json").read_text())
    assert report["all_ok"] and report["images"] == 20
    stages = [s["stage"] for s in report["stages"]]
    assert stages[0] == "export" and stages[-1] == "hw_codegen" and "specialize_layers" in stages
    integer = [s for s in report["stages"] if s["scores"] == "integer scores"]
    assert integer[0]["stage"] == "binary_pad"  # the first verified stage after FINN's streamlining
    for s in report["stages"]:
        assert s["top1_agree"] == 20
        if s in integer[1:]:
            assert s["identical_to_previous_integer_stage"] is True


def test_bitstream_without_tools_is_refused_before_the_first_step(tiny_run, tiny_build, tmp_path):
    """--bitstream checks its prerequisites first: without Vivado nothing runs and nothing is written; the
    same build without --bitstream keeps every step's output."""
    if not missing_tools():
        pytest.skip("Xilinx tools are installed: the no-tools refusal cannot be observed here")
    with pytest.raises(ToolMissing) as e:
        build(HwConfig(checkpoint=tiny_run, board="Pynq-Z1", target_fps=2000, out=tmp_path / "b", bitstream=True,
                       data_dir=str(DATA)), log=lambda *a: None)
    for needle in ("vitis_hls and vivado not in PATH", "2022.2", "finn-hlslib", "make deps", "nothing was built"):
        assert needle in str(e.value), needle
    assert list(tmp_path.iterdir()) == []
    out, _ = tiny_build
    assert json.loads((out / "build_state.json").read_text())["done"][-1] == "package"
    for f in ("report/estimates.json", "report/cycles_per_layer.png", "report/resources_per_layer.png",
              "intermediate/00_export.onnx", "model.onnx", "deploy/settings.json"):
        assert (out / f).is_file(), f


def test_the_build_keeps_its_own_log(tiny_build):
    """build.log beside build_state.json: every line the build printed, each with its time."""
    import re
    out, _ = tiny_build
    lines = (out / "build.log").read_text().splitlines()
    steps = [line for line in lines if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  \[ ?\d+/\d+\] ", line)]
    done = json.loads((out / "build_state.json").read_text())["done"]
    assert [line.split("] ")[1].split()[0] for line in steps] == done
    assert any("all stages agree" in line or "verification" in line for line in lines), lines[-5:]


def test_estimates_are_against_the_board(tiny_build):
    out, _ = tiny_build
    est = json.loads((out / "report" / "estimates.json").read_text())
    assert est["capacity"]["LUT"] == 53_200 and est["capacity"]["BRAM_18K"] == 280
    assert est["fps"] >= 2000 and 0 < est["total"]["LUT"] < 53_200


def test_estimates_count_converters_fifos_and_the_shell(tiny_build):
    """Everything counted: FINN's estimate of every node of the stitched graph plus the shell allowance."""
    out, _ = tiny_build
    est = json.loads((out / "report" / "estimates.json").read_text())
    kinds = {v["kind"] for v in est["layers"].values()}
    assert {"layer", "fifo"} <= kinds and est["fifo_total"]["LUT"] > 0
    assert est["shell_allowance"] == {"LUT": 5000, "BRAM_18K": 43, "URAM": 0, "DSP": 0}
    finn = json.loads((out / "finn" / "report" / "estimate_layer_resources.json").read_text())["total"]
    for r in ("LUT", "BRAM_18K", "DSP"):  # the layers as FINN's own report counts them, then what it leaves out
        assert est["layers_total"][r] == pytest.approx(finn[r])
        extra = est["dwc_total"][r] + est["fifo_total"][r] + est["shell_allowance"][r]
        assert est["total"][r] == pytest.approx(finn[r] + extra)
    assert est["total"]["LUT"] >= finn["LUT"] + 5000 + est["fifo_total"]["LUT"] > finn["LUT"] + 5000
    assert set(est["no_estimate"]) >= {"LabelSelect"}  # FINN has no model: marked, not a silent zero
    assert est["fifo_depths"].startswith("unsized")


def test_max_utilization_refuses_what_the_board_would_not_hold(tiny_run, tmp_path, capsys):
    with pytest.raises(DoesNotFit, match=r"LUT: \d+ of 53200 \(\d+\.\d%, limit 5%"):
        build(HwConfig(checkpoint=tiny_run, out=tmp_path, verify_images=0, target_fps=2000, max_utilization=5,
                       stop_after="estimates", data_dir=str(DATA)), log=lambda *a: None)
    assert hw_main(["--model", str(tiny_run), "--out", str(tmp_path / "b"), "--max-utilization", "0"]) == 2
    assert "error: --max-utilization must be in (0, 100], got 0.0" in capsys.readouterr().err


@pytest.mark.slow
def test_pretrained_lenet5_to_codegen_verified_on_the_whole_test_set(lenet5_build):
    stages = json.loads((lenet5_build / "verification" / "report.json").read_text())["stages"]
    assert all(r["ok"] and r["top1_agree"] == 10000 for r in stages)
    assert "rtl_mvau" in [r["stage"] for r in stages]
    est = json.loads((lenet5_build / "report" / "estimates.json").read_text())
    # the shipped folding: >= 50k FPS within 85% of every resource, everything counted
    assert est["fps"] >= 50_000 and max(est["utilisation_pct"].values()) <= 85
    assert est["layers"]["MVAU_rtl_0"]["DSP"] > 0 and est["layers"]["MVAU_rtl_0"]["LUT"] == 0  # first layer: DSPs


@pytest.mark.slow  # about 40 s on 2 cores
def test_the_binary_lenet5_at_the_float_reference_builds_for_the_pynq_z1(tmp_path):
    """pretrained/lenet5/binary_8bit_first_last (99.50%): the shipped folding at >= 50k FPS within 85% of every
    resource, everything counted, every stage giving the Brevitas model's class on 2,000 test images (all 10,000
    in docs/results.md: the default build)."""
    build(HwConfig(checkpoint=ROOT / "pretrained/lenet5/binary_8bit_first_last", board="Pynq-Z1", out=tmp_path,
                   verify_images=2000, data_dir=str(DATA)), log=lambda *a: None)
    stages = json.loads((tmp_path / "verification" / "report.json").read_text())["stages"]
    assert len(stages) >= 12 and all(r["ok"] and r["top1_agree"] == 2000 for r in stages)
    est = json.loads((tmp_path / "report" / "estimates.json").read_text())
    assert est["fps"] >= 50_000 and max(est["utilisation_pct"].values()) <= 85


def test_shipped_folding_given_explicitly_takes_its_specialize_config(tmp_path):
    """--folding X.json uses X.specialize.json beside it (the first layer on DSPs), so the shipped folding
    given by hand builds as the default does."""
    lines = []
    folding = ROOT / "configs" / "folding" / "lenet5_binary_Pynq-Z1.json"
    build(HwConfig(checkpoint=PRETRAINED, board="Pynq-Z1", folding=folding, out=tmp_path, verify_images=0,
                   stop_after="folding", data_dir=str(DATA)), log=lines.append)
    assert any("lenet5_binary_Pynq-Z1.specialize.json (the specialize config beside the folding)" in l for l in lines)
    from qonnx.core.modelwrapper import ModelWrapper

    from hw_build.build_folder import BuildFolder
    m = ModelWrapper(str(BuildFolder(tmp_path).last_stage("folding")))
    assert [n.name for n in m.graph.node if n.op_type == "MVAU_rtl"] == ["MVAU_rtl_0"]


def test_first_and_last_layer_variants_share_the_folding_and_get_their_own_folder():
    """8-bit first/last layers keep every layer and shape: the shipped binary folding applies (measured: 53,191
    FPS, 77.6% LUT on the Pynq-Z1, docs/results.md); the default build folder says which net it holds."""
    from hw_build.config import default_out, shipped_folding
    from training.config import TrainConfig
    hw = HwConfig(checkpoint=PRETRAINED, board="Pynq-Z1")
    both = TrainConfig(model="lenet5", dataset="mnist", first_layer_8bit=True, last_layer_8bit=True)
    plain = TrainConfig(model="lenet5", dataset="mnist")
    shipped = ROOT / "configs/folding/lenet5_binary_Pynq-Z1.json"
    assert shipped_folding(hw, both) == shipped_folding(hw, plain) == shipped
    assert default_out(hw, plain).name == "lenet5_binary_Pynq-Z1"
    assert default_out(hw, both).name == "lenet5_binary_8bit-first_8bit-last_Pynq-Z1"
    assert default_out(hw, TrainConfig(model="lenet5", dataset="mnist", binarize_input=True)).name == \
        "lenet5_binary_binary-input_Pynq-Z1"


def test_a_folding_copied_without_its_specialize_config_names_the_cause(tmp_path):
    folding = shutil.copy(ROOT / "configs" / "folding" / "lenet5_binary_Pynq-Z1.json", tmp_path / "mine.json")
    with pytest.raises(BuildError, match=r"names RTL layers \['MVAU_rtl_0', 'Thresholding_rtl_0'\].*--specialize"):
        build(HwConfig(checkpoint=PRETRAINED, board="Pynq-Z1", folding=folding, out=tmp_path / "o", verify_images=0,
                       stop_after="folding", data_dir=str(DATA)), log=lambda *a: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json"]  # no --out, no staging folder left


@pytest.mark.slow  # 24 s alone, over 30 s beside the other worker
def test_model_too_big_for_the_board_names_resource_and_layers(tmp_path):
    # width x2.5: FC1's 4,000 x 1,280 binary weights alone need more BRAM than the Pynq-Z1 has (x4 took 94 s)
    ck = _init_checkpoint(tmp_path / "wide.pt", width_scale=2.5)
    with pytest.raises(DoesNotFit, match=r"BRAM_18K: \d+ of 280 \(\d+\.\d%, limit 85%; most used by MVAU"):
        build(HwConfig(checkpoint=ck, out=tmp_path / "o", verify_images=0, target_fps=1000), log=lambda *a: None)


def test_float_and_replicate_padded_models_are_refused(tmp_path, capsys):
    ck = _init_checkpoint(tmp_path / "f.pt", binarize=False, layer_order="CBAP")
    with pytest.raises(BuildError, match="float model"):
        build(HwConfig(checkpoint=ck, out=tmp_path / "o", verify_images=0), log=lambda *a: None)
    ck = _init_checkpoint(tmp_path / "r.pt", model="vggnet7", dataset="cifar10", padding="replicate",
                          width_scale=0.125, layer_order="CBAP")
    assert hw_main(["--model", str(ck), "--out", str(tmp_path / "o2"), "--verify-images", "0"]) == 2
    assert ("error: padding replicate (the study's) has no FINN layer; retrain with padding minus_one"
            in capsys.readouterr().err)


def test_cli_errors(tmp_path, capsys):
    assert hw_main(["--model", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    ck = _init_checkpoint(tmp_path / "ok.pt", width_scale=0.25)
    assert hw_main(["--model", str(ck), "--board", "Pynq-Z9", "--out", str(tmp_path)]) == 2
    assert "unknown board 'Pynq-Z9'; known boards: Pynq-Z1" in capsys.readouterr().err
    assert hw_main(["--model", str(ck), "--folding", str(tmp_path / "no.json"), "--out", str(tmp_path)]) == 2
    assert "folding file" in capsys.readouterr().err


def test_board_table_agrees_with_finns_own_tables():
    """Each board's part is the one FINN builds for it (pynq_part_map); its resources agree with FINN's
    platform table (finn/util/platforms.py) where FINN has one, within FINN's rounding (its table gives the
    ZCU104 230,000 LUT and 610 BRAM18 where the device has 230,400 and 624; the AUP-ZU3's BRAM18 412 against
    432: within 5%). FINN has no table for the KV260's xck26 (ours: AMD's datasheet)."""
    from finn.util.basic import pynq_part_map
    from finn.util.platforms import platforms

    from hw_build.boards import BOARDS
    compared = 0
    for b in BOARDS.values():
        assert pynq_part_map[b.finn_board] == b.part, b.name
        if b.finn_board in platforms:
            finn = dict(zip(("LUT", "FF", "BRAM_18K", "URAM", "DSP"), platforms[b.finn_board]().compute_resources[0]))
            ours = {**b.capacity(), "FF": b.ff}
            off = {k: (ours[k], v) for k, v in finn.items() if abs(ours[k] - v) > 0.05 * max(v, 1)}
            assert not off, (b.name, off)
            compared += 1
    assert compared == 4 and get_board("pynq-z2").name == "Pynq-Z2"
    with pytest.raises(BoardError, match="Arty"):
        get_board("Arty")


def test_round_and_clip_xnor_thresholds_keeps_the_function():
    from finn.core.onnx_exec import execute_onnx
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    from hw_build.transforms import RoundAndClipXnorThresholds
    mw, mh = 8, 4
    node = helper.make_node("MVAU", ["x", "w", "t"], ["y"], domain="finn.custom_op.fpgadataflow", MW=mw, MH=mh,
                            SIMD=mw, PE=mh, binaryXnorMode=1, noActivation=0, inputDataType="BINARY",
                            weightDataType="BINARY", outputDataType="BINARY", ActVal=0)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, mw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, mh])])
    m = ModelWrapper(qonnx_make_model(g))
    rng = np.random.default_rng(0)
    m.set_initializer("w", rng.integers(0, 2, (mw, mh)).astype(np.float32))
    m.set_initializer("t", np.array([[-3.0], [2.5], [9.7], [4.0]], dtype=np.float32))
    for t, dt in (("x", "BINARY"), ("w", "BINARY"), ("y", "BINARY")):
        m.set_tensor_datatype(t, DataType[dt])
    xs = [rng.integers(0, 2, (1, mw)).astype(np.float32) for _ in range(64)]
    before = [execute_onnx(m, {"x": x})["y"] for x in xs]
    m2 = m.transform(RoundAndClipXnorThresholds())
    assert m2.get_initializer("t").ravel().tolist() == [0, 3, 9, 4]
    assert all(np.array_equal(a, execute_onnx(m2, {"x": x})["y"]) for a, x in zip(before, xs))


def _xnor_mvau(mw, mh, no_activation, thresholds=None):
    """A one-node graph: a binary (XNOR-popcount) MVAU over MW inputs whose weight rows hold as many
    ones as zeros (FINN's sizing for a dot product then gives INT8 for MW = 128 or 200)."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model
    inputs = ["x", "w"] + (["t"] if thresholds is not None else [])
    odt = "INT32" if no_activation else "BINARY"
    node = helper.make_node("MVAU", inputs, ["y"], domain="finn.custom_op.fpgadataflow", backend="fpgadataflow",
                            MW=mw, MH=mh, SIMD=mw, PE=mh, binaryXnorMode=1, noActivation=no_activation,
                            inputDataType="BINARY", weightDataType="BINARY", outputDataType=odt, ActVal=0,
                            accDataType="INT32", name="MVAU_0")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, mw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, mh])])
    m = ModelWrapper(qonnx_make_model(g))
    w = np.zeros((mw, mh), dtype=np.float32)
    for j in range(mh):
        w[np.random.default_rng(j).permutation(mw)[:mw // 2], j] = 1
    m.set_initializer("w", w)
    if thresholds is not None:
        m.set_initializer("t", np.array(thresholds, dtype=np.float32).reshape(mh, 1))
        m.set_tensor_datatype("t", DataType["UINT8"])
    for t, dt in (("x", "BINARY"), ("w", "BINARY"), ("y", odt)):
        m.set_tensor_datatype(t, DataType[dt])
    return m, w


@pytest.mark.parametrize("mw, no_activation, thresholds", [(128, 1, None), (200, 0, [101, 150])])
def test_xnor_accumulator_holds_the_popcount(tmp_path, monkeypatch, mw, no_activation, thresholds):
    """finn-hlslib accumulates an XNOR MVAU's popcount, [0, MW], in accDataType; FINN's step sizes it for a
    dot product (INT8 here, where 128 wraps to -128 in cppsim: measured on a tiny LeNet5) and clips thresholds
    to it. The project's step_minimize_bit_width leaves a type that holds every popcount and keeps the
    thresholds, so FINN's python execution (which never wraps) gives what it gave before the step."""
    from types import SimpleNamespace

    from hw_build.finn_env import setup
    for var, value in (("FINN_BUILD_DIR", str(tmp_path)), ("SANITIZE_QUANT_TENSORS", "0")):
        monkeypatch.setenv(var, value)
    setup(create=False)  # before FINN's builder is imported
    import finn.builder.build_dataflow_steps as finn_steps
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from finn.core.onnx_exec import execute_onnx
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp

    from hw_build.steps import step_minimize_bit_width
    m, w = _xnor_mvau(mw, 2, no_activation, thresholds)
    cfg = DataflowBuildConfig(output_dir=str(tmp_path), synth_clk_period_ns=10.0, generate_outputs=[])
    xs = [w[:, :1].T, w[:, 1:].T, 1 - w[:, :1].T] + [np.random.default_rng(9).integers(0, 2, (1, mw)).astype(
        np.float32) for _ in range(20)]  # popcounts MW and 0 included
    before = [execute_onnx(m, {"x": x})["y"] for x in xs]
    finn_only = getCustomOp(finn_steps.step_minimize_bit_width(_copy(m), cfg).graph.node[0])
    assert not DataType[finn_only.get_nodeattr("accDataType")].allowed(mw)  # the reason for the project step
    ours = step_minimize_bit_width(m, SimpleNamespace(finn_cfg=cfg))
    inst = getCustomOp(ours.graph.node[0])
    acc = DataType[inst.get_nodeattr("accDataType")]
    assert acc.allowed(0) and acc.allowed(mw) and acc.name == "UINT8"
    if thresholds is not None:
        assert ours.get_initializer("t").ravel().tolist() == thresholds
        assert ours.get_tensor_datatype("t") == acc
    else:
        assert inst.get_nodeattr("outputDataType") == "UINT8" and ours.get_tensor_datatype("y") == acc
    assert all(np.array_equal(a, execute_onnx(ours, {"x": x})["y"]) for a, x in zip(before, xs))
    assert before[0].max() == (mw if no_activation else 1)


def _copy(model):
    from qonnx.core.modelwrapper import ModelWrapper
    return ModelWrapper(copy.deepcopy(model.model))


def test_vggnet7_minus_one_padding_streamlines_exactly(tmp_path):
    """BinaryPadToNHWC: VGGNet7's -1 padding must survive FINN's switch to the {0, 1} encoding."""
    ck = _init_checkpoint(tmp_path / "vgg.pt", model="vggnet7", dataset="cifar10", width_scale=0.0625,
                          layer_order="CBAP")
    ctx = build(HwConfig(checkpoint=ck, out=tmp_path / "o", verify_images=4, target_fps=1000, data_dir=str(DATA),
                         stop_after="convert_to_hw"), log=lambda *a: None)
    assert [r.stage for r in ctx.verifier.results][-1] == "convert_to_hw"
    assert all(r.ok for r in ctx.verifier.results)
    from qonnx.core.modelwrapper import ModelWrapper
    m = ModelWrapper(str(BuildFolder(tmp_path / "o").last_stage("convert_to_hw")))
    assert len(m.get_nodes_by_op_type("FMPadding")) == 5 and not m.get_nodes_by_op_type("Pad")


def test_binarized_input_padding_streamlines_exactly(tmp_path):
    """BinaryPadToNHWC on LeNet5 with a binarized input: its first Pad sits on the thresholded image, in NCHW
    with no Transpose before it (the study sweep's binary_input point failed verification here)."""
    ck = _init_checkpoint(tmp_path / "bin_in.pt", binarize_input=True, width_scale=0.25)
    ctx = build(HwConfig(checkpoint=ck, out=tmp_path / "o", verify_images=20, target_fps=1000, data_dir=str(DATA),
                         stop_after="convert_to_hw"), log=lambda *a: None)
    assert [r.stage for r in ctx.verifier.results][-1] == "convert_to_hw"
    assert all(r.ok and r.top1_agree == 20 for r in ctx.verifier.results)
    from qonnx.core.modelwrapper import ModelWrapper
    m = ModelWrapper(str(BuildFolder(tmp_path / "o").last_stage("convert_to_hw")))
    assert len(m.get_nodes_by_op_type("FMPadding")) == 1 and not m.get_nodes_by_op_type("Pad")


def _contents(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_folding_file_of_another_model_and_bad_stop_step(tiny_run, tmp_path):
    """A folding that does not fit is refused at the folding step, with --out as it was: not created when
    new; an earlier build in it unchanged, file for file."""
    other = ROOT / "configs" / "folding" / "lenet5_binary_Pynq-Z1.json"
    with pytest.raises(BuildError, match="does not match this model"):
        build(HwConfig(checkpoint=tiny_run, out=tmp_path / "a", verify_images=0, data_dir=str(DATA),
                       folding=other, stop_after="folding"), log=lambda *a: None)
    assert list(tmp_path.iterdir()) == []
    build(HwConfig(checkpoint=tiny_run, out=tmp_path / "a", verify_images=5, data_dir=str(DATA), target_fps=1000,
                   stop_after="minimize_bit_width"), log=lambda *a: None)
    before = _contents(tmp_path / "a")
    with pytest.raises(BuildError, match="does not match this model"):
        build(HwConfig(checkpoint=tiny_run, out=tmp_path / "a", verify_images=5, data_dir=str(DATA),
                       folding=other, stop_after="folding"), log=lambda *a: None)
    assert _contents(tmp_path / "a") == before and [p.name for p in tmp_path.iterdir()] == ["a"]
    with pytest.raises(BuildError, match="is not a step"):
        build(HwConfig(checkpoint=tiny_run, out=tmp_path / "b", verify_images=0, stop_after="synthesis"),
              log=lambda *a: None)




@pytest.mark.slow
def test_shipped_vggnet7_to_codegen_on_zcu104_verified_on_real_cifar10(vgg_zcu104_build):
    """The GPU-trained VGGNet7 (compact checkpoint) with the shipped ZCU104 folding: every stage top-1-identical
    to Brevitas on 10 CIFAR-10 test images, integer scores identical stage to stage, estimates within the
    board with URAM holding the FC weights, HLS/RTL code written for every layer."""
    out = vgg_zcu104_build
    results = json.loads((out / "verification" / "report.json").read_text())["stages"]
    assert results[0]["stage"] == "export" and results[-1]["stage"] == "hw_codegen"
    assert all(r["ok"] and r["top1_agree"] == 10 for r in results)
    assert all(r["identical_to_previous_integer_stage"] for r in results[5:])
    est = json.loads((out / "report" / "estimates.json").read_text())
    assert est["fps"] > 3000 and est["total"]["URAM"] > 0
    assert all(est["utilisation_pct"][r] < 85 for r in ("LUT", "BRAM_18K", "URAM", "DSP"))
    assert est["layers"]["MVAU_hls_6"]["ram_style"] == "ultra" and est["layers"]["MVAU_hls_5"]["PE"] == 8
    summary = (out / "report" / "summary.txt").read_text()
    assert "ram_style" in summary and "24576 x 192" in summary
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    m = ModelWrapper(str(next((out / "intermediate").glob("*_hw_codegen.onnx"))))
    dirs = [Path(getCustomOp(n).get_nodeattr("code_gen_dir_ipgen")) for n in m.graph.node]
    assert len(m.get_nodes_by_op_type("MVAU_hls")) == 9 and all(d.is_dir() and any(d.iterdir()) for d in dirs)


def test_wrap_with_iodmas_as_zynqbuild_does(tiny_build):
    """The project's replay of ZynqBuild's wrapping: one partition per IODMA at the board's port width, named
    as the block design names them, and the accelerator between them unchanged."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hw_build import finn_env
    from hw_build.build_folder import BuildFolder
    from hw_build.transforms import WrapWithIODMAs
    out, _ = tiny_build
    finn_env.setup(out / "wrap_test_finn")  # FINN's folders for Floorplan: not whatever build this worker ran last
    folder = BuildFolder(out)
    model = ModelWrapper(str(folder.last_stage("hw_codegen")))
    wrapped = model.transform(WrapWithIODMAs(get_board("Pynq-Z1"), out / "wrap_test"))
    sdps = wrapped.get_nodes_by_op_type("StreamingDataflowPartition")
    names = [getCustomOp(n).get_nodeattr("instance_name") for n in sdps]
    assert names[0] == "idma0" and names[-1] == "odma0" and len(sdps) == 3
    inner = [ModelWrapper(getCustomOp(n).get_nodeattr("model")) for n in sdps]
    assert [n.op_type for n in inner[0].graph.node] == ["IODMA_hls"]
    assert [n.op_type for n in inner[-1].graph.node] == ["IODMA_hls"]
    assert getCustomOp(inner[0].graph.node[0]).get_nodeattr("intfWidth") == 64  # Pynq-Z1's HP port
    layers = [n.op_type for n in inner[1].graph.node if not n.op_type.startswith("StreamingDataWidthConverter")]
    assert layers == [n.op_type for n in model.graph.node]


def test_start_step_resumes_a_build_and_replay_builds_it_again(tiny_run, tmp_path):
    """FINN's builder contract: --start-step continues a build from the model saved after the step before
    (the earlier stages untouched, the estimates an earlier step wrote read back from the folder), and
    --replay builds again from the configuration build_state.json recorded."""
    out = tmp_path / "b"
    build(HwConfig(checkpoint=tiny_run, board="Pynq-Z1", target_fps=2000, out=out, verify_images=0,
                   data_dir=str(DATA), stop_after="estimates"), log=lambda *a: None)
    folder = BuildFolder(out)
    kept = {p.name: p.stat().st_mtime_ns for p in folder.intermediate.iterdir()}
    assert hw_main(["--replay", str(out), "--start-step", "hw_codegen", "--verify-images", "10"]) == 0
    state = folder.read_state()
    assert state["done"][-3:] == ["hw_codegen", "driver_settings", "package"] and "estimates" in state["done"]
    assert {p.name: p.stat().st_mtime_ns for p in folder.intermediate.iterdir() if p.name in kept} == kept
    assert json.loads((folder.deploy / "package.json").read_text())["estimated_fps"] == folder.estimates()["fps"]
    assert "build_dir" not in json.loads((folder.deploy / "package.json").read_text())  # no absolute path
    report = json.loads((folder.verification / "report.json").read_text())
    assert [s["stage"] for s in report["stages"]] == ["hw_codegen"] and report["all_ok"]
    assert state["config"]["target_fps"] == 2000 and state["config"]["verify_images"] == 10  # the latest run's

    again = tmp_path / "again"
    assert hw_main(["--replay", str(out), "--out", str(again), "--stop-after", "estimates"]) == 0
    assert BuildFolder(again).estimates()["layers"] == folder.estimates()["layers"]


@pytest.mark.parametrize("argv, needles", [
    (["--start-step", "hw_codegen", "--target-fps", "5000"], ["another configuration", "target_fps: 2000 -> 5000",
                                                                "--replay"]),
    (["--start-step", "hw_ipgen"], ["'hw_ipgen' is not a step of this build", "add --bitstream"]),
    (["--start-step", "package"], ["has not run driver_settings", "done: export"]),
    (["--start-step", "folding", "--stop-after", "export"], ["comes before --start-step folding"]),
])
def test_start_step_refuses_what_it_cannot_resume(tiny_run, tmp_path, argv, needles, capsys):
    out = tmp_path / "b"
    build(HwConfig(checkpoint=tiny_run, board="Pynq-Z1", target_fps=2000, out=out, verify_images=0,
                   data_dir=str(DATA), stop_after="tidy_up"), log=lambda *a: None)
    before = BuildFolder(out).read_state()
    assert hw_main(["--checkpoint", str(tiny_run), "--target-fps", "2000", "--out", str(out), "--verify-images", "0",
                    "--data-dir", str(DATA), *argv]) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, (needle, err)
    assert BuildFolder(out).read_state() == before  # nothing of the build changed


def test_replay_refuses_options_that_change_the_build_and_folders_without_a_record(tmp_path, capsys):
    assert hw_main(["--replay", str(tmp_path)]) == 2
    assert f"--replay {tmp_path}: no build_state.json there" in capsys.readouterr().err
    (tmp_path / "build_state.json").write_text(json.dumps({"done": ["export"], "board": "Pynq-Z1"}))
    assert hw_main(["--replay", str(tmp_path)]) == 2
    assert "records no configuration (an older build)" in capsys.readouterr().err
    assert hw_main(["--replay", str(tmp_path), "--board", "ZCU104", "--clock-ns", "5"]) == 2
    assert "--board, --clock-ns would change it" in capsys.readouterr().err


def test_a_refused_data_dir_leaves_nothing_beside_out(tmp_path, capsys):
    """The shipped folding stages a new build beside --out: a --data-dir without the dataset is refused before
    the staging folder (or --out) is made."""
    rc = hw_main(["--checkpoint", str(PRETRAINED), "--board", "Pynq-Z1", "--data-dir", str(tmp_path / "none"),
                  "--out", str(tmp_path / "b")])
    assert rc == 2 and "mnist.npz not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_every_output_a_step_hands_on_is_restored_on_start_step_or_refused_by_name(tmp_path):
    """--start-step reads back what earlier steps wrote, driven by the STEPS table: every `writes` entry has a
    reader; one without is refused naming the field and the step, never skipped."""
    from hw_build.steps import RESTORERS, STEPS, TOOL_STEPS, restore
    assert {s.writes for s in STEPS + TOOL_STEPS if s.writes} <= set(RESTORERS)
    with pytest.raises(BuildError, match="cannot restore 'floorplan', which step place writes"):
        restore(object(), "floorplan", "place")
