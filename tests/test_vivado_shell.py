"""In an FPGA engineer's shell: Vivado sourced (a stand-in tree on PATH and in XILINX_VIVADO, whose tools
only report their version), FINN's Vivado simulator binding not built, FINN's deps folder empty. Everything
that does not need Vivado works; --bitstream is refused before the first step, naming each missing piece."""
import os
import subprocess
import sys

import pytest

from conftest import DATA, ROOT, init_checkpoint

pytestmark = [pytest.mark.needs_data, pytest.mark.finn]


def _shell(tmp_path, vivado_folder: str, reports: str = "v2024.2") -> dict:
    """The environment after `source settings64.sh` of a stand-in Vivado installed at vivado_folder."""
    vivado = tmp_path / vivado_folder
    for tool, folder in (("vivado", vivado), ("vitis_hls", vivado.parent / "Vitis_HLS")):
        (folder / "bin").mkdir(parents=True, exist_ok=True)
        script = folder / "bin" / tool
        script.write_text(f"#!/bin/sh\necho '{tool} {reports} (64-bit), stand-in: it builds nothing'\nexit 0\n")
        script.chmod(0o755)
    path = f"{vivado / 'bin'}:{vivado.parent / 'Vitis_HLS' / 'bin'}:{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "XILINX_VIVADO": str(vivado), "FINN_DEPS": str(tmp_path / "deps"),
            "BNN_DATA_DIR": str(DATA)}


def _hw_build(env, *args):
    return subprocess.run([sys.executable, "-m", "hw_build", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return init_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", model="lenet5", dataset="mnist",
                           width_scale=0.25)


@pytest.mark.parametrize("vivado_folder", ["Xilinx/Vivado/2024.2", "opt/vivado"],
                         ids=["release folder", "folder without a release"])
def test_build_to_estimates_with_vivado_sourced(tiny, tmp_path, vivado_folder):
    r = _hw_build(_shell(tmp_path, vivado_folder), "--checkpoint", tiny, "--target-fps", 1000, "--verify-images", 0,
                  "--stop-after", "estimates", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "b" / "report" / "estimates.json").is_file() and "XSI" not in r.stderr


def test_build_sim_and_driver_run_as_without_vivado(tiny, tmp_path):
    """The whole no-tools path in the Vivado shell: the build to its package, the simulator and the driver's
    simulation backend, with FINN's simulator binding not built."""
    env = _shell(tmp_path, "Xilinx/Vivado/2024.2")
    r = _hw_build(env, "--checkpoint", tiny, "--target-fps", 1000, "--verify-images", 20, "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr[-2000:]
    for argv in (["-m", "sim", "--build", tmp_path / "b", "--mode", "python", "-n", 20],
                 [ROOT / "driver" / "infer.py", "--backend", "sim", "--package", tmp_path / "b" / "deploy", "-n", 20,
                  "--no-progress"]):
        r = subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (argv, r.stderr[-2000:])


def test_bitstream_is_refused_before_the_first_step_naming_what_is_missing(tiny, tmp_path):
    r = _hw_build(_shell(tmp_path, "Xilinx/Vivado/2024.2"), "--checkpoint", tiny, "--board", "Pynq-Z1",
                  "--target-fps", 1000, "--bitstream", "--out", tmp_path / "b")
    err = r.stderr.strip()
    assert r.returncode == 3 and "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in ("finn_xsi", "not built for Vivado 2024.2", "finn-hlslib is not in FINN's deps folder",
                   "Pynq-Z1 board files", "make deps"):
        assert needle in err, (needle, err)
    assert "not in PATH" not in err and not (tmp_path / "b").exists()


def test_a_release_finn_does_not_support_is_named_by_the_preflight(tmp_path):
    """The tools' own -version decides: a release FINN does not support is refused before anything runs."""
    env = _shell(tmp_path, "Xilinx/Vivado/2023.1", reports="v2023.1")
    r = subprocess.run([sys.executable, "-m", "hw_build.deps", "--check", "Pynq-Z1"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stdout + r.stderr
    for tool in ("vivado", "vitis_hls"):
        assert f"missing: {tool} -version reports v2023.1; FINN supports 2022.2 or 2024.2" in r.stdout, r.stdout
    ok = subprocess.run([sys.executable, "-m", "hw_build.deps", "--check", "Pynq-Z1"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=_shell(tmp_path / "b", "Xilinx/Vivado/2024.2"))
    assert "-version reports" not in ok.stdout, ok.stdout


def test_finn_runs_with_the_projects_deps_and_build_folder_in_a_vivado_shell(tmp_path):
    """finn-plus's settings, read in the shell a bitstream build runs in: FINN's deps folder is make deps' and
    its build folder the build's own, not FINN's defaults."""
    code = ("import sys; from pathlib import Path; from hw_build import finn_env; finn_env.setup(Path(sys.argv[1])); "
            "from finn.util.settings import get_settings; s = get_settings(); print(s.finn_deps, s.finn_build_dir)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b" / "finn_tmp")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=_shell(tmp_path, "Xilinx/Vivado/2024.2"))
    assert r.stdout.split() == [str(tmp_path / "deps"), str(tmp_path / "b" / "finn_tmp")], r.stdout + r.stderr


def test_deps_check_reports_each_board(tmp_path):
    env = _shell(tmp_path, "Xilinx/Vivado/2024.2")
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
    assert r.returncode == 2 and "Traceback" not in err and err.startswith(f"error: FINN's dependency definitions {defs}")


def test_too_little_disk_for_a_bitstream_build_is_named(tmp_path, monkeypatch):
    from hw_build import deps
    monkeypatch.setattr(deps, "BITSTREAM_DISK_GIB", 10**9)  # more than any disk: the refusal is observable
    msg = deps.disk_problem(tmp_path / "not" / "yet" / "made")
    assert msg and f"free under {tmp_path}" in msg and "give --out on a larger disk" in msg
    monkeypatch.setattr(deps, "BITSTREAM_DISK_GIB", 0)
    assert deps.disk_problem(tmp_path) is None
