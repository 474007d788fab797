"""The deployment package's driver settings against FINN's bitstream flow replayed without Vivado.

FINN's own sequence, written out here from its sources rather than taken from hw_build: the hw_codegen graph
with the FIFOs and data-width converters of step_set_fifo_depths (its force_minimal_fifos branch; the sizing
strategies insert the same nodes), ZynqBuild's preparation transformations in its order (make_zynq_proj.py),
the instance names MakeZYNQProject gives the partitions (idmaN, odmaN, else the node's name), its per-partition
kernel build (InsertFIFO, SpecializeLayers, node names prefixed with the partition's) and FINN's MakePYNQDriver.
The package must hold the same stream shapes, instance names and runtime-weight files
(URAM weight memories on the UltraScale+ boards). With Vivado, step check_driver compares the real ones.
"""
import json
import shutil
from pathlib import Path

import pytest
from conftest import missing_prerequisite

from hw_build.boards import get_board
from hw_build.build_folder import BuildFolder
from hw_build.driver_check import check_driver, differences
from hw_build.errors import BuildError

pytestmark = [pytest.mark.needs_data, pytest.mark.finn]


def finn_flow_driver(build_dir, board_name: str, tmp_path):
    """FINN's driver folder for the build as the bitstream flow would make it (before Vivado's part)."""
    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from finn.transformation.fpgadataflow.floorplan import Floorplan
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
    from finn.transformation.fpgadataflow.make_driver import MakePYNQDriver
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.qonnx.give_unique_node_names_recursive import GiveUniqueNodeNamesRecursive
    from finn.util.basic import pynq_native_port_width
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    from hw_build.finn_env import setup
    setup(tmp_path / "finn_tmp")  # FINN's own folders here: not those of whatever build this worker ran last
    board, folder = get_board(board_name), BuildFolder(build_dir)
    state = folder.read_state()
    model = ModelWrapper(str(folder.last_stage("hw_codegen")))
    for t in (InsertDWC(), InsertFIFO(create_shallow_fifos=True), SpecializeLayers(board.part),
              GiveUniqueNodeNamesRecursive(), GiveReadableTensorNames()):  # step_set_fifo_depths
        model = model.transform(t)
    model = model.transform(InferDataLayouts())  # ZynqBuild.apply
    for t in (InsertIODMA(pynq_native_port_width[board.finn_board]), InsertDWC(), SpecializeLayers(board.part),
              Floorplan(), CreateDataflowPartition(partition_model_dir=str(tmp_path / "partitions"))):
        model = model.transform(t).transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())
    idma = odma = 0
    for node in model.graph.node:  # MakeZYNQProject's instance names
        producer = model.find_producer(node.input[0]) if node.input else None
        name = node.name
        if producer is None:
            name, idma = f"idma{idma}", idma + 1
        elif not model.find_consumers(node.output[0]):
            name, odma = f"odma{odma}", odma + 1
        getCustomOp(node).set_nodeattr("instance_name", name)
        kernel = ModelWrapper(getCustomOp(node).get_nodeattr("model"))  # _build_sdp_kernel, before its IP
        kernel = kernel.transform(InsertFIFO()).transform(SpecializeLayers(board.part))
        kernel.transform(GiveUniqueNodeNames(node.name + "_")).save(getCustomOp(node).get_nodeattr("model"))
    model = model.transform(MakePYNQDriver("zynq-iodma", "FINNDMAOverlay", clk_period_ns=state["clock_ns"],
                                           board=board.finn_board))
    return model.get_metadata_prop("pynq_driver_dir")


def _same_as_finns_flow(build_dir, board, tmp_path, runtime_weights: bool):
    deploy = BuildFolder(build_dir).deploy
    finns = finn_flow_driver(build_dir, board, tmp_path)
    assert differences(deploy, finns) == []
    io = json.loads((deploy / "settings.json").read_text())["driver_information"]["io_shape_dict"]
    assert io["idma_names"] == ["idma0"] and io["odma_names"] == ["odma0"]
    assert bool(sorted((deploy / "runtime_weights").glob("*.dat"))) == runtime_weights
    if runtime_weights:  # the real flow names each file after the prefixed node: the driver reads the numbers
        ours = sorted(f.name for f in (deploy / "runtime_weights").glob("*.dat"))
        real = sorted(f.name for f in (Path(finns) / "runtime_weights").glob("*.dat"))
        assert ours != real and [n.split("_")[:2] for n in ours] == [n.split("_")[:2] for n in real], (ours, real)
        assert all("StreamingDataflowPartition_" in n for n in real), real


@pytest.mark.slow
def test_lenet5_pynq_z1_package_matches_finns_flow(lenet5_build, tmp_path):
    _same_as_finns_flow(lenet5_build, "Pynq-Z1", tmp_path, runtime_weights=False)


