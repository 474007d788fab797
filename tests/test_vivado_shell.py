"""In an FPGA engineer's shell: Vivado sourced (a stand-in tree on PATH and in XILINX_VIVADO whose tools run
the Tcl they get, tests/standin/), FINN's Vivado simulator binding not built, FINN's deps folder empty. Everything
that does not need Vivado works; --bitstream is refused before the first step, naming each missing piece."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, init_checkpoint
from standin_shell import calls, deps_check, hw_build, ready_deps, shell

pytestmark = [pytest.mark.finn]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return init_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", model="lenet5", dataset="mnist",
                           width_scale=0.25)


@pytest.mark.parametrize("vivado_folder", ["Xilinx/Vivado/2024.2", "opt/vivado"],
                         ids=["release folder", "folder without a release"])
def test_build_to_estimates_with_vivado_sourced(tiny, tmp_path, vivado_folder):
    r = hw_build(shell(tmp_path, vivado_folder), "--checkpoint", tiny, "--target-fps", 1000, "--verify-images", 0,
                  "--stop-after", "estimates", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "b" / "report" / "estimates.json").is_file() and "XSI" not in r.stderr


@pytest.mark.needs_data
@pytest.mark.slow  # over 30 s on 2 cores (machine B: make test's list)
def test_build_sim_and_driver_run_as_without_vivado(tiny, tmp_path):
    """The whole no-tools path in the Vivado shell: the build to its package, the simulator and the driver's
    simulation backend, with FINN's simulator binding not built."""
    env = shell(tmp_path, "Xilinx/Vivado/2024.2")
    r = hw_build(env, "--checkpoint", tiny, "--target-fps", 1000, "--verify-images", 20, "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr[-2000:]
    for argv in (["-m", "sim", "--build", tmp_path / "b", "--mode", "python", "-n", 20],
                 [ROOT / "driver" / "infer.py", "--backend", "sim", "--package", tmp_path / "b" / "deploy", "-n", 20,
                  "--no-progress"]):
        r = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (argv, r.stderr[-2000:])


def test_bitstream_is_refused_before_the_first_step_naming_what_is_missing(tiny, tmp_path):
    r = hw_build(shell(tmp_path, "Xilinx/Vivado/2024.2"), "--checkpoint", tiny, "--board", "Pynq-Z1",
                  "--target-fps", 1000, "--bitstream", "--out", tmp_path / "b")
    err = r.stderr.strip()
    assert r.returncode == 3 and "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in ("finn_xsi", "not built for Vivado 2024.2", "finn-hlslib is not in FINN's deps folder",
                   "Pynq-Z1 board files", "make deps"):
        assert needle in err, (needle, err)
    assert "not in PATH" not in err and not (tmp_path / "b").exists()


