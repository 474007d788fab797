"""The batched exact executor (graph/batched.py) against FINN's own execution, node by node, on real test
images flowing through real builds: the tiny binary LeNet5, a ternary LeNet5 (ternary weights and inputs,
8-bit first and last layers), the graph completed with data-width converters and FIFOs, and (slow) the
shipped LeNet5 and VGGNet7 builds at every stage."""
import functools
import json
from collections import Counter

import numpy as np
import pytest
from conftest import DATA, ROOT, init_checkpoint, missing_prerequisite

pytestmark = [pytest.mark.needs_data, pytest.mark.finn]


def finn_tensors(model, x):
    """Every tensor of FINN's execution (execute_onnx on the Python-executable copy), image by image."""
    from finn.core.onnx_exec import execute_onnx

    from graph.execute import python_copy
    from hw_build import finn_speedups
    finn_speedups.install()  # as finn_env.setup does for every FINN path: the same tensors, faster (test_packing)
    py = python_copy(model)
    runs = [execute_onnx(py, {py.graph.input[0].name: x[i:i + 1]}, return_full_exec_context=True)
            for i in range(len(x))]
    return {k: np.concatenate([r[k] for r in runs]) for k in runs[0] if np.ndim(runs[0][k]) > 0}


def compare_nodes(model, x) -> Counter:
    """Runs the graph both ways; asserts every integer-typed node output identical (float ones, before
    streamlining, within float32 rounding: onnxruntime sums a batch in another order); returns the op types."""
    from graph.batched import BatchedGraph
    graph = BatchedGraph(model, fuse=False)
    assert not graph.fallbacks, f"no batched kernel for {graph.fallbacks}"
    ours, ref = graph.run(x, keep="all"), finn_tensors(model, x)
    done = Counter()
    for node in graph.model.graph.node:  # constant nodes (weight quantizers) are folded: not compared here
        for o in node.output:
            if o in ours:
                assert ours[o].shape == ref[o].shape, (node.name, ours[o].shape, ref[o].shape)
                if graph.model.get_tensor_datatype(o).is_integer():
                    bad = np.asarray(ours[o] != ref[o]).sum()
                else:
                    bad = (~np.isclose(ours[o], ref[o], rtol=1e-5, atol=1e-5)).sum()
                assert bad == 0, f"{node.name} ({node.op_type}): {bad} values differ from FINN's execution"
                done[node.op_type] += 1
    return done


@functools.lru_cache(maxsize=4)
def first_test_images(dataset: str, n: int) -> np.ndarray:
    """The first n test images as float32 NCHW pixels, read once for every stage of a build."""
    from training.data import make_splits
    x = make_splits(dataset, str(DATA), train_limit=1, test_limit=n).x_test.numpy().astype(np.float32)
    x.flags.writeable = False
    return x


def stage_inputs(model, n, dataset="mnist"):
    """n real test images as the stage's graph takes them (NHWC once FINN has moved the layout)."""
    from graph.execute import StageRunner
    return StageRunner(model).to_graph_layout(first_test_images(dataset, n))


def compare_build(out, n, dataset="mnist", stages=None) -> Counter:
    from qonnx.core.modelwrapper import ModelWrapper

    from hw_build.build_folder import BuildFolder
    folder = BuildFolder(out)
    done = Counter()
    for path in sorted(folder.intermediate.glob("*.onnx")):
        if stages and not any(path.stem.endswith(s) for s in stages):
            continue
        model = ModelWrapper(str(path))
        done += compare_nodes(model, stage_inputs(model, n, dataset))
    return done


@pytest.fixture(scope="module")
def ternary_build(tmp_path_factory):
    """A ternary LeNet5 (ternary weights everywhere, ternary inputs to the hidden layers, 8-bit first and last
    layers): MVAUs in ternary and 8-bit forms with multi-level thresholds."""
    from hw_build.flow import HwConfig, build
    d = tmp_path_factory.mktemp("ternary")
    ck = init_checkpoint(d / "ternary.pt", model="lenet5", dataset="mnist", width_scale=0.25,
                         tern_weights="1111", tern_acts="0111", first_layer_8bit=True, last_layer_8bit=True,
                         data_dir=str(DATA))
    build(HwConfig(checkpoint=ck, board="Pynq-Z1", target_fps=2000, out=d / "b", verify_images=0,
                   stop_after="hw_codegen", data_dir=str(DATA)), log=lambda *a: None)
    return d / "b"


def test_every_node_of_every_stage_matches_finn_binary(built):
    done = compare_build(built, 6)
    assert {"BipolarQuant", "Conv", "MultiThreshold", "XnorPopcountMatMul", "Im2Col", "MaxPoolNHWC", "TopK",
            "ConvolutionInputGenerator_rtl", "MVAU_hls", "Pool_hls", "FMPadding_rtl", "LabelSelect_hls"} <= set(done)