@pytest.mark.slow
def test_vggnet7_zcu104_package_matches_finns_flow(vgg_zcu104_build, tmp_path):
    _same_as_finns_flow(vgg_zcu104_build, "ZCU104", tmp_path, runtime_weights=True)


@pytest.mark.slow
@pytest.mark.long  # 12 min on 2 cores (a second VGGNet7 build and FINN's driver for it): make test-long
def test_vggnet7_kv260_package_matches_finns_flow(request, tmp_path):
    _same_as_finns_flow(request.getfixturevalue("vgg_kv260_build"), "KV260", tmp_path, runtime_weights=True)


def test_check_driver_names_each_difference_from_finns_driver(built, tmp_path):
    """step check_driver (after FINN's make_driver in a bitstream build) on a copy changed as a drifted FINN
    driver would be: every difference named with both values; the same folder passes."""
    ours = shutil.copytree(BuildFolder(built).driver_settings, tmp_path / "ours")
    finns = shutil.copytree(ours, tmp_path / "driver")
    check_driver(ours, finns)
    for folder, name in ((ours, "1_0_MVAU_hls_1.dat"), (finns, "1_0_StreamingDataflowPartition_1_MVAU_hls_1.dat")):
        (folder / "runtime_weights").mkdir(exist_ok=True)  # MakeZYNQProject's prefix: the same file to the driver
        (folder / "runtime_weights" / name).write_text("0000ffff\n")
    check_driver(ours, finns)
    (finns / "runtime_weights" / "1_0_StreamingDataflowPartition_1_MVAU_hls_1.dat").write_text("0000fffe\n")
    with pytest.raises(BuildError, match=r"runtime_weights/1_0_MVAU_hls_1.dat \(FINN's 1_0_StreamingDataflowPartition"
                                         r"_1_MVAU_hls_1.dat\): contents differ"):
        check_driver(ours, finns)
    s = json.loads((finns / "settings.json").read_text())
    s["driver_information"]["io_shape_dict"]["idma_names"] = ["idma1"]
    s["driver_information"]["fclk_mhz"] = 200.0
    (finns / "settings.json").write_text(json.dumps(s))
    (finns / "runtime_weights").mkdir(exist_ok=True)
    (finns / "runtime_weights" / "2_0_MVAU_hls_1.dat").write_text("0\n")
    with pytest.raises(BuildError) as e:
        check_driver(ours, finns)
    for needle in ("'idma1'", "fclk_mhz: 100.0 here, 200.0 in FINN's", "['2_0_MVAU_hls_1.dat'] only in FINN's",
                   "the package is not written"):
        assert needle in str(e.value), (needle, str(e.value))
    with pytest.raises(BuildError, match="left no settings.json"):
        check_driver(ours, tmp_path / "nothing")


def _finn_verdicts(folder: BuildFolder, answers, expected) -> None:
    """FINN's own verify_step, under the step name of its stitched-IP rtlsim, writes the per-image verdict files:
    it executes, instead of the stitched design (Vivado's), a one-node graph answering each image's class (the
    image's pixel value), against the expected classes written as the build writes them."""
    import numpy as np
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper

    from hw_build.config import HwConfig
    from hw_build.finn_env import setup
    from hw_build.steps import make_finn_cfg
    from hw_build.stitched import STEP, write_io
    setup(folder.root / "finn_tmp")
    from finn.builder.build_dataflow_steps import verify_step
    images = np.broadcast_to(np.array(answers)[:, None, None, None], (len(answers), 1, 28, 28))
    write_io(folder, images.astype(np.uint8), np.array(expected))
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["y"], axes=[2, 3], keepdims=0)], "design",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])])
    model = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    cfg = make_finn_cfg(HwConfig(checkpoint=folder.root, bitstream=True, verify_images=len(answers)),
                        get_board("Pynq-Z1"), folder, None)
    verify_step(model, cfg, STEP, need_parent=False)


def test_stitched_ip_verdicts_stop_the_build_before_synthesis(tmp_path, monkeypatch):
    """step check_stitched_ip reads the per-image verdicts FINN's verify_step writes (written here by that
    function): a wrong class or a missing image (a stall: FINN's simulation stopped before it) is refused
    naming the image."""
    from hw_build.stitched import STEP, check
    monkeypatch.setenv("FINN_BUILD_DIR", str(tmp_path / "finn_tmp"))  # setup() points FINN there; restored after
    folder = BuildFolder(tmp_path / "wrong")
    _finn_verdicts(folder, answers=[1, 2, 7], expected=[1, 2, 3])
    assert sorted(f.name for f in folder.finn_verification.glob("*.npy")) == [
        f"verify_{STEP}_0_SUCCESS.npy", f"verify_{STEP}_1_SUCCESS.npy", f"verify_{STEP}_2_FAIL.npy"]
    with pytest.raises(BuildError, match=r"class \[7.0\] for test image 2, the Brevitas model 3 \(1 of 3"):
        check(folder)
    (folder.finn_verification / f"verify_{STEP}_2_FAIL.npy").unlink()
    with pytest.raises(BuildError, match=r"no result for test images \[2\].*a stall"):
        check(folder)
    right = BuildFolder(tmp_path / "right")
    _finn_verdicts(right, answers=[1, 2, 3], expected=[1, 2, 3])
    assert check(right) == 3


