"""A vendor tool that failed inside one of FINN's steps, named in one line: the tool, the layer, the first
ERROR of its log and the log's path, found among the logs the tools wrote while the step ran.

FINN reports such a failure in its own words ("HLS IP Generation failed", a missing IP folder, a missing
bitfile), often from a worker process, without the log. A step that fails with no tool log reporting an ERROR
and no tool process failing is not a tool failure and keeps its traceback.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from common.errors import ToolError, one_line

# The log each tool writes where FINN runs it (vitis_hls in each layer's code_gen_ipgen_* folder; vivado in
# its project folders; runme.log in the synthesis and implementation runs).
LOGS = {"vitis_hls.log": "vitis_hls", "vivado.log": "vivado", "runme.log": "vivado"}


class ToolFailed(ToolError):
    """A Xilinx tool ran and failed inside a step; what earlier steps wrote is kept."""


def tool_logs(folders, since: float) -> list[tuple[Path, str | None]]:
    """The tools' logs written under folders since `since` (a step's start), each with its first ERROR line
    (None: none), those with an ERROR first, then oldest first."""
    found = {p for f in folders if Path(f).is_dir() for name in LOGS for p in Path(f).rglob(name)
             if p.stat().st_mtime >= since - 1}
    logs = [(p, _first_error(p)) for p in found]  # each log read once
    return sorted(logs, key=lambda pe: (pe[1] is None, pe[0].stat().st_mtime))


def _first_error(log: Path) -> str | None:
    m = re.search(r"^(ERROR:.*)$", log.read_text(errors="replace"), re.M)
    return m[1].strip() if m else None


def _layer(log: Path) -> str | None:
    """The layer a per-layer tool run belongs to: FINN names its HLS script after the layer."""
    scripts = sorted(log.parent.glob("hls_syn_*.tcl"))
    return scripts[0].stem.removeprefix("hls_syn_") if scripts else None


def failure(step: str, error: BaseException, folders, since: float, out: Path) -> ToolFailed | None:
    """The one-line error for a tool that failed in `step`, or None when no tool failed (a bug: re-raise)."""
    logs = tool_logs(folders, since)
    ran_tool = isinstance(error, subprocess.CalledProcessError) or isinstance(
        error.__cause__, subprocess.CalledProcessError)
    if not ran_tool and not (logs and logs[0][1]):  # tools that ran cleanly: FINN's own failure
        return None
    resume = (f"Everything before {step} is kept in {out} (deploy/, report/, verification/); once the cause is "
              f"fixed, python -m hw_build --replay {out} --bitstream --start-step {step} continues from there")
    if not logs:
        return ToolFailed(f"{step}: a tool FINN ran failed and wrote no log FINN names ({one_line(error)[:300]}). "
                          f"{resume}")
    (log, first_error), layer = logs[0], _layer(logs[0][0])
    what = first_error or f"no ERROR line; FINN: {one_line(error)[:200]}"
    return ToolFailed(f"{step}: {LOGS[log.name]} failed{f' on layer {layer}' if layer else ''}: {what[:300]} "
                      f"(its log: {log}{f'; {len(logs) - 1} more tool logs from this step' if len(logs) > 1 else ''}"
                      f"). {resume}")


def finn_build_dir() -> Path:
    """Where FINN's tools run for the build at hand (finn_env.setup sets it)."""
    return Path(os.environ["FINN_BUILD_DIR"])
