"""The project's error contract, shared by every command (training, hw_build, sim; driver/ mirrors it).

A user error (bad input, missing file or tool, a design that does not fit) is a UserError: the command
prints one line naming the problem and the fix and exits with its code, 2 for bad input, 3 for a missing
tool, 130 for an interrupted run (what was computed is kept). Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys


class UserError(Exception):
    exit_code = 2


class ToolError(UserError):
    """A tool or device the step needs is not installed or not found."""
    exit_code = 3


class InterruptedRun(UserError):
    exit_code = 130


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def cli(main, argv=None) -> int:
    """Runs a command's main(argv) under the contract; returns the exit code."""
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: what was computed so far is kept", file=sys.stderr)
        return 130