def _finn_rtlsim_performance(built, folder, monkeypatch):
    """FINN's own step_measure_rtlsim_performance on the built LeNet5 writes rtlsim_performance.json. Under it,
    the node-connected simulation (xsi binaries Vivado compiles) is stood in: its arguments are bound to FINN's
    own signatures, and each layer answers 10 samples at the cycles FINN's AnnotateCycles estimates for it."""
    import inspect

    import finn.builder.build_dataflow_steps as bds
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hw_build.config import HwConfig
    from hw_build.steps import make_finn_cfg
    real = bds.NodeConnectedSimulation

    class StandInSimulation:
        def __init__(self, model, *args, **kwargs):
            bound = inspect.signature(real.__init__).bind(self, model, *args, **kwargs)
            assert bound.arguments["performance_sim"] is True and bound.arguments["fpgapart"] == "xc7z020clg400-1"
            self.layers = [n for n in model.transform(AnnotateCycles()).graph.node if "FIFO" not in n.op_type]

        def simulate(self, *args, **kwargs):
            depths = inspect.signature(real.simulate).bind(self, *args, **kwargs).arguments["depth"]
            assert len(depths) == len(self.layers)  # one list of output FIFO depths per layer
            cycles = [getCustomOp(n).get_nodeattr("cycles_estimate") for n in self.layers]
            return [{"name": n.name, "fifo_utilization": [], "fifo_depth": d, "cycles": 10 * c, "samples": 10,
                     "intervals": [c] * 9, "fifo_cycles_until_first_valid": [], "latency_cycles": [c]}
                    for n, d, c in zip(self.layers, depths, cycles)], False

    monkeypatch.setattr(bds, "NodeConnectedSimulation", StandInSimulation)
    child = ModelWrapper(str(sorted(BuildFolder(built).intermediate.glob("*.onnx"))[-1]))
    hw = HwConfig(checkpoint=built, bitstream=True)
    cfg = make_finn_cfg(hw, get_board("Pynq-Z1"), folder, None)
    assert "rtlsim_performance" in [o.value for o in cfg.generate_outputs]
    bds.step_measure_rtlsim_performance(child, cfg)


def test_rtlsim_performance_and_fifo_depths_are_recorded_as_simulated(built, tmp_path, monkeypatch):
    """step record_rtlsim: rtlsim_performance.json as FINN's step writes it (one entry per layer) into
    estimates.json and the summary; the slowest layer sets the simulated FPS (FINN's fifo_sizing.json: the
    next test)."""
    from hw_build.estimates import summary
    from hw_build.stitched import record
    folder = BuildFolder(tmp_path)
    folder.report.mkdir()
    shutil.copyfile(BuildFolder(built).estimates_file, folder.estimates_file)
    folder.finn_report.mkdir(parents=True)
    _finn_rtlsim_performance(built, folder, monkeypatch)
    est = record(folder)
    built_est = BuildFolder(built).estimates()
    assert len(est["rtlsim"]["results"]) >= 5 and "simulated" in est["rtlsim"]["kind"]
    assert est["rtlsim"]["fps"] == pytest.approx(built_est["fps"], rel=1e-9)  # the same bottleneck, the same clock
    assert folder.estimates() == est
    text = summary(est, get_board("Pynq-Z1"))
    assert f"simulated: {est['rtlsim']['fps']:,.0f} FPS in FINN's stitched-IP rtlsim" in text
    assert "FIFOs sized by FINN" not in text  # no fifo_sizing.json: the unsized FIFOs FINN inserts


