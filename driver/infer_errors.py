"""The driver's error: bad input (exit 2) or missing hardware or pynq (exit 3), one line naming the fix."""
from __future__ import annotations


class InferError(RuntimeError):
    """Bad input (exit 2) or missing hardware or pynq (exit 3); the message names the problem and the fix.
    The project's error contract (common/errors.py), kept here so that driver/ needs nothing else."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
