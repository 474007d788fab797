"""FINN (finn-plus) from Python on a machine with or without the Xilinx tools.

finn-plus's command line and several imports assume Vivado. Set-up lives here, once: FINN's settings
outside its command line (initialize_dummy_settings: no flow file; the values come from the environment
set here), its deps folder (make deps'), the build's own build folder, and SimEngine bound to None where
Vivado's simulator binding is not built (build_dataflow_steps imports it at module level).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from common.errors import ToolError
from common.paths import DEPS

# FINN is documented and tested with these releases; named in the error a user sees.
SUPPORTED_RELEASES = ("2022.2", "2024.2")
SUPPORTED_TOOLS = f"Vivado and Vitis HLS of a release FINN supports ({' or '.join(SUPPORTED_RELEASES)})"
_READY = False
DEFAULT_DEPS = DEPS / "finn"


def setup(build_dir: Path | None = None, create: bool = True) -> None:
    """Must run before any finn import that reads settings; again for each build, whose folder (build_dir)
    then takes FINN's generated code (FINN's settings would keep a process's first). create=False: the
    caller creates that folder (ensure_build_dir) before a step needs it."""
    global _READY
    if build_dir is not None:
        os.environ["FINN_BUILD_DIR"] = str(Path(build_dir).resolve())
        if _READY:
            from finn.util.settings import get_settings
            get_settings().finn_build_dir = os.environ["FINN_BUILD_DIR"]
    os.environ.setdefault("FINN_BUILD_DIR", str(Path("build/finn_tmp").resolve()))
    if create:
        ensure_build_dir()
    # qonnx's per-tensor datatype sanitising dominates Python execution (a Python max() over every tensor);
    # the tensors are exact small integers in float32, and every stage's results are compared anyway
    os.environ.setdefault("SANITIZE_QUANT_TENSORS", "0")
    if _READY:
        return
    prepare_finn()
    from . import finn_speedups
    finn_speedups.install()  # three per-element loops of FINN's and qonnx's, vectorized with the same results
    import finn.xsi
    if not xsi_loads():
        # FINN's builder imports SimEngine at module level, which without a built XSI raises (or tries to
        # build it) even for steps that never simulate; the steps that do are checked by preflight
        finn.xsi.SimEngine = None
    _READY = True


def prepare_finn() -> None:
    """What finn-plus's command line does before a build (finn/interface/run_finn.py: prepare_finn), through
    FINN's own functions and in its order, with the project's folders as the settings: make deps' folder
    and the build's own FINN build folder. Left out of FINN's sequence: its settings wizard, building
    finn_xsi and updating the dependencies, which make deps does (a build never downloads)."""
    import finn.util.settings
    from finn.interface import run_finn
    from finn.interface.interface_utils import resolve_module_path, set_synthesis_tools_paths
    from finn.interface.settings import FINNSettings
    from finn.util.multiprocessing import configure_start_method

    build = Path(os.environ["FINN_BUILD_DIR"])
    settings = FINNSettings.init(flow_config=build / "dummy.yaml", finn_build_dir=build, finn_deps=deps_dir(),
                                 auto_set_environment_vars=True)
    finn.util.settings._SETTINGS = settings  # what prepare_finn sets
    configure_start_method()
    os.environ.setdefault("PYTHONPATH", "")
    if os.environ.get("XILINX_VIVADO"):  # FINN warns for every tool it cannot find: only in a Vivado shell
        with contextlib.redirect_stdout(io.StringIO()):
            set_synthesis_tools_paths()
    run_finn.prepend_ld_library_paths(xilinx_library_paths())
    os.environ.setdefault("XILINX_LOCAL_USER_DATA", "no")  # prepare_finn's default (XilinxTclStore permissions)
    os.environ["FINN_RTLLIB"] = resolve_module_path("finn-rtllib")
    os.environ["FINN_CUSTOM_HLS"] = resolve_module_path("custom_hls")


def xilinx_library_paths() -> list[str]:
    """FINN's list (xilinx_ld_library_paths: the system library folder, Vivado's and Vitis HLS's), after this
    interpreter's own library folder where its libpython is shared and lives elsewhere (pyenv, conda): FINN's
    leading /lib/x86_64-linux-gnu/ would otherwise hand a restarted Python, and every Python FINN starts,
    the system's libpython of another patch release."""
    from finn.interface import run_finn
    paths = run_finn.xilinx_ld_library_paths()
    libdir = sysconfig.get_config_var("LIBDIR")
    if paths and sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and not libdir.startswith(("/usr/", "/lib")):
        paths = [libdir, *paths]
    return paths


