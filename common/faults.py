"""Fault injection for the tests (tests/test_faults.py): a process started with BNN_FAULT_AT=<point> sends
itself BNN_FAULT_SIGNAL (INT by default, or KILL) when it reaches that named point, as a user's Ctrl-C or the
kernel's OOM killer would. Unset (always, outside the tests), a point costs one dictionary lookup."""
from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    if os.environ.get("BNN_FAULT_AT") == name:
        sig = getattr(signal, "SIG" + os.environ.get("BNN_FAULT_SIGNAL", "INT"))
        os.kill(os.getpid(), sig)