def test_every_node_of_every_stage_matches_finn_ternary(ternary_build):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    done = compare_build(ternary_build, 6)
    hw = ModelWrapper(str(sorted((ternary_build / "intermediate").glob("*_hw_codegen.onnx"))[-1]))
    forms = {(getCustomOp(n).get_nodeattr("inputDataType"), getCustomOp(n).get_nodeattr("weightDataType"))
             for n in hw.graph.node if n.op_type.startswith("MVAU")}
    assert ("INT2", "INT2") in forms and ("UINT8", "INT8") in forms, forms  # ternary narrowed to INT2 by FINN
    assert any(getCustomOp(n).get_nodeattr("binaryXnorMode") == 0 for n in hw.graph.node
               if n.op_type.startswith("MVAU"))
    assert {"MultiThreshold", "MVAU_hls"} <= set(done), done


def test_converters_and_fifos_as_stitched_match_finn(built):
    """The HW graph completed as FINN stitches it (InsertDWC, InsertFIFO, SpecializeLayers)."""
    from qonnx.core.modelwrapper import ModelWrapper

    from hw_build.build_folder import BuildFolder
    from hw_build.estimates import final_graph
    folder = BuildFolder(built)
    model = final_graph(ModelWrapper(str(folder.last_stage("hw_codegen"))), "xc7z020clg400-1")
    done = compare_nodes(model, stage_inputs(model, 4))
    assert {"StreamingFIFO_rtl", "StreamingDataWidthConverter_rtl"} <= set(done), done


def test_fused_windows_give_the_unfused_result(built):
    """A sliding window and its consumer as one convolution / max-pool: the same top-1 and class scores."""
    from qonnx.core.modelwrapper import ModelWrapper

    from graph.batched import BatchedGraph
    from hw_build.build_folder import BuildFolder
    folder = BuildFolder(built)
    model = ModelWrapper(str(folder.last_stage("hw_codegen")))
    x = stage_inputs(model, 300)
    fused, plain = BatchedGraph(model), BatchedGraph(model, fuse=False)
    assert len(fused.fused) >= 3 and not plain.fused
    a, b = fused.run(x), plain.run(x, keep="all")
    out = model.graph.output[0].name
    assert np.array_equal(a[out], b[out])
    with pytest.raises(ValueError, match="fuse=False"):
        fused.run(x, keep="all")


def test_exactness_bound_picks_the_carrier_type():
    from graph.batched import ExactMatMul, xnor_popcount
    rng = np.random.default_rng(0)
    assert ExactMatMul(rng.integers(-127, 128, (25, 8)), 0, 255).dtype == np.float32  # 255*127*25 < 2^24
    wide = ExactMatMul(rng.integers(-127, 128, (4096, 8)), 0, 255)  # 255*127*4096 > 2^24
    assert wide.dtype == np.float64
    a = rng.integers(0, 256, (7, 4096))
    assert np.array_equal(wide(a.astype(np.float32)), a @ wide.w.astype(np.int64))
    w = rng.integers(0, 2, (300, 5))
    x = rng.integers(0, 2, (9, 300))
    assert np.array_equal(xnor_popcount(w)(x.astype(np.float32)), (x[:, :, None] == w[None]).sum(1))


def test_thresholds_count_as_qonnx_multithreshold():
    from qonnx.custom_op.general.multithreshold import multithreshold

    from graph.batched import count_thresholds
    rng = np.random.default_rng(1)
    v = rng.integers(-40, 40, (5, 6, 7)).astype(np.float32)
    for t in (1, 3, 15):
        thr = np.sort(rng.integers(-40, 40, (7, t)), 1).astype(np.float32)
        assert np.array_equal(count_thresholds(v, thr), multithreshold(v, thr, channels_last=True))
    unsorted = rng.integers(-40, 40, (7, 12)).astype(np.float32)
    assert np.array_equal(count_thresholds(v, unsorted), multithreshold(v, unsorted, channels_last=True))


def test_labelselect_ties_go_to_the_lower_index_as_in_finn():
    from graph.batched import _topk_indices
    v = np.array([[3, 7, 7, 1], [5, 5, 5, 5]], np.float32)
    assert _topk_indices(v, 1).ravel().tolist() == [1, 0]
    assert _topk_indices(v, 3).tolist() == [[1, 2, 0], [0, 1, 2]]


@pytest.mark.slow
def test_every_node_of_the_shipped_lenet5_matches_finn(lenet5_build):
    """As shipped (8-bit first layer on DSPs: MVAU_rtl + Thresholding_rtl), every stage."""
    done = compare_build(lenet5_build, 4)
    assert {"MVAU_rtl", "Thresholding_rtl", "MVAU_hls"} <= set(done)


@pytest.mark.slow  # over 30 s on 2 cores (make test's list)
def test_every_node_of_the_shipped_vggnet7_matches_finn(vgg_zcu104_build):
    done = compare_build(vgg_zcu104_build, 2, "cifar10")
    assert {"MVAU_hls", "ConvolutionInputGenerator_rtl", "FMPadding_rtl", "Pool_hls"} <= set(done)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["lenet5", "vgg_zcu104", "vgg_pynqz1"])
