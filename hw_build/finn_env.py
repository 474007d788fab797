"""FINN (finn-plus) from Python on a machine with or without the Xilinx tools.

finn-plus's command line and several imports assume Vivado. Set-up lives here, once:
dummy settings, a build folder, and SimEngine bound to None where Vivado's simulator is absent
(build_dataflow_steps imports it at module level).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from training.errors import ToolError

# FINN is documented and tested with these releases; named in the error a user sees.
SUPPORTED_TOOLS = "Vivado and Vitis HLS of a release FINN supports (2022.2 or 2024.2)"
_READY = False


def setup(build_dir: Path | None = None) -> None:
    """Idempotent. Must run before any finn import that reads settings."""
    global _READY
    if build_dir is not None:
        os.environ.setdefault("FINN_BUILD_DIR", str(Path(build_dir).resolve()))
    os.environ.setdefault("FINN_BUILD_DIR", str(Path("build/finn_tmp").resolve()))
    Path(os.environ["FINN_BUILD_DIR"]).mkdir(parents=True, exist_ok=True)
    # qonnx's per-tensor datatype sanitising dominates Python execution (a Python max() over every tensor);
    # the tensors are exact small integers in float32, and every stage's results are compared anyway
    os.environ.setdefault("SANITIZE_QUANT_TENSORS", "0")
    if _READY:
        return
    from finn.util import settings
    settings.initialize_dummy_settings()
    import finn.xsi
    if "XILINX_VIVADO" not in os.environ:
        finn.xsi.SimEngine = None
    _READY = True


def missing_tools(tools=("vitis_hls", "vivado")) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


class ToolMissing(ToolError):
    """A step needs a Xilinx tool that is not on PATH."""


def require_tools(step: str, tools=("vitis_hls", "vivado")) -> None:
    missing = missing_tools(tools)
    if missing:
        raise ToolMissing(
            f"{step} needs {' and '.join(missing)} in PATH, which this machine lacks. Install {SUPPORTED_TOOLS}, "
            f"source its settings64.sh (which also sets XILINX_VIVADO), and run the same command again. "
            f"Everything up to this step is in the output folder (intermediate/, report/, verification/).")
