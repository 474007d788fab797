"""The preflight of `--bitstream`: every missing prerequisite at once, read from the disk and from the tools
themselves (`-version`; Vivado's own part list in batch mode), no network, nothing written in the checkout or
the build folder. `python -m hw_build.deps --check BOARD` prints the same list.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .deps import board_files_dir, pins
from .finn_env import (
    SUPPORTED_RELEASES,
    SUPPORTED_TOOLS,
    deps_dir,
    missing_tools,
    setup,
    tool_command,
    tool_place,
    tool_release,
    vivado_release,
    xsi_loads,
    xsi_ready,
)
from .system import system_problems

HLSLIB_ANY = "BNN_HLSLIB_ANY_COMMIT"  # set to 1: build with a finn-hlslib at another commit than the pin
BITSTREAM_DISK_GIB = 20  # a guideline: Vivado projects per layer plus the stitched design
PART_QUERY_TIMEOUT_S = 600  # Vivado's start-up alone takes 20-60 s


def git_head(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def hlslib_problem(where: Path, deps: dict) -> str | None:
    lib, pin = where / "finn-hlslib", deps["git_deps"]["finn-hlslib"]["commit"]
    head = git_head(lib)
    if head is None and not lib.is_dir():
        return f"finn-hlslib is not in FINN's deps folder {where} (hw_ipgen compiles against it)"
    if head is None and os.environ.get(HLSLIB_ANY) != "1":
        return (f"{lib} is not a git checkout, so its commit cannot be checked against finn-plus's pin "
                f"{pin[:7]}: run make deps, or set {HLSLIB_ANY}=1 to build with it anyway")
    if head != pin and os.environ.get(HLSLIB_ANY) != "1":
        return (f"{lib} is at {head[:7]}, finn-plus generates code for {pin[:7]} (its pin); an older checkout "
                f"lacks kernels FINN's HLS code calls. To build with it anyway, set {HLSLIB_ANY}=1")
    return None


def bitstream_problems(board, out: Path | None = None, simulate: bool = True, size_fifos: bool = True) -> list[str]:
    """What a --bitstream build of this board lacks here, each with what provides it. simulate: a step runs
    Vivado's simulator (finn_xsi); size_fifos: FINN's simulation-based FIFO sizing runs (its C++ backend's
    build pieces and nlohmann-json)."""
    setup(create=False)
    problems = []
    missing = missing_tools()
    if missing:
        problems.append(f"{' and '.join(missing)} not in {tool_place()}: install {SUPPORTED_TOOLS} and source its "
                        f"settings64.sh")
    releases = release_problems([t for t in ("vivado", "vitis_hls") if t not in missing])
    problems += releases
    release = vivado_release()
    if "vivado" not in missing and release is None:
        problems.append(f"XILINX_VIVADO={os.environ.get('XILINX_VIVADO', '')!r} names no Vivado release "
                        f"folder (.../Vivado/2024.2), where FINN reads the release: source Vivado's settings64.sh")
    elif "vivado" not in missing and simulate:
        problems += filter(None, [xsi_problem(release)])
    deps, where = pins(), deps_dir()
    problems += filter(None, [hlslib_problem(where, deps)])
    from finn.transformation.fpgadataflow.simulation_build import NLOHMANN_JSON_DEP_SUBDIR
    if size_fifos and not (where / NLOHMANN_JSON_DEP_SUBDIR / "CMakeLists.txt").is_file():
        problems.append(f"nlohmann-json is not in FINN's deps folder {where} (FINN's FIFO-sizing simulation builds "
                        f"against {where / NLOHMANN_JSON_DEP_SUBDIR})")
    board_files = not board.board_files or board_files_dir(board.board_files, deps, where).is_dir()
    if not board_files:
        problems.append(f"the {board.name} board files ({board.board_files}) are not in {where / 'board_files'}")
    if "vivado" not in missing and release and not releases:  # a Vivado FINN can use: ask it for the part
        problems += part_problems(board, where / "board_files", board_part=board_files)
    problems += system_problems() if size_fifos else []
    space = disk_problem(out or Path.cwd())
    if space:
        problems.append(space)
    return problems


def xsi_problem(release: str) -> str | None:
    if not xsi_ready():
        return (f"FINN's Vivado simulator binding (finn_xsi, for FIFO sizing and rtlsim) is not built for Vivado "
                f"{release}: run make deps with Vivado sourced")
    if not xsi_loads():
        return (f"FINN's Vivado simulator binding is built for Vivado {release} but does not load (python -m "
                f"finn.xsi.setup --check says why): run make deps again with Vivado sourced")
    return None


def finn_board_part(finn_board: str) -> str | None:
    """The board part FINN's Zynq shell sets for a board, read from FINN's own template (its one source)."""
    from finn.transformation.fpgadataflow.templates import custom_zynq_shell_template
    m = re.search(r'\$BOARD == "%s"\}\s*\{[^}]*?set_property board_part (\S+)' % re.escape(finn_board),
                  custom_zynq_shell_template)
    return m[1] if m else None


def part_tcl(part: str, board_part: str | None, board_files: Path) -> str:
    """Vivado batch script printing how many parts (and board parts, with FINN's board files added to the
    search path as its Zynq shell adds them) match: one `bnn-<kind> <count>` line each."""
    lines = [f'puts "bnn-part [llength [get_parts -quiet {{{part}}}]]"']
    if board_part:
        lines += [f"set_param board.repoPaths [concat [get_param board.repoPaths] [list {{{board_files}}}]]",
                  f'puts "bnn-board-part [llength [get_board_parts -quiet {{{board_part}}}]]"']
    return "\n".join(lines + ["exit 0"]) + "\n"


def part_problems(board, board_files: Path, board_part: bool = True) -> list[str]:
    """Asks the sourced Vivado whether it has the board's part (and, board_part, its board part) installed:
    its own lists (get_parts, get_board_parts), so no guess at the install's layout can refuse a working
    machine. Takes Vivado's start-up time (20-60 s)."""
    board_part = finn_board_part(board.finn_board) if board_part else None
    with tempfile.TemporaryDirectory(prefix="bnn-parts-") as tmp:  # Vivado writes its .Xil folder where it runs
        tcl = Path(tmp) / "parts.tcl"
        tcl.write_text(part_tcl(board.part, board_part, board_files))
        argv = [tool_command("vivado"), "-mode", "batch", "-nojournal", "-nolog", "-notrace", "-source", str(tcl)]
        try:
            r = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=PART_QUERY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return [f"vivado -mode batch did not answer within {PART_QUERY_TIMEOUT_S} s when asked for its parts "
                    f"(a licence server or a hung install?): run vivado -mode batch by hand to see why"]
    found = dict(re.findall(r"^bnn-(part|board-part) (\d+)\s*$", r.stdout, re.M))
    if "part" not in found:
        tail = " ".join((r.stdout + r.stderr).split())[-200:]
        return [f"vivado -mode batch could not list its parts (exit {r.returncode}: {tail!r}): run vivado -mode "
                f"batch by hand to see why"]
    problems = []
    if found["part"] == "0":
        problems.append(f"the sourced Vivado ({os.environ.get('XILINX_VIVADO', '')}) has no {board.part}, the "
                        f"{board.name}'s part: add the {board.family} devices with Vivado's installer (Help > Add "
                        f"Design Tools or Devices)")
    if found.get("board-part") == "0":
        problems.append(f"Vivado finds no board part {board_part} (the {board.name}'s, as FINN's Zynq shell sets "
                        f"it) among its own boards or in {board_files}: run make deps")
    return problems


def release_problems(tools: list[str]) -> list[str]:
    """The releases the tools on PATH report: each one FINN supports, and all the same."""
    found = {t: tool_release(t) for t in tools}
    problems = [f"{t} -version reports {'no release' if r is None else 'v' + r}; FINN supports "
                f"{' or '.join(SUPPORTED_RELEASES)}: source the settings64.sh of one of those"
                for t, r in found.items() if r not in SUPPORTED_RELEASES]
    if not problems and len(set(found.values())) > 1:
        problems.append(f"vivado and vitis_hls come from different releases ({found}): source one release's "
                        f"settings64.sh")
    return problems


def disk_problem(out: Path) -> str | None:
    """Room for a bitstream build where it writes (FINN's code, IP and Vivado projects go into the build
    folder): at least BITSTREAM_DISK_GIB free."""
    base = Path(out).resolve()
    while not base.exists():
        base = base.parent
    free = shutil.disk_usage(base).free / 2**30
    if free < BITSTREAM_DISK_GIB:
        return (f"{free:.1f} GiB free under {base}; a bitstream build needs about {BITSTREAM_DISK_GIB} GiB "
                f"(Vivado projects of every layer): free space or give --out on a larger disk")
    return None