def test_every_xnor_accumulator_holds_its_popcount(which, request):
    """finn-hlslib accumulates an XNOR MVAU's popcount, an integer in [0, MW], in accDataType; a narrower type
    wraps in the hardware and cppsim but not in any python stage (hw_build.transforms.XnorPopcountAccumulator:
    FINN's sizing left INT10 for MW = 800 in the 8-bit LeNet5, not bit-exact in cppsim on 980 of 10,000
    images). Every shipped build's accumulators, and the thresholds' type, hold the popcount's range."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hw_build.build_folder import BuildFolder
    from hw_build.transforms import xnor_mvaus
    model = ModelWrapper(str(BuildFolder(request.getfixturevalue(f"{which}_build")).last_stage("hw_codegen")))
    xnor = xnor_mvaus(model)
    assert len(xnor) >= 2
    for node in xnor:
        inst = getCustomOp(node)
        acc, mw = DataType[inst.get_nodeattr("accDataType")], inst.get_nodeattr("MW")
        assert acc.allowed(0) and acc.allowed(mw), (node.name, acc.name, mw)
        if not inst.get_nodeattr("noActivation"):
            t = model.get_initializer(node.input[2])
            assert t.min() >= 0 and t.max() <= mw + 1 and model.get_tensor_datatype(node.input[2]).allowed(t.max())


@pytest.mark.slow
def test_lenet5_build_verified_on_the_whole_test_set(lenet5_build):
    """Every verified stage agrees on all 10,000 images. The build's time is recorded (build_state.json, the
    build log; measured figures in docs/results.md), not asserted: it depends on the machine."""
    report = json.loads((lenet5_build / "verification" / "report.json").read_text())
    assert report["all_ok"] and report["images"] == 10000
    assert all(s["top1_agree"] == 10000 for s in report["stages"])
    state = json.loads((lenet5_build / "build_state.json").read_text())
    from hw_build.steps import STEPS
    assert set(state["timings_s"]) >= {s.name for s in STEPS} and min(state["timings_s"].values()) >= 0


@pytest.mark.slow
@pytest.mark.parametrize("which, images", [("lenet5", 10000), ("vgg_zcu104", 1000), ("vgg_pynqz1", 1000)])
def test_simulated_as_brevitas(which, images, request):
    """python mode on the whole MNIST test set and the first 1,000 CIFAR-10 test images (the ZCU104
    build on the whole test set: make bench-sim; the VGGNet7s' recorded accuracy: tests/test_pretrained.py): its
    accuracy is the Brevitas model's and top-1 agrees on every image."""
    from sim.run import simulate
    out = request.getfixturevalue(f"{which}_build")
    r = simulate(out, "python", 0 if images == 10000 else images, str(DATA), log=lambda *a: None)
    assert r["images"] == images
    assert r["agreement_with_brevitas_pct"] == 100.0 and r["accuracy_pct"] == r["brevitas_accuracy_pct"]
    if which == "lenet5":  # the shipped model's recorded test accuracy (this also checks the record itself)
        folder = ROOT / "pretrained" / "lenet5" / "binary"
        recorded = json.loads((folder / "info.json").read_text())
        assert recorded["test_images"] == 10000
        assert round(r["accuracy_pct"], 2) == recorded["test_acc"] == float(
            (folder / "test_accuracy.txt").read_text().split()[0])


@pytest.mark.slow
@pytest.mark.verilator
def test_shipped_lenet5_hls_layers_in_cppsim_and_rtl_layers_in_verilator(lenet5_build):
    """auto mode on the shipped LeNet5: every HLS layer in cppsim, every RTL layer in Verilator, each
    bit-exact with the python mode on 40 real images."""
    from sim.cppsim import cppsim_available, cppsim_requirements
    from sim.run import simulate
    if not cppsim_available():
        missing_prerequisite(cppsim_requirements(), "see docs/simulation.md (cppsim)")
    r = simulate(lenet5_build, "auto", 40, str(DATA), log=lambda *a: None)
    modes = {l["name"]: l["mode"] for l in r["layers"]}
    assert all(m == ("rtlsim" if n.split("_")[-2] == "rtl" else "cppsim") for n, m in modes.items()), modes
    assert all(l["bit_exact_vs_python"] for l in r["layers"]), r["layers"]
    assert r["agreement_with_brevitas_pct"] == 100.0


@pytest.mark.slow
def test_half_width_vggnet7_hls_layers_in_cppsim(vgg_pynqz1_build):
    """Every HLS layer of the half-width VGGNet7 (Pynq-Z1 folding) compiled and bit-exact in cppsim."""
    from sim.cppsim import cppsim_available, cppsim_requirements
    from sim.run import simulate
    if not cppsim_available():
        missing_prerequisite(cppsim_requirements(), "see docs/simulation.md (cppsim)")
    r = simulate(vgg_pynqz1_build, "cppsim", 4, str(DATA), log=lambda *a: None)
    hls = [l for l in r["layers"] if l["name"].split("_")[-2] == "hls"]
    assert len(hls) >= 12 and all(l["mode"] == "cppsim" and l["bit_exact_vs_python"] for l in hls), hls
