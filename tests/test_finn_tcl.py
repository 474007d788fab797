"""The bitstream path with stand-in tools that run FINN's Tcl (tests/standin/): FINN set up by FINN's own
functions, the README's `make bitstream` command through every HLS layer's Vitis HLS script, and FINN's Tcl
for FIFO sizing's per-layer IPs, the stitched design and the Zynq project checked command by command."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from standin_shell import STANDIN, calls, ready_deps, shell

pytestmark = [pytest.mark.finn]
FINN_SITE = Path(__import__("finn").__file__).parent


def _py(env, code, *args, timeout=300):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


# ---- FINN bootstrapped by FINN's own code ----------------------------------------------------------------
ENV_KEYS = ("FINN_BUILD_DIR", "FINN_DEPS", "FINN_DEPS_DEFINITIONS", "NUM_DEFAULT_WORKERS", "FINN_RTLLIB",
            "FINN_CUSTOM_HLS", "XILINX_LOCAL_USER_DATA", "LD_LIBRARY_PATH", "PATH", "PLATFORM_REPO_PATHS",
            "PYTHONPATH")
DUMP = ("import json, os, multiprocessing as mp; print(json.dumps({**{k: os.environ.get(k) for k in %r}, "
        "'start_method': mp.get_start_method()}))" % (ENV_KEYS,))


def test_finn_is_set_up_as_finns_own_command_line_sets_it_up(tmp_path):
    """What finn-plus's prepare_finn sets (its settings wizard, XSI build and dependency update left out, as a
    build never downloads) equals what the project's set-up sets, in a Vivado shell."""
    env = shell(tmp_path)
    build = tmp_path / "b" / "finn_tmp"
    build.parent.mkdir()  # FINN makes the last folder only
    finns = ("import sys; from pathlib import Path; import finn.xsi; finn.xsi.ensure_available = lambda: True; "
             "from finn.interface.settings import FINNSettings; from finn.interface.run_finn import prepare_finn; "
             "s = FINNSettings.init(flow_config=Path(sys.argv[1]) / 'dummy.yaml', finn_build_dir=sys.argv[1], "
             "finn_deps=sys.argv[2], automatic_dependency_updates=False); prepare_finn(s, True, batch=True)\n" + DUMP)
    ours = ("import sys; from pathlib import Path; from hw_build import finn_env; finn_env.setup(Path(sys.argv[1]))\n"
            + DUMP)
    a, b = _py(env, finns, build, env["FINN_DEPS"]), _py(env, ours, build)
    assert a.returncode == 0 and b.returncode == 0, a.stderr[-2000:] + b.stderr[-2000:]
    finn, mine = json.loads(a.stdout.strip().splitlines()[-1]), json.loads(b.stdout.strip().splitlines()[-1])
    # LD_LIBRARY_PATH: FINN's folders in FINN's order, after this interpreter's own (finn_env.xilinx_library_paths)
    ours, theirs = mine.pop("LD_LIBRARY_PATH").split(":"), finn.pop("LD_LIBRARY_PATH").split(":")
    assert [p for p in ours if p in theirs] == theirs and len(ours) - len(theirs) <= 1, (ours, theirs)
    assert mine == finn, {k: (mine[k], finn[k]) for k in mine if mine[k] != finn[k]}
    assert f"{env['XILINX_VIVADO']}/lib/lnx64.o" in ours and mine["start_method"] == "spawn"


def _finn_reads() -> set[str]:
    """Every `$::env(NAME)` of FINN's Tcl templates and every os.environ["NAME"] FINN reads without a default
    in the modules a build runs (custom ops, transformations, builder, utilities, XSI)."""
    names = set()
    for f in FINN_SITE.rglob("*.py"):
        text = f.read_text(errors="replace")
        names |= set(re.findall(r"::env\((\w+)\)", text))
        if f.relative_to(FINN_SITE).parts[0] in ("custom_op", "transformation", "builder", "util", "xsi", "core"):
            names |= set(re.findall(r'os\.environ\["(\w+)"\](?!\s*=[^=])', text))
    return names


# read by FINN only after it set them itself, or only on a Slurm cluster / in FINN's own loop body builds
SET_BY_FINN_FIRST = {"RTLSIM_TRACE_DEPTH", "LIVENESS_THRESHOLD", "PWD", "SLURM_JOB_ID", "FINN_SETTINGS"}


def test_every_variable_finn_reads_is_set_to_something_that_exists(tmp_path):
    env = shell(tmp_path)
    names = sorted(_finn_reads() - SET_BY_FINN_FIRST)
    assert {"FINN_RTLLIB", "FINN_CUSTOM_HLS", "XILINX_VIVADO"} <= set(names), names
    code = ("import sys, os, json; from pathlib import Path; from hw_build import finn_env; "
            "finn_env.setup(Path(sys.argv[1])); print(json.dumps({k: os.environ.get(k) for k in sys.argv[2:]}))")
    r = _py(env, code, tmp_path / "b" / "finn_tmp", *names)
    values = json.loads(r.stdout.strip().splitlines()[-1])
    unset = [k for k, v in values.items() if not v]
    missing = [f"{k}={v}" for k, v in values.items() if k != "PATH" and not Path(v).exists()]  # PATH: a list
    assert not unset and not missing, (unset, missing)


