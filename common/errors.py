"""The project's error contract, shared by every command (training, hw_build, sim; driver/ mirrors it).

A user error (bad input, missing file or tool, a design that does not fit) is a UserError: the command
prints one line naming the problem and the fix and exits with its code, 2 for bad input, 3 for a missing
tool, 130 for an interrupted run (what was computed is kept). Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml


class UserError(Exception):
    exit_code = 2


class ToolError(UserError):
    """A tool or device the step needs is not installed or not found."""
    exit_code = 3


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def cli(main, argv=None, interrupted: str = "what was computed so far is kept") -> int:
    """Runs a command's main(argv) under the contract; returns the exit code. `interrupted`: what a Ctrl-C
    leaves and what continues, true at any moment of that command."""
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130


def read_user_file(path, what: str, fmt: str, fix: str, error=UserError, expect=dict):
    """The one reader of files a user hands over (presets, params.yml, folding and specialize JSON, sweep
    specs, build states): a missing file, one that is not UTF-8 text, not valid YAML/JSON (also: cut short)
    or not of the expected top-level type is refused as `error`, one line naming the file, what is wrong and
    `fix`. Returns the parsed data (an empty YAML file reads as None)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} {'is not a file' if path.exists() else 'not found'}; {fix}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text (a binary or damaged file?); {fix}") from None
    try:
        data = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
    except (yaml.YAMLError, ValueError) as e:
        raise error(f"{what} {path} is not valid {fmt.upper()} ({one_line(e)[:160]}); {fix}") from None
    if expect is not None and data is not None and not isinstance(data, expect):
        kind = {dict: "a mapping of names to values", list: "a list"}.get(expect, expect.__name__)
        raise error(f"{what} {path} holds a {type(data).__name__}, not {kind}; {fix}")
    return data
