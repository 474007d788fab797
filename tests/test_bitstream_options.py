"""The bitstream build's own options: timing closure from Vivado's post-route timing summary, FIFO depths
from a file instead of FINN's simulation-based sizing (and then no Vivado simulator needed)."""
import json
import subprocess
import sys

import pytest
from conftest import ROOT, init_checkpoint
from standin_shell import calls, ready_deps, shell

from hw_build.errors import BuildError


def timing_report(wns: float, tns: float, failing: int) -> str:
    """The Design Timing Summary of Vivado's report_timing_summary, in its layout (columns as Vivado prints)."""
    head = ("    WNS(ns)      TNS(ns)  TNS Failing Endpoints  TNS Total Endpoints      WHS(ns)      THS(ns)  "
            "THS Failing Endpoints  THS Total Endpoints     WPWS(ns)     TPWS(ns)  TPWS Failing Endpoints  "
            "TPWS Total Endpoints  ")
    dashes = ("    -------      -------  ---------------------  -------------------      -------      -------  "
              "---------------------  -------------------     --------     --------  ----------------------  "
              "--------------------  ")
    row = (f"{wns:11.3f}{tns:13.3f}{failing:23d}{41730:21d}{0.021:13.3f}{0.0:13.3f}{0:23d}{41730:21d}"
           f"{3.750:13.3f}{0.0:13.3f}{0:24d}{18410:22d}  ")
    return ("Timing Report\n\n| Clock Summary\nClock  Waveform(ns)  Period(ns)  Frequency(MHz)\nclk_fpga_0  "
            "{0.000 5.000}  10.000  100.000\n\n| Intra Clock Table\nClock  WNS(ns)  TNS(ns)\nclk_fpga_0  9.0  0.0\n\n"
            "------------------------------------------------------------------------------------------------\n"
            "| Design Timing Summary\n| ---------------------\n"
            "------------------------------------------------------------------------------------------------\n\n"
            f"{head}\n{dashes}\n{row}\n\n\n")


def test_timing_summary_is_read_and_negative_slack_stops_naming_a_clock_that_meets_it(tmp_path):
    from hw_build.timing import check_timing, parse_timing_summary
    report = tmp_path / "post_route_timing.rpt"
    report.write_text(timing_report(0.412, 0.0, 0))
    assert parse_timing_summary(report.read_text())["wns_ns"] == 0.412  # not the intra-clock table's 9.0
    t = check_timing(report, 10.0, False, "resume")
    assert t["met"] and t["tns_ns"] == 0.0 and t["total_endpoints"] == 41730 and "measured" in t["kind"]
    report.write_text(timing_report(-0.563, -120.345, 512))
    with pytest.raises(BuildError) as e:
        check_timing(report, 10.0, False, "resume")
    for needle in ("WNS -0.563 ns, TNS -120.345 ns on 512 endpoints", "--clock-ns 10.6", "(94 MHz",
                   "--allow-timing-violation"):
        assert needle in str(e.value), (needle, str(e.value))
    assert not check_timing(report, 10.0, True, "resume")["met"]
    with pytest.raises(BuildError, match="no post-route timing report"):
        check_timing(tmp_path / "none.rpt", 10.0, False, "resume")
    report.write_text("Vivado crashed\n")
    with pytest.raises(BuildError, match="not a Vivado timing summary"):
        check_timing(report, 10.0, False, "resume")


def test_the_summary_says_whether_timing_was_met(built):
    from hw_build.boards import get_board
    from hw_build.build_folder import BuildFolder
    from hw_build.estimates import summary
    est = {**BuildFolder(built).estimates(), "timing": {"wns_ns": -0.2, "tns_ns": -3.0, "clock_ns": 10.0, "met": False}}
    assert "timing (measured by Vivado, post-route): WNS -0.200 ns, TNS -3.000 ns at 10 ns: NOT met" in summary(
        est, get_board("Pynq-Z1"))


@pytest.mark.parametrize("content, needle", [
    ('{"fifo_depths": {}}', "needs a 'fifo_depths' object"),
    ('{"fifo_depths": {"StreamingFIFO_rtl_0": 1}}', "depth >= 2"),
    ('{"fifo_depths": {"StreamingFIFO_rtl_0": 4}, "impl_style": {"StreamingFIFO_rtl_0": "rtl"}}',
     "needs 'ram_style' for every FIFO"),
    ('{"depths": [2]}', "needs a 'fifo_depths' object"),
    ("not json", "is not valid JSON"),
])
def test_a_fifo_depths_file_that_finn_cannot_apply_is_refused_before_any_work(tmp_path, content, needle):
    from hw_build.config import check_fifo_depths
    f = tmp_path / "fifo.json"
    f.write_text(content)
    with pytest.raises(BuildError, match=needle):
        check_fifo_depths(f)


