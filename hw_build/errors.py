"""The build's errors, in one module (steps, estimates and the runner raise them; the CLI maps them to exit codes)."""
from __future__ import annotations

from common.errors import UserError


class BuildError(UserError):
    """A build that cannot go on; the message names the stage, the problem and the fix."""


class DoesNotFit(BuildError):
    """The design needs more of a resource than the board offers within the utilisation limit."""
