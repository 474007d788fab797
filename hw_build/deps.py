"""FINN's external dependencies for a bitstream build, and the check that they are there before the first step.

`make deps` (python -m hw_build.deps) runs finn-plus's own dependency manager (DependencyUpdater, what
`finn deps update` runs) into $FINN_DEPS, else deps/finn in the checkout (ignored by git), pinned exactly as
finn-plus pins them (finn/interface/external_dependencies.yaml: finn-hlslib, board files, ...), then builds
FINN's Vivado simulator binding (finn_xsi) where Vivado is sourced. Needs GitHub; nothing here is
downloaded by anything else.

`bitstream_problems(board)` is the preflight of `--bitstream`: every missing prerequisite at once, read from
the disk and the tools' own `-version` (no network, nothing written).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common.errors import ToolError, UserError
from common.paths import DEPS

DEFAULT_DEPS = DEPS / "finn"
HLSLIB_ANY = "BNN_HLSLIB_ANY_COMMIT"
BITSTREAM_DISK_GIB = 20  # a guideline: Vivado projects per layer plus the stitched design  # set to 1: build with a finn-hlslib at another commit than the pin


def deps_dir() -> Path:
    return Path(os.environ.get("FINN_DEPS") or DEFAULT_DEPS)


def pins() -> dict:
    """finn-plus's dependency definitions, the single source of the pinned commits."""
    import yaml
    import finn
    return yaml.safe_load((Path(finn.__file__).parent / "interface" / "external_dependencies.yaml").read_text())


def git_head(folder: Path) -> str | None:
    if not folder.is_dir():
        return None
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def board_files_dir(entry: str, deps: dict, where: Path) -> Path:
    """Where finn-plus's updater puts the board files of a dependency entry."""
    if entry in deps.get("boardfile_deps", {}):
        return where / "board_files" / Path(deps["boardfile_deps"][entry]["subdirectory"]).name
    d = deps["direct_download_deps"][entry]
    return where / d["target_directory"] / Path(d["url"]).name.removesuffix(".zip")


def hlslib_problem(where: Path, deps: dict) -> str | None:
    lib, pin = where / "finn-hlslib", deps["git_deps"]["finn-hlslib"]["commit"]
    head = git_head(lib)
    if head is None:
        return f"finn-hlslib is not in FINN's deps folder {where} (hw_ipgen compiles against it)"
    if head != pin and os.environ.get(HLSLIB_ANY) != "1":
        return (f"{lib} is at {head[:7]}, finn-plus generates code for {pin[:7]} (its pin); an older checkout "
                f"lacks kernels FINN's HLS code calls. To build with it anyway, set {HLSLIB_ANY}=1")
    return None


def bitstream_problems(board, out: Path | None = None) -> list[str]:
    """What a --bitstream build of this board lacks here, each with what provides it."""
    from .finn_env import SUPPORTED_TOOLS, missing_tools, setup, vivado_release, xsi_ready
    setup(create=False)
    problems = []
    missing = missing_tools()
    if missing:
        problems.append(f"{' and '.join(missing)} not in PATH: install {SUPPORTED_TOOLS} and source its "
                        f"settings64.sh")
    problems += release_problems([t for t in ("vivado", "vitis_hls") if t not in missing])
    if "vivado" not in missing:
        release = vivado_release()
        if release is None:
            problems.append(f"XILINX_VIVADO={os.environ.get('XILINX_VIVADO', '')!r} names no Vivado release "
                            f"folder (.../Vivado/2024.2), where FINN reads the release: source Vivado's settings64.sh")
        elif not xsi_ready():
            problems.append(f"FINN's Vivado simulator binding (finn_xsi, for FIFO sizing and rtlsim) is not built "
                            f"for Vivado {release}: run make deps with Vivado sourced")
    deps, where = pins(), deps_dir()
    hls = hlslib_problem(where, deps)
    if hls:
        problems.append(hls)
    if board.board_files and not board_files_dir(board.board_files, deps, where).is_dir():
        problems.append(f"the {board.name} board files ({board.board_files}) are not in {where / 'board_files'}")
    space = disk_problem(out or Path.cwd())
    if space:
        problems.append(space)
    return problems


def release_problems(tools: list[str]) -> list[str]:
    """The releases the tools on PATH report: each one FINN supports, and all the same."""
    from .finn_env import SUPPORTED_RELEASES, tool_release
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


def update(log=print) -> int:
    """finn-plus's DependencyUpdater into deps_dir(), then finn_xsi where Vivado is sourced."""
    from .finn_env import setup, vivado_release
    setup()
    from finn.interface.manage_deps import DependencyUpdater
    from finn.util.settings import get_settings
    where = deps_dir()
    log(f"FINN's dependencies into {where} (pinned by finn-plus; needs GitHub)")
    from finn.util.exception import FINNError
    defs = get_settings().finn_deps_definitions
    try:
        updater = DependencyUpdater(dependency_location=where, dependency_definition_file=defs, git_timeout_s=100,
                                    non_interactive=True)
    except FINNError as e:
        raise UserError(f"FINN's dependency definitions {defs} ($FINN_DEPS_DEFINITIONS, else finn-plus's own): "
                        f"{' '.join(str(e).split())[:300]}") from None
    try:
        updater.update()
    except SystemExit:  # finn-plus's updater exits when a dependency failed; which ones is checked below
        pass
    failed = updater.get_outdated_dependencies()
    if failed:
        raise ToolError(f"FINN's dependency update left {', '.join(failed)} missing or outdated in {where}: "
                        f"is GitHub reachable (git clone https://github.com/Xilinx/finn-hlslib)? Run make deps "
                        f"again where it is. Without GitHub, cppsim still finds a finn-hlslib checkout through "
                        f"$FINN_HLSLIB or ../shared/finn-hlslib")
    if vivado_release():
        from finn.xsi import setup as xsi_setup
        if xsi_setup.main() != 0:
            raise ToolError("building FINN's Vivado simulator binding failed: run python -m finn.xsi.setup for details")
    else:
        log("Vivado is not sourced: finn_xsi not built (run make deps again with Vivado sourced before make bitstream)")
    return 0


def main(argv=None) -> int:
    from common.errors import cli
    return cli(_main, argv)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw_build.deps", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", metavar="BOARD", help="only report what a --bitstream build for BOARD lacks here")
    args = p.parse_args(argv)
    if args.check:
        from .boards import get_board
        problems = bitstream_problems(get_board(args.check))
        print("\n".join(f"missing: {x}" for x in problems) or f"ready for make bitstream BOARD={args.check}")
        return 3 if problems else 0
    return update()


if __name__ == "__main__":
    sys.exit(main())
