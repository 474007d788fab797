"""The shell of an FPGA engineer with Vivado sourced, for the tests: a stand-in Vivado tree on PATH and in
XILINX_VIVADO/XILINX_HLS whose tools run the Tcl they are handed (tests/standin/xilinx.py), FINN's deps
folder laid out as its updater leaves it."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA, ROOT, missing_prerequisite

STANDIN = ROOT / "tests" / "standin" / "xilinx.py"


def shell(tmp_path, vivado_folder: str = "Xilinx/Vivado/2024.2", reports: str = "v2024.2") -> dict:
    """The environment after `source settings64.sh` of a stand-in Vivado installed at vivado_folder."""
    if shutil.which("tclsh8.6") is None and shutil.which("tclsh") is None:
        missing_prerequisite("tclsh (the stand-in Xilinx tools run their Tcl in it)", "apt-get install tcl8.6")
    vivado = tmp_path / vivado_folder
    hls = vivado.parent / "Vitis_HLS"
    for tool, folder in (("vivado", vivado), ("vitis_hls", hls)):
        (folder / "bin").mkdir(parents=True, exist_ok=True)
        script = folder / "bin" / tool
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" {tool} "$@"\n')
        script.chmod(0o755)
    path = f"{vivado / 'bin'}:{hls / 'bin'}:{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "XILINX_VIVADO": str(vivado), "XILINX_HLS": str(hls),
            "FINN_DEPS": str(tmp_path / "deps"), "BNN_DATA_DIR": str(DATA), "STANDIN_RELEASE": reports,
            "STANDIN_RECORD": str(tmp_path / "calls.jsonl")}


def calls(env) -> list[dict]:
    record = Path(env["STANDIN_RECORD"])
    return [json.loads(line) for line in record.read_text().splitlines()] if record.is_file() else []


def ready_deps(env, board: str = "Pynq-Z1") -> dict:
    """FINN's deps folder laid out as its updater leaves it: finn-hlslib as a git checkout (../shared's, older
    than finn-plus's pin, hence BNN_HLSLIB_ANY_COMMIT=1) and the board's files."""
    from hw_build.boards import get_board
    from hw_build.deps import board_files_dir, pins
    from sim.cppsim import BESIDE_CHECKOUT
    if not BESIDE_CHECKOUT.is_dir():
        missing_prerequisite(f"finn-hlslib beside the checkout ({BESIDE_CHECKOUT})",
                             "put a finn-hlslib checkout there or set FINN_HLSLIB")
    deps, b = Path(env["FINN_DEPS"]), get_board(board)
    if not (deps / "finn-hlslib").is_dir():
        shutil.copytree(BESIDE_CHECKOUT, deps / "finn-hlslib")
        subprocess.run("git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm x", shell=True,
                       cwd=deps / "finn-hlslib", check=True)
    if b.board_files:  # the folders FINN's updater unpacks: their presence is what the preflight reads
        board_files_dir(b.board_files, pins(), deps).mkdir(parents=True, exist_ok=True)
    from finn.transformation.fpgadataflow.simulation_build import NLOHMANN_JSON_DEP_SUBDIR
    (deps / NLOHMANN_JSON_DEP_SUBDIR).mkdir(parents=True, exist_ok=True)
    (deps / NLOHMANN_JSON_DEP_SUBDIR / "CMakeLists.txt").write_text("# layout only: nlohmann-json's release tree\n")
    return {**env, "BNN_HLSLIB_ANY_COMMIT": "1"}


def hw_build(env, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "hw_build", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def deps_check(env, board: str):
    return subprocess.run([sys.executable, "-m", "hw_build.deps", "--check", board], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


__all__ = ["shell", "calls", "ready_deps", "hw_build", "deps_check", "pytest"]
