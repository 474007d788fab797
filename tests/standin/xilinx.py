"""A stand-in for `vivado` and `vitis_hls` in the tests' Vivado shell that runs the Tcl it is handed.

The script FINN (or the preflight) gives the tool runs in a real Tcl interpreter (Debian's tclsh8.6) after the
stub libraries beside this file (common.tcl, then vitis_hls.tcl or vivado.tcl). Each stub checks its
arguments as the real tool would refuse them (files that exist, parts that are installed, IP that was
packaged, modules that were added, cells and pins that were created); a command without a stub is an error.
The stand-in writes no result a real tool computes: vitis_hls's export_design lays out the IP folder FINN
checks (component.xml naming the IP, marked as a stand-in, no HDL), so the flow goes on to the first step that
needs real tool output. A failure is an `ERROR: [stand-in] ...` line in <tool>.log where it ran, exit 1.

Environment: $STANDIN_RELEASE (what -version reports; default v2024.2), $STANDIN_PARTS and
$STANDIN_BOARD_PARTS (comma-separated installed parts; unset: the parts of every board the project knows),
$STANDIN_RECORD (JSON lines: tool, arguments, folder, the script and the outcome).
Run as `xilinx.py TOOL ARGS...` (the tests write a two-line `vivado`/`vitis_hls` wrapper on PATH).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TCLSH = shutil.which("tclsh8.6") or shutil.which("tclsh")
VIVADO_FLAGS = {"-mode": 1, "-source": 1, "-nojournal": 0, "-nolog": 0, "-notrace": 0, "-tclargs": 0}


def _record(entry: dict) -> None:
    if os.environ.get("STANDIN_RECORD"):
        with open(os.environ["STANDIN_RECORD"], "a") as f:
            f.write(json.dumps(entry) + "\n")


def script_of(tool: str, args: list[str]) -> tuple[Path, bool]:
    """The Tcl script and whether to write a log, from the arguments as each tool takes them."""
    if tool == "vitis_hls":
        if len(args) != 1 or not args[0].endswith(".tcl"):
            raise SystemExit(f"vitis_hls (stand-in): expected one Tcl script, got {args}")
        return Path(args[0]), True
    opts, i = {}, 0
    while i < len(args):
        if args[i] not in VIVADO_FLAGS:
            raise SystemExit(f"vivado (stand-in): unknown option {args[i]!r} in {args}")
        opts[args[i]] = args[i + 1] if VIVADO_FLAGS[args[i]] else True
        i += 1 + VIVADO_FLAGS[args[i]]
    if opts.get("-mode") != "batch" or "-source" not in opts:
        raise SystemExit(f"vivado (stand-in): runs '-mode batch -source SCRIPT' only, got {args}")
    return Path(opts["-source"]), "-nolog" not in opts


def run_tcl(tool: str, script: Path) -> subprocess.CompletedProcess:
    if TCLSH is None:
        raise SystemExit("the Tcl stand-in needs tclsh (Debian: apt-get install tcl8.6)")
    driver = (
        f"namespace eval ::si {{ variable tool {tool} }}\n"
        f"source {{{HERE / 'common.tcl'}}}\nsource {{{HERE / (tool + '.tcl')}}}\n"
        f"::si::run {{{script.resolve()}}}\n")
    return subprocess.run([TCLSH], input=driver, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **default_parts()})


def default_parts() -> dict:
    """The parts and board parts installed when the test names none: those FINN builds for (its own tables:
    pynq_part_map and the board parts its Zynq shell sets), an independent source from the project's."""
    import re

    from finn.transformation.fpgadataflow.templates import custom_zynq_shell_template
    from finn.util.basic import alveo_part_map, pynq_part_map
    board_parts = re.findall(r"set_property board_part (\S+)", custom_zynq_shell_template)
    return {"STANDIN_DEFAULT_PARTS": ",".join(sorted({*pynq_part_map.values(), *alveo_part_map.values()})),
            "STANDIN_DEFAULT_BOARD_PARTS": ",".join(sorted(set(board_parts)))}


def main(tool: str, args: list[str]) -> int:
    if args == ["-version"]:
        print(f"{tool} {os.environ.get('STANDIN_RELEASE', 'v2024.2')} (64-bit), stand-in: runs Tcl, builds nothing")
        _record({"tool": tool, "args": args, "cwd": os.getcwd(), "tcl": ""})
        return 0
    script, log = script_of(tool, args)
    tcl = script.read_text() if script.is_file() else ""
    r = run_tcl(tool, script) if script.is_file() else None
    out = r.stdout if r else ""
    err = r.stderr.strip() if r else f"ERROR: [stand-in] couldn't read file \"{script}\": no such file"
    ok = r is not None and r.returncode == 0
    if not ok and "ERROR:" not in err:
        err = f"ERROR: [stand-in] {err.splitlines()[0] if err else 'Tcl failed'}\n{err}"
    if log:
        Path(f"{tool}.log").write_text(out + ("" if ok else err + "\n"))
    sys.stdout.write(out)
    if not ok:
        print(err, file=sys.stderr)
    _record({"tool": tool, "args": args, "cwd": os.getcwd(), "tcl": tcl, "ok": ok,
             "error": None if ok else err.splitlines()[0]})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).name, sys.argv[2:]))