def test_fifo_depths_and_timing_options_need_bitstream(tmp_path):
    from hw_build.config import HwConfig
    for kw, flag in (({"fifo_depths": tmp_path / "f.json"}, "--fifo-depths"),
                     ({"allow_timing_violation": True}, "--allow-timing-violation")):
        with pytest.raises(BuildError, match=f"{flag} applies to the bitstream steps: add --bitstream"):
            HwConfig(checkpoint=tmp_path, **kw).validate()


def test_fifo_depths_go_to_finn_as_its_fifo_config_file(tmp_path):
    from hw_build.boards import get_board
    from hw_build.build_folder import BuildFolder
    from hw_build.config import HwConfig
    from hw_build.steps import make_finn_cfg, simulates
    f = tmp_path / "fifo.json"
    f.write_text('{"fifo_depths": {"StreamingFIFO_rtl_0": 32}, "impl_style": {"StreamingFIFO_rtl_0": "rtl"}, '
                 '"ram_style": {"StreamingFIFO_rtl_0": "auto"}}')
    hw = HwConfig(checkpoint=tmp_path, bitstream=True, fifo_depths=f, verify_images=0)
    cfg = make_finn_cfg(hw, get_board("Pynq-Z1"), BuildFolder(tmp_path / "b"), None)
    assert cfg.auto_fifo_depths is False and cfg.fifo_config_file == f.resolve() and not simulates(hw)
    assert "rtlsim_performance" not in [o.value for o in cfg.generate_outputs]
    sized = make_finn_cfg(HwConfig(checkpoint=tmp_path, bitstream=True), get_board("Pynq-Z1"), BuildFolder(tmp_path),
                          None)
    assert sized.auto_fifo_depths is True and sized.fifo_config_file is None


@pytest.mark.needs_data
@pytest.mark.finn
@pytest.mark.slow  # over 30 s on 2 cores (machine B: make test's list)
def test_fifo_depths_without_verification_build_with_no_simulator_binding(tmp_path):
    """--fifo-depths with --verify-images 0: nothing simulates, so the preflight asks for neither finn_xsi
    nor FIFO sizing's pieces, and the build runs (here: every HLS layer through the stand-in Vitis HLS) with
    FINN's simulator binding not built."""
    ck = init_checkpoint(tmp_path / "tiny.pt", model="lenet5", dataset="mnist", width_scale=0.25)
    env = ready_deps(shell(tmp_path))
    depths = tmp_path / "fifo.json"
    names = [f"StreamingFIFO_rtl_{i}" for i in range(64)]
    depths.write_text(json.dumps({"fifo_depths": dict.fromkeys(names, 2), "impl_style": dict.fromkeys(names, "rtl"),
                                  "ram_style": dict.fromkeys(names, "auto")}))
    args = ["--checkpoint", ck, "--target-fps", 1000, "--board", "Pynq-Z1", "--bitstream", "--verify-images", 0,
            "--fifo-depths", depths, "--out", tmp_path / "b"]
    r = subprocess.run([sys.executable, "-m", "hw_build", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 3 and "finn_xsi" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: set_fifo_depths needs the RTL Vitis HLS exports")
    assert any(c["tool"] == "vitis_hls" and c.get("ok") for c in calls(env))
    state = json.loads((tmp_path / "b" / "build_state.json").read_text())
    assert state["config"]["fifo_depths"] == str(depths) and "fifo_depths" in state["inputs_sha256"]


@pytest.mark.needs_data
@pytest.mark.finn
def test_a_fifo_depths_file_is_read_by_finns_own_reader(built, tmp_path):
    """The --fifo-depths format is the one FINN's own ApplyFIFODepthsFromFile reads (and FINN's
    step_set_fifo_depths writes as fifo_sizing.json): every FIFO of the design gets its depth from the file."""
    import json as _json

    from finn.transformation.fpgadataflow.set_fifo_depths import ApplyFIFODepthsFromFile
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hw_build.boards import get_board
    from hw_build.build_folder import BuildFolder
    from hw_build.config import check_fifo_depths
    from hw_build.transforms import InsertMinimalFIFOs
    folder = BuildFolder(built)
    model = ModelWrapper(str(folder.last_stage("hw_codegen"))).transform(InsertMinimalFIFOs(get_board("Pynq-Z1").part))
    fifos = [n.name for n in model.get_nodes_by_op_type("StreamingFIFO_rtl")]
    f = tmp_path / "fifo_depths.json"
    f.write_text(_json.dumps({"fifo_depths": {name: 2 + 2 * i for i, name in enumerate(fifos)},
                              "impl_style": dict.fromkeys(fifos, "rtl"), "ram_style": dict.fromkeys(fifos, "auto")}))
    check_fifo_depths(f)  # the project's check accepts it
    model = model.transform(ApplyFIFODepthsFromFile(f))  # and FINN applies it
    assert fifos and [getCustomOp(n).get_nodeattr("depth") for n in model.get_nodes_by_op_type("StreamingFIFO_rtl")] \
        == [2 + 2 * i for i in range(len(fifos))]
