"""FINN's external dependencies for a bitstream build (`make deps`); the check that they are there before the
first step is preflight.py.

`make deps` (python -m hw_build.deps) runs finn-plus's own dependency manager (DependencyUpdater, what
`finn deps update` runs) into $FINN_DEPS, else deps/finn in the checkout (ignored by git), pinned exactly as
finn-plus pins them (finn/interface/external_dependencies.yaml: finn-hlslib, board files, ...), then builds
FINN's Vivado simulator binding (finn_xsi) where Vivado is sourced. Needs GitHub; nothing here is
downloaded by anything else.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import ToolError, UserError

from .finn_env import command_line, deps_dir, setup, vivado_release


def pins() -> dict:
    """finn-plus's dependency definitions, the single source of the pinned commits."""
    import finn
    import yaml
    return yaml.safe_load((Path(finn.__file__).parent / "interface" / "external_dependencies.yaml").read_text())


def board_files_dir(entry: str, deps: dict, where: Path) -> Path:
    """Where finn-plus's updater puts the board files of a dependency entry."""
    if entry in deps.get("boardfile_deps", {}):
        return where / "board_files" / Path(deps["boardfile_deps"][entry]["subdirectory"]).name
    d = deps["direct_download_deps"][entry]
    return where / d["target_directory"] / Path(d["url"]).name.removesuffix(".zip")


# what every bitstream build reads from FINN's deps folder: its HLS library, and the JSON library its
# FIFO-sizing simulation compiles against (finn_xsi's CMakeLists.txt); the board's files come on top
ALWAYS_NEEDED = ("finn-hlslib", "nlohmann-json")


def needed_for(board) -> list[str]:
    return [*ALWAYS_NEEDED, *([board.board_files] if board is not None and board.board_files else [])]


def update(board=None, log=print) -> int:
    """finn-plus's DependencyUpdater into deps_dir(); a dependency that did not come is an error only where
    the board's build needs it (board None: all of them), the others are reported. Then finn_xsi, wherever
    Vivado is sourced."""
    from .system import download_problems
    setup()
    missing = download_problems()
    if missing:
        raise ToolError("make deps needs " + "; ".join(missing))
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
    needed = failed if board is None else [d for d in failed if d in needed_for(board)]
    others = [d for d in failed if d not in needed]
    if others:
        log(f"not fetched, not needed for a {board.name} build: {', '.join(others)} (run make deps again where "
            f"GitHub is reachable before building for a board that uses them)")
    if vivado_release():  # the simulator binding does not depend on what was fetched
        from finn.xsi import setup as xsi_setup
        if xsi_setup.main() != 0:
            raise ToolError("building FINN's Vivado simulator binding failed: run python -m finn.xsi.setup for details")
    else:
        log("Vivado is not sourced: finn_xsi not built (run make deps again with Vivado sourced before make bitstream)")
    if needed:
        raise ToolError(f"FINN's dependency update left {', '.join(needed)} missing or outdated in {where}"
                        + (f" (needed for a {board.name} build)" if board is not None else "") +
                        ": is GitHub reachable (git clone https://github.com/Xilinx/finn-hlslib)? Run make deps "
                        "again where it is. Without GitHub, cppsim still finds a finn-hlslib checkout through "
                        "$FINN_HLSLIB or ../shared/finn-hlslib")
    return 0


def main(argv=None) -> int:
    return command_line(_main, argv)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw_build.deps", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", metavar="BOARD", help="only report what a --bitstream build for BOARD lacks here")
    p.add_argument("--board", help="fetch what a build for BOARD needs (finn-hlslib, nlohmann-json, its board files) "
                                   "and report the other dependencies that did not come without failing; default: "
                                   "every dependency must come")
    args = p.parse_args(argv)
    if args.check:
        from .boards import get_board
        from .preflight import bitstream_problems
        problems = bitstream_problems(get_board(args.check))
        print("\n".join(f"missing: {x}" for x in problems) or f"ready for make bitstream BOARD={args.check}")
        return 3 if problems else 0
    from .boards import get_board
    return update(get_board(args.board) if args.board else None)


if __name__ == "__main__":
    sys.exit(main())
