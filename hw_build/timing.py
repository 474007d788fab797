"""Timing closure after synthesis: WNS and TNS from Vivado's post-route timing summary, which FINN's
step_synthesize_bitfile copies to finn/report/post_route_timing.rpt (report_timing_summary's text).

A negative worst negative slack means the bitfile may compute wrong at the build's clock: the build stops
before the package, naming the slack and a clock period that would meet it, unless --allow-timing-violation.
Not yet run with real Vivado: the report format is that of report_timing_summary's "Design Timing Summary".
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from .errors import BuildError

COLUMNS = ("WNS(ns)", "TNS(ns)", "TNS Failing Endpoints", "TNS Total Endpoints", "WHS(ns)", "THS(ns)")


def parse_timing_summary(text: str) -> dict:
    """The Design Timing Summary row of report_timing_summary: wns, tns, failing and total endpoints, whs, ths."""
    m = re.search(r"^\s*WNS\(ns\)\s+TNS\(ns\).*\n\s*-+[\s-]*\n\s*(\S+(?:\s+\S+){5})", text, re.M)
    if not m:
        raise ValueError("no Design Timing Summary table (WNS(ns) TNS(ns) ...)")
    values = m[1].split()
    keys = ("wns_ns", "tns_ns", "failing_endpoints", "total_endpoints", "whs_ns", "ths_ns")
    return {k: (int(v) if "endpoints" in k else float(v)) for k, v in zip(keys, values)}


def meeting_clock_ns(clock_ns: float, wns_ns: float) -> float:
    """A clock period that the routed design meets: the period less the (negative) slack, up to 0.1 ns."""
    return math.ceil((clock_ns - wns_ns) * 10 - 1e-9) / 10


def check_timing(report: Path, clock_ns: float, allow_violation: bool, resume: str) -> dict:
    """The timing record for estimates.json; a BuildError on negative slack unless allowed."""
    if not report.is_file():
        raise BuildError(f"FINN's synthesis left no post-route timing report at {report}: the bitfile cannot be "
                         f"checked for timing. {resume}")
    try:
        t = parse_timing_summary(report.read_text(errors="replace"))
    except ValueError as e:
        raise BuildError(f"{report} is not a Vivado timing summary this version reads ({e}). {resume}") from None
    t.update(kind="measured by Vivado (post-route timing summary)", clock_ns=clock_ns, met=t["wns_ns"] >= 0,
             report=str(report))
    if t["wns_ns"] < 0 and not allow_violation:
        new = meeting_clock_ns(clock_ns, t["wns_ns"])
        raise BuildError(
            f"the routed design misses timing at {clock_ns:g} ns ({1000 / clock_ns:.0f} MHz): WNS {t['wns_ns']:.3f} "
            f"ns, TNS {t['tns_ns']:.3f} ns on {t['failing_endpoints']} endpoints ({report}); a bitfile that misses "
            f"timing may compute wrong on the board, so it is not packaged. Build again with --clock-ns {new:g} "
            f"({1000 / new:.0f} MHz, the period it meets), or add --allow-timing-violation to package it anyway")
    return t
