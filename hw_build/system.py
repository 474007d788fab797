"""The system pieces a bitstream build needs besides the Xilinx tools, each probed the way FINN uses it and
named with the Debian/Ubuntu package that provides it.

FINN's simulation-based FIFO sizing compiles its C++ simulation backend (finn_xsi's CMakeLists.txt: CMake
>= 3.11 run as `python -m cmake`, OpenMP, Boost program_options) with g++ in C++20 (finn/xsi/setup.py),
against the Python headers (pybind11); make deps downloads with wget and unpacks board files with unzip.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path

CMAKE_MIN = (3, 11)  # finn_xsi/CMakeLists.txt: cmake_minimum_required


def _compiles(source: str, *flags: str) -> bool:
    """g++ builds and links `source` with `flags` (a probe as FINN's own builds would hit it)."""
    gxx = shutil.which("g++")
    if gxx is None:
        return False
    with tempfile.TemporaryDirectory(prefix="bnn-probe-") as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text(source)
        r = subprocess.run([gxx, str(src), "-o", str(Path(tmp) / "probe"), *flags], capture_output=True, timeout=120)
        return r.returncode == 0


def _cmake_version() -> tuple[int, ...] | None:
    try:
        r = subprocess.run([sys.executable, "-m", "cmake", "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"cmake version (\d+)\.(\d+)", r.stdout)
    return (int(m[1]), int(m[2])) if m and r.returncode == 0 else None


@lru_cache(maxsize=1)
def system_problems() -> tuple[str, ...]:
    """Every missing piece, each with what provides it (empty: all there)."""
    problems = []
    if shutil.which("g++") is None:
        problems.append("g++ (FINN compiles finn_xsi and its FIFO-sizing simulation with it): apt-get install g++")
    elif not _compiles("#include <concepts>\nint main() { return 0; }\n", "-std=c++20"):
        problems.append("a g++ with C++20 (FINN compiles finn_xsi with --std=c++20): g++ 10 or newer "
                        "(apt-get install g++-12)")
    else:
        if not _compiles("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n", "-fopenmp"):
            problems.append("OpenMP for g++ (FINN's FIFO-sizing simulation: find_package(OpenMP)): apt-get install "
                            "libgomp1 (with the gcc of g++)")
        if not _compiles("#include <boost/program_options.hpp>\nint main(int c, char** v) {\n"
                         "  boost::program_options::options_description d; return 0; }\n", "-lboost_program_options"):
            problems.append("Boost program_options (FINN's FIFO-sizing simulation: find_package(Boost COMPONENTS "
                            "program_options)): apt-get install libboost-program-options-dev")
    version = _cmake_version()
    if version is None or version < CMAKE_MIN:
        problems.append(f"CMake >= {'.'.join(map(str, CMAKE_MIN))} as `{Path(sys.executable).name} -m cmake` (FINN "
                        f"runs it so; found {'.'.join(map(str, version)) if version else 'none'}): pip install cmake")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file():
        problems.append(f"the Python {sys.version_info[0]}.{sys.version_info[1]} headers (finn_xsi is a pybind11 "
                        f"module): apt-get install python{sys.version_info[0]}.{sys.version_info[1]}-dev")
    return tuple(problems)


def download_problems() -> list[str]:
    """What make deps needs to fetch FINN's dependencies besides git."""
    return [f"{tool} (FINN's dependency updater {why}): apt-get install {tool}"
            for tool, why in (("git", "clones finn-hlslib and board files"), ("wget", "downloads board files"),
                              ("unzip", "unpacks board files")) if shutil.which(tool) is None]