def test_fifo_depths_as_finns_step_reports_them_are_recorded(built, tmp_path, monkeypatch):
    """fifo_sizing.json written by FINN's own step_set_fifo_depths on the built LeNet5 (depths from a file, as
    --fifo-depths gives them; the code and IP generation the step runs next need Vitis HLS and are left out):
    record_rtlsim keeps FINN's depths, the summary states them, and the copy it writes is a file --fifo-depths
    takes."""
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.qonnx.give_unique_node_names_recursive import GiveUniqueNodeNamesRecursive
    from qonnx.core.modelwrapper import ModelWrapper

    from hw_build.config import HwConfig, check_fifo_depths
    from hw_build.estimates import summary
    from hw_build.finn_env import setup
    from hw_build.steps import make_finn_cfg
    from hw_build.stitched import record
    monkeypatch.setenv("FINN_BUILD_DIR", str(tmp_path / "finn_tmp"))
    setup(tmp_path / "finn_tmp")
    import finn.builder.build_dataflow_steps as bds
    for step in ("step_hw_codegen", "step_hw_ipgen"):
        monkeypatch.setattr(bds, step, lambda model, cfg, parent_node=None: model)
    child = ModelWrapper(str(sorted(BuildFolder(built).intermediate.glob("*.onnx"))[-1]))
    board = get_board("Pynq-Z1")
    names = [n.name for n in child.transform(InsertDWC()).transform(InsertFIFO(create_shallow_fifos=True))
             .transform(SpecializeLayers(board.part)).transform(GiveUniqueNodeNamesRecursive())
             .get_nodes_by_op_type("StreamingFIFO_rtl")]
    asked = {name: 2 ** (2 + i % 4) for i, name in enumerate(names)}
    (tmp_path / "depths.json").write_text(json.dumps({"fifo_depths": asked, "impl_style": dict.fromkeys(asked, "rtl"),
                                                      "ram_style": dict.fromkeys(asked, "auto")}))
    folder = BuildFolder(tmp_path / "b")
    folder.report.mkdir(parents=True)
    shutil.copyfile(BuildFolder(built).estimates_file, folder.estimates_file)
    hw = HwConfig(checkpoint=built, bitstream=True, verify_images=0, fifo_depths=str(tmp_path / "depths.json"))
    bds.step_set_fifo_depths(child, make_finn_cfg(hw, board, folder, None))
    est = record(folder)
    assert len(names) >= 5 and est["fifo_depths"] == asked
    assert f"FIFOs sized by FINN: {len(names)}, depths 4..32" in summary(est, board)
    check_fifo_depths(folder.report / "fifo_depths.json")  # what the next build's --fifo-depths reads


@pytest.mark.parametrize("verify_images, expected", [(-1, 10), (0, 0), (25, 25)])
def test_bitstream_builds_ask_finn_for_its_stitched_ip_rtlsim(tmp_path, verify_images, expected):
    from hw_build.config import HwConfig
    from hw_build.steps import make_finn_cfg
    folder = BuildFolder(tmp_path)
    cfg = make_finn_cfg(HwConfig(checkpoint=tmp_path, bitstream=True, verify_images=verify_images),
                        get_board("Pynq-Z1"), folder, None)
    assert [s.value for s in cfg.verify_steps] == (["stitched_ip_rtlsim"] if expected else [])
    assert cfg.verify_input_npy == str(folder.stitched_io / "input.npy")
    from hw_build.stitched import stitched_images
    assert stitched_images(verify_images) == expected


def test_hwh_check_reads_the_design_with_pynqs_parser(built, tmp_path):
    """step check_hwh on a real Vivado .hwh (the one pynqmetadata ships for its own tests, a DMA and an HLS
    core), its instances renamed as a FINN design names them: passes when the driver's IODMAs and weight
    ports are there with room for the weights, and names what is missing or too small."""
    import re
    from pathlib import Path

    import pynqmetadata

    from hw_build.hwh import check_hwh, ip_dict
    source = Path(pynqmetadata.__file__).parent / "tests" / "hwhs" / "resizer.hwh"
    if not source.is_file():
        missing_prerequisite(f"pynqmetadata's test design {source}",
                             "pip install pynqmetadata==0.2.0 (requirements/deps.txt) installs it")
    package = shutil.copytree(BuildFolder(built).deploy, tmp_path / "deploy")
    text = source.read_text()
    finn_like = tmp_path / "finn.hwh"
    finn_like.write_text(re.sub(r"\baxi_dma_0\b", "idma0", re.sub(r"\bresize_accel_0\b", "odma0", text)))
    assert {"idma0", "odma0"} <= set(ip_dict(finn_like))
    check_hwh(finn_like, package)
    with pytest.raises(BuildError, match="no IP idma0 \\(the driver's idma_names\\); no IP odma0"):
        check_hwh(source, package)
    (package / "runtime_weights").mkdir(exist_ok=True)
    (package / "runtime_weights" / "2_0_MVAU_hls_6.dat").write_text("0000ffff\n" * 20000)
    with pytest.raises(BuildError, match="no IP StreamingDataflowPartition_2 for the runtime weights 2_0_MVAU"):
        check_hwh(finn_like, package)
    with_port = tmp_path / "port.hwh"
    with_port.write_text(re.sub(r"\baxi_dma_0\b", "idma0", re.sub(r"\bresize_accel_0\b",
                                                                  "StreamingDataflowPartition_2", text)))
    with pytest.raises(BuildError,
                       match="StreamingDataflowPartition_2 maps 65536 bytes, 2_0_MVAU_hls_6.dat needs 80000"):
        check_hwh(with_port, package)