def test_a_command_in_a_vivado_shell_restarts_once_with_xilinx_libraries_on_the_loader_path(tmp_path):
    """finn_xsi dlopens Vivado's simulator kernel, whose dependencies the loader finds only through the
    LD_LIBRARY_PATH the process started with: the command restarts itself once, keeping its command line."""
    env, seen = shell(tmp_path), tmp_path / "starts.txt"
    code = ("import os, sys; open(sys.argv[1], 'a').write(os.environ.get('LD_LIBRARY_PATH', '') + '\\n'); "
            "from hw_build.finn_env import reexec_for_xilinx_libraries; reexec_for_xilinx_libraries(); "
            "print('args', sys.argv[1:])")
    r = _py(env, code, seen, "--keep", "me")
    starts = seen.read_text().splitlines()
    assert r.returncode == 0 and "args ['" + str(seen) + "', '--keep', 'me']" in r.stdout, r.stderr[-1500:]
    assert len(starts) == 2 and f"{env['XILINX_VIVADO']}/lib/lnx64.o" in starts[1].split(":"), starts
    outside = {k: v for k, v in env.items() if k not in ("XILINX_VIVADO", "XILINX_HLS")}
    seen.unlink()
    assert _py(outside, code, seen).returncode == 0 and len(seen.read_text().splitlines()) == 1  # no Vivado: no restart