def command_line(main, argv=None, interrupted: str = "what was computed so far is kept") -> int:
    """The entry of a command that may load finn_xsi (hw_build, hw_build.deps, sim, sweep): from a real command
    line (argv None) Xilinx's libraries first, then main(argv) under the error contract (common.errors.cli)."""
    from common.errors import cli
    if argv is None:  # not an in-process call
        reexec_for_xilinx_libraries()
    return cli(main, argv, interrupted)


def reexec_for_xilinx_libraries() -> None:
    """A command started in a Vivado shell restarts itself once with Xilinx's library folders in
    LD_LIBRARY_PATH, before anything loads finn_xsi: the loader reads the variable only at start-up, and
    finn_xsi dlopens Vivado's simulator kernel in-process. FINN's command line does the same
    (ensure_ld_library_path, with FINN's folder list and marker); this restarts the exact command line
    (sys.orig_argv keeps `-m hw_build`, which FINN's sys.argv-based restart would lose)."""
    from finn.interface import run_finn
    paths = xilinx_library_paths()
    if not paths or not run_finn.prepend_ld_library_paths(paths) or os.environ.get(run_finn._LD_REEXEC_MARKER) == "1":
        return
    os.environ[run_finn._LD_REEXEC_MARKER] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, os.environ)


def deps_dir() -> Path:
    """FINN's deps folder: $FINN_DEPS, else deps/finn in the checkout (make deps fills it)."""
    return Path(os.environ.get("FINN_DEPS") or DEFAULT_DEPS)


def ensure_build_dir() -> None:
    """FINN's build folder of the build at hand (FINN_BUILD_DIR, set by setup) exists."""
    Path(os.environ["FINN_BUILD_DIR"]).mkdir(parents=True, exist_ok=True)


def vivado_release() -> str | None:
    """The release (e.g. 2024.2) of the sourced Vivado, from $XILINX_VIVADO as FINN reads it."""
    m = re.search(r"\b(20\d{2})\.(1|2)\b", os.environ.get("XILINX_VIVADO", ""))
    return f"{m[1]}.{m[2]}" if m else None


def tool_release(tool: str) -> str | None:
    """The release a Xilinx tool on PATH reports (`vivado -version`: "vivado v2024.2 (64-bit)"); None when it
    reports none."""
    try:
        r = subprocess.run([tool_command(tool), "-version"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\bv(20\d{2}\.\d)\b", r.stdout + r.stderr)
    return m[1] if m else None


def xsi_ready() -> bool:
    """FINN's Vivado simulator binding (finn_xsi, built by 'finn deps update') exists for the sourced
    Vivado, without FINN's attempt to build it on first use."""
    release = vivado_release()
    if release is None:
        return False
    from finn.util.settings import get_settings
    xsi = get_settings().finn_xsi
    version = xsi / "VERSION"
    return (xsi / "xsi.so").is_file() and version.is_file() and version.read_text().strip() == f"Vivado {release}"


def xsi_loads() -> bool:
    """finn_xsi built for the sourced Vivado and importable (a stale or broken build is not)."""
    if not xsi_ready():
        return False
    import finn.xsi
    with contextlib.redirect_stdout(io.StringIO()):  # FINN prints its import errors
        return finn.xsi.is_available()


def tool_command(tool: str) -> str:
    """The command FINN runs for a Xilinx tool: the bare name on PATH, or the tool in
    $FINN_TOOL_DIR_OVERRIDE (sites that wrap the tools, e.g. for a batch queue), as FINN resolves it."""
    override = os.environ.get("FINN_TOOL_DIR_OVERRIDE")
    return str(Path(override) / tool) if override else tool


def tool_place() -> str:
    """Where tool_command looks, in words for an error message."""
    override = os.environ.get("FINN_TOOL_DIR_OVERRIDE")
    return f"$FINN_TOOL_DIR_OVERRIDE ({override})" if override else "PATH"


def missing_tools(tools=("vitis_hls", "vivado")) -> list[str]:
    return [t for t in tools if shutil.which(tool_command(t)) is None]


class ToolMissing(ToolError):
    """A step needs a Xilinx tool that is not on PATH."""


def require_tools(step: str, tools=("vitis_hls", "vivado")) -> None:
    missing = missing_tools(tools)
    if missing:
        raise ToolMissing(
            f"{step} needs {' and '.join(missing)} in {tool_place()}, which this machine lacks. "
            f"Install {SUPPORTED_TOOLS}, "
            f"source its settings64.sh (which also sets XILINX_VIVADO), and run the same command again. "
            f"Everything up to this step is in the output folder (intermediate/, report/, verification/).")
