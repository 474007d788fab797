"""A stand-in for `vivado` and `vitis_hls` in the tests' Vivado shell: it builds nothing. It records each call
(tool, arguments, working folder, the Tcl script it was handed) as a JSON line in $STANDIN_RECORD, reports
$STANDIN_RELEASE (default v2024.2) to -version, answers the preflight's part query from $STANDIN_PARTS and
$STANDIN_BOARD_PARTS (comma-separated; unset: every part is installed) and fails every other job as a real
tool can: an ERROR line in <tool>.log where it ran, exit 1.

Run as `xilinx_standin.py TOOL ARGS...` (the test writes a two-line `vivado`/`vitis_hls` wrapper on PATH).
"""
import json
import os
import re
import sys
from pathlib import Path


def _installed(name: str, variable: str) -> int:
    listed = os.environ.get(variable)
    return 1 if listed is None or name in listed.split(",") else 0


def main(tool: str, args: list[str]) -> int:
    scripts = [a for a in args if a.endswith(".tcl")]
    tcl = Path(scripts[0]).read_text() if scripts else ""
    if os.environ.get("STANDIN_RECORD"):
        with open(os.environ["STANDIN_RECORD"], "a") as f:
            f.write(json.dumps({"tool": tool, "args": args, "cwd": os.getcwd(), "tcl": tcl}) + "\n")
    if args == ["-version"]:
        print(f"{tool} {os.environ.get('STANDIN_RELEASE', 'v2024.2')} (64-bit), stand-in: it builds nothing")
        return 0
    if tool == "vivado" and "bnn-part" in tcl:  # the preflight's question, answered from the test's list
        for kind, query, variable in (("part", "get_parts", "STANDIN_PARTS"),
                                      ("board-part", "get_board_parts", "STANDIN_BOARD_PARTS")):
            m = re.search(r"%s -quiet \{([^}]+)\}" % query, tcl)
            if m:
                print(f"bnn-{kind} {_installed(m[1], variable)}")
        return 0
    Path(f"{tool}.log").write_text(f"INFO: stand-in {tool} of the test suite\n"
                                   f"ERROR: [stand-in 1] {tool} here is the test suite's stand-in: it builds nothing\n")
    print(f"ERROR: [stand-in 1] {tool} builds nothing", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