# ---- the stand-in's own checks ---------------------------------------------------------------------------
def _standin(env, tool, tcl: str, tmp_path):
    script = tmp_path / "s.tcl"
    script.write_text(tcl)
    args = [str(script)] if tool == "vitis_hls" else ["-mode", "batch", "-source", str(script)]
    return subprocess.run([sys.executable, str(STANDIN), tool, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("tool, tcl, needle", [
    ("vivado", "create_project p . -part xc7z020clg400-1\nlaunch_the_rockets now\n",
     "no stub for 'launch_the_rockets'"),
    ("vivado", "create_project p . -part xc7z999-1\n", "part xc7z999-1 is not installed"),
    ("vivado", "create_project p . -part xc7z020clg400-1\nadd_files -norecurse /no/such.v\n",
     "HDL/source file /no/such.v does not exist"),
    ("vivado", "create_project p . -part xc7z020clg400-1\ncreate_bd_design d\n"
               "create_bd_cell -type ip -vlnv xilinx.com:hls:MVAU_hls_0:1.0 MVAU_hls_0\n",
     "IP xilinx.com:hls:MVAU_hls_0:1.0 is not in the catalog"),
    ("vivado", "create_project p . -part xc7z020clg400-1\ncreate_bd_design d\nconnect_bd_net [get_bd_pins a/ap_clk] "
               "[get_bd_pins b/ap_clk]\n", "no pin /a/ap_clk (cell /a: not created)"),
    ("vivado", "set_property ip_repo_paths [list $::env(FINN_RTLLIB)/memstream] [current_project]\n",
     "can't read \"::env(FINN_RTLLIB)\": no such variable"),
    ("vitis_hls", "open_project p\nset_top f\nopen_solution sol1\nset_part xc7z020clg400-1\ncsynth_design\n",
     "no clock set before synthesis"),
])
def test_the_standin_refuses_what_a_real_tool_refuses(tmp_path, tool, tcl, needle):
    env = {k: v for k, v in shell(tmp_path).items() if k != "FINN_RTLLIB"}
    r = _standin(env, tool, tcl, tmp_path)
    assert r.returncode == 1 and needle in r.stderr, r.stderr[-1500:]
    log = tmp_path / f"{tool}.log"
    assert log.is_file() and "ERROR: [stand-in]" in log.read_text()


def test_the_standin_answers_the_preflights_part_query_from_its_installed_list(tmp_path):
    env = {**shell(tmp_path), "STANDIN_PARTS": "xczu7ev-ffvc1156-2-e"}
    tcl = 'puts "n [llength [get_parts -quiet {xc7z020clg400-1}]] [llength [get_parts -quiet {xczu7ev-*}]]"\n'
    r = _standin(env, "vivado", tcl, tmp_path)
    assert r.returncode == 0 and "n 0 1" in r.stdout, r.stderr


# ---- make bitstream with the stand-ins ---------------------------------------------------------------------
RUN = ("import sys; from hw_build import preflight; preflight.xsi_problem = lambda release: None; "  # the fixture
       "from hw_build.__main__ import main; sys.exit(main(sys.argv[1:]))")


@pytest.fixture(scope="module")
def bitstream(tmp_path_factory):
    """`make bitstream MODEL=lenet5 BOARD=Pynq-Z1` (the shipped folding, 10 test images for the stitched
    design) in the stand-in shell. Every preflight item passes but FINN's simulator binding, which only a real
    Vivado can build: that one check is stood in."""
    tmp = tmp_path_factory.mktemp("bitstream")
    env, out = ready_deps(shell(tmp)), tmp / "b"
    r = subprocess.run([sys.executable, "-c", RUN, "--checkpoint", "pretrained/lenet5/binary", "--board", "Pynq-Z1",
                        "--bitstream", "--verify-images", "10", "--out", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1200)
    return env, out, r


@pytest.mark.slow
@pytest.mark.needs_data
def test_bitstream_passes_hw_ipgen_on_every_hls_layer_and_stops_where_real_output_is_needed(bitstream):
    env, out, r = bitstream
    err = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert err.startswith("error: set_fifo_depths needs the RTL Vitis HLS exports for every HLS layer"), err
    assert f"--replay {out} --bitstream --start-step hw_ipgen" in err
    import onnx

    from hw_build.build_folder import BuildFolder
    hls = {n.name for n in onnx.load(str(BuildFolder(out).last_stage("hw_ipgen"))).graph.node
           if n.op_type.endswith("_hls")}
    ran = {c["args"][0].rsplit("hls_syn_", 1)[1].removesuffix(".tcl"): c for c in calls(env)
           if c["tool"] == "vitis_hls" and c["args"] != ["-version"]}
    assert hls and set(ran) == hls and all(c["ok"] for c in ran.values()), {k: c.get("error") for k, c in ran.items()}
    for layer, c in ran.items():
        assert 'set config_proj_part "xc7z020clg400-1"' in c["tcl"] and f'set config_toplevelfxn "{layer}"' in c["tcl"]
        assert f'set config_bnnlibdir "{Path(env["FINN_DEPS"]) / "finn-hlslib"}"' in c["tcl"]
    state = json.loads((out / "build_state.json").read_text())
    assert state["stopped_at"] == "set_fifo_depths" and state["done"][-1] == "hw_ipgen", state


@pytest.mark.slow
@pytest.mark.needs_data
def test_finns_configuration_and_verification_inputs_are_in_the_build_folder(bitstream):
    """The README's path stages a new build with a folding file: FINN's configuration must point at the
    adopted folder, not the staging one, and its stitched-IP verification inputs must exist."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    env, out, r = bitstream
    cfg = DataflowBuildConfig.from_json((out / "finn" / "dataflow_build_config.json").read_text())
    paths = {k: v for k, v in json.loads(cfg.to_json()).items() if isinstance(v, str) and v.startswith("/")}
    assert {"output_dir", "verify_input_npy", "verify_expected_output_npy", "folding_config_file"} <= set(paths)
    assert all(Path(v).exists() for v in paths.values()), paths
    assert all(str(out) in v for k, v in paths.items() if k.startswith(("verify", "output"))), paths
    import numpy as np
    assert np.load(cfg.verify_input_npy).shape == (10, 1, 28, 28)
    assert np.load(cfg.verify_expected_output_npy).shape == (10, 1)


@pytest.mark.slow
@pytest.mark.needs_data
@pytest.mark.parametrize("mode, scripts", [("fifo_nodes", None), ("stitched", 1), ("zynq", 4)])
def test_finns_vivado_tcl_runs_through_the_standin_command_by_command(bitstream, mode, scripts):
    """FINN's own Tcl for the stitched designs FIFO sizing builds per layer, the whole stitched design and the
    Zynq project (generated by FINN's transformations from this build), each run to its end in the stand-in:
    every file, IP, module, cell and pin it names exists, every part is installed."""
    env, out, _ = bitstream
    before = len(calls(env))
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "finn_tcl.py"), str(out), mode], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    vivado = [c for c in calls(env)[before:] if c["tool"] == "vivado"]
    if scripts is None:  # one stitched design per layer
        import onnx

        from hw_build.build_folder import BuildFolder
        scripts = len(onnx.load(str(BuildFolder(out).last_stage("hw_ipgen"))).graph.node)
    assert len(vivado) == scripts and all(c["ok"] for c in vivado), [c.get("error") for c in vivado]
    raised = json.loads(r.stdout.strip().splitlines()[-1])["raised"]
    if mode == "zynq":  # the stand-in synthesizes nothing: FINN finds no bitfile, after its last Tcl ran
        assert raised and "no bitfile found" in raised[0] and "board_part" in vivado[-1]["tcl"], raised
        assert "create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7" in vivado[-1]["tcl"] or \
            "processing_system7" in vivado[-1]["tcl"]
    else:
        assert raised == [], raised