def test_a_release_finn_does_not_support_is_named_by_the_preflight(tmp_path):
    """The tools' own -version decides: a release FINN does not support is refused before anything runs."""
    env = shell(tmp_path, "Xilinx/Vivado/2023.1", reports="v2023.1")
    r = subprocess.run([sys.executable, "-m", "hw_build.deps", "--check", "Pynq-Z1"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stdout + r.stderr
    for tool in ("vivado", "vitis_hls"):
        assert f"missing: {tool} -version reports v2023.1; FINN supports 2022.2 or 2024.2" in r.stdout, r.stdout
    ok = subprocess.run([sys.executable, "-m", "hw_build.deps", "--check", "Pynq-Z1"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=shell(tmp_path / "b", "Xilinx/Vivado/2024.2"))
    assert "-version reports" not in ok.stdout, ok.stdout


def test_finn_runs_with_the_projects_deps_and_build_folder_in_a_vivado_shell(tmp_path):
    """finn-plus's settings, read in the shell a bitstream build runs in: FINN's deps folder is make deps' and
    its build folder the build's own, not FINN's defaults."""
    code = ("import sys; from pathlib import Path; from hw_build import finn_env; finn_env.setup(Path(sys.argv[1])); "
            "from finn.util.settings import get_settings; s = get_settings(); print(s.finn_deps, s.finn_build_dir)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b" / "finn_tmp")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=shell(tmp_path, "Xilinx/Vivado/2024.2"))
    assert r.stdout.split() == [str(tmp_path / "deps"), str(tmp_path / "b" / "finn_tmp")], r.stdout + r.stderr


def test_deps_check_reports_each_board(tmp_path):
    env = shell(tmp_path, "Xilinx/Vivado/2024.2")
    r = subprocess.run([sys.executable, "-m", "hw_build.deps", "--check", "ZCU104"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3 and "board files" not in r.stdout and "finn-hlslib" in r.stdout, r.stdout + r.stderr
    lib = tmp_path / "deps" / "finn-hlslib"  # a checkout at another commit than finn-plus's pin
    lib.mkdir(parents=True)
    subprocess.run("git init -q && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m x", shell=True,
                   cwd=lib, check=True)
    r = subprocess.run([sys.executable, "-m", "hw_build.deps", "--check", "ZCU104"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert "generates code for 8d979e2 (its pin)" in r.stdout and "BNN_HLSLIB_ANY_COMMIT=1" in r.stdout, r.stdout


def test_make_deps_names_what_it_could_not_fetch(tmp_path):
    """make deps runs finn-plus's own updater; a dependency it cannot fetch (here a git server that does not
    answer, as GitHub for a machine without it) ends in exit 3 naming it, not in FINN's bare exit 1."""
    defs = tmp_path / "deps.yaml"
    defs.write_text("git_deps:\n  finn-hlslib:\n    url: http://127.0.0.1:9/finn-hlslib.git\n"
                    "    commit: 8d979e2bdced486dd25d26607d1ff5ae327ed6a8\n    pip_install: False\n"
                    "    install_editable: False\nboardfile_deps: {}\ndirect_download_deps: {}\n")
    env = {**os.environ, "FINN_DEPS": str(tmp_path / "deps"), "FINN_DEPS_DEFINITIONS": str(defs)}
    r = subprocess.run([sys.executable, "-m", "hw_build.deps"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 3 and last.startswith("error: FINN's dependency update left finn-hlslib missing"), r.stderr
    defs.write_text(defs.read_text().replace("http://127.0.0.1:9/", "file:///nowhere/"))  # not a URL FINN takes
    r = subprocess.run([sys.executable, "-m", "hw_build.deps"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    err = r.stderr.strip()
    assert r.returncode == 2 and "Traceback" not in err
    assert err.startswith(f"error: FINN's dependency definitions {defs}")


def test_too_little_disk_for_a_bitstream_build_is_named(tmp_path, monkeypatch):
    from hw_build import preflight
    monkeypatch.setattr(preflight, "BITSTREAM_DISK_GIB", 10**9)  # more than any disk: the refusal is observable
    msg = preflight.disk_problem(tmp_path / "not" / "yet" / "made")
    assert msg and f"free under {tmp_path}" in msg and "give --out on a larger disk" in msg
    monkeypatch.setattr(preflight, "BITSTREAM_DISK_GIB", 0)
    assert preflight.disk_problem(tmp_path) is None


def test_the_preflight_asks_vivado_for_the_boards_part_and_board_part(tmp_path):
    env = {**ready_deps(shell(tmp_path, "Xilinx/Vivado/2024.2")), "STANDIN_PARTS": "xczu7ev-ffvc1156-2-e",
           "STANDIN_BOARD_PARTS": ""}
    r = deps_check(env, "Pynq-Z1")
    assert r.returncode == 3, r.stdout + r.stderr
    assert ("has no xc7z020clg400-1, the Pynq-Z1's part: add the Zynq-7000 devices with Vivado's installer"
            in r.stdout), r.stdout
    assert "no board part www.digilentinc.com:pynq-z1:part0:1.0" in r.stdout and "run make deps" in r.stdout
    (query,) = [c for c in calls(env) if c["tool"] == "vivado" and "-mode" in c["args"]]
    assert "get_parts -quiet {xc7z020clg400-1}" in query["tcl"] and ROOT not in Path(query["cwd"]).parents
    assert str(Path(env["FINN_DEPS"]) / "board_files") in query["tcl"]  # where FINN's Zynq shell looks
    installed = {**env, "STANDIN_PARTS": "xc7z020clg400-1",
                 "STANDIN_BOARD_PARTS": "www.digilentinc.com:pynq-z1:part0:1.0"}
    r = deps_check(installed, "Pynq-Z1")
    assert "has no" not in r.stdout and "board part" not in r.stdout and "finn_xsi" in r.stdout, r.stdout


def test_a_vivado_that_cannot_list_its_parts_is_named(tmp_path):
    env = ready_deps(shell(tmp_path, "Xilinx/Vivado/2024.2"), "ZCU104")
    vivado = tmp_path / "Xilinx/Vivado/2024.2/bin/vivado"  # starts, then fails as an unlicensed install can
    vivado.write_text('#!/bin/sh\n[ "$1" = -version ] && { echo "vivado v2024.2 (64-bit)"; exit 0; }\n'
                      'echo "ERROR: [Common 17-345] A valid license was not found"; exit 1\n')
    r = deps_check(env, "ZCU104")
    assert "missing: vivado -mode batch could not list its parts (exit 1: 'ERROR: [Common 17-345] A valid license" \
        in r.stdout, r.stdout


def test_tools_are_looked_up_where_finn_looks_with_finn_tool_dir_override(tmp_path):
    """FINN runs $FINN_TOOL_DIR_OVERRIDE/<tool> when it is set (sites wrapping the tools); so does the preflight."""
    env = shell(tmp_path, "Xilinx/Vivado/2024.2")
    shims = tmp_path / "shims"
    shims.mkdir()
    for tool, folder in (("vivado", "Vivado/2024.2"), ("vitis_hls", "Vivado/Vitis_HLS")):
        (shims / tool).symlink_to(tmp_path / "Xilinx" / folder / "bin" / tool)
    env["PATH"] = os.environ["PATH"]  # the tools only in the override folder
    r = deps_check({**env, "FINN_TOOL_DIR_OVERRIDE": str(shims)}, "ZCU104")
    assert "vivado not in" not in r.stdout and "-version reports" not in r.stdout and "finn_xsi" in r.stdout, r.stdout
    assert any(c["tool"] == "vivado" and "-mode" in c["args"] for c in calls(env))  # the part query, through it
    r = deps_check({**env, "FINN_TOOL_DIR_OVERRIDE": str(tmp_path)}, "ZCU104")
    assert f"missing: vitis_hls and vivado not in $FINN_TOOL_DIR_OVERRIDE ({tmp_path})" in r.stdout, r.stdout


def test_a_failed_tool_is_told_from_a_bug_by_its_log(tmp_path):
    """tool_logs.failure: a log with an ERROR written during the step names tool, layer and log; a clean log
    beside FINN's own exception is a bug (None: the traceback stays); an older log is not this step's."""
    import time

    from hw_build.tool_logs import ToolFailed, failure
    since = time.time()
    layer = tmp_path / "finn_tmp" / "code_gen_ipgen_MVAU_hls_1_ab_cd123"
    layer.mkdir(parents=True)
    (layer / "hls_syn_MVAU_hls_1.tcl").write_text("set_top MVAU_hls_1\n")
    log = layer / "vitis_hls.log"
    log.write_text("INFO: [HLS 200-10] Analyzing design file\nERROR: [HLS 214-124] use of undeclared identifier\n")
    e = failure("hw_ipgen", RuntimeError("HLS IP Generation failed"), [tmp_path / "finn_tmp"], since, tmp_path)
    assert isinstance(e, ToolFailed) and e.exit_code == 3
    assert str(e).startswith("hw_ipgen: vitis_hls failed on layer MVAU_hls_1: ERROR: [HLS 214-124] use of undeclared")
    assert f"its log: {log}" in str(e) and "--start-step hw_ipgen" in str(e)
    log.write_text("INFO: [HLS 200-10] done\n")
    assert failure("hw_ipgen", AssertionError("a FINN bug"), [tmp_path / "finn_tmp"], since, tmp_path) is None
    old = since + 3600  # a step that started after the log was written
    called = subprocess.CalledProcessError(1, ["bash", "ipgen.sh"])
    assert "wrote no log" in str(failure("hw_ipgen", called, [tmp_path / "finn_tmp"], old, tmp_path))
