"""The package's driver settings against FINN's own: the same settings.json facts and runtime-weight files.

Before Vivado, step driver_settings runs FINN's MakePYNQDriver on a copy of the graph prepared as the
bitstream flow prepares it (minimal FIFOs as FINN's step_set_fifo_depths inserts them, then ZynqBuild's
InsertIODMA, InsertDWC, SpecializeLayers, Floorplan, CreateDataflowPartition). With Vivado, FINN's
make_driver writes its own driver from the real build (finn/driver/); step check_driver compares the two and
stops on any difference, naming both values, before the package is trusted on a board.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import BuildError

# what the board driver reads of settings.json (driver/accel.py): a difference here means a wrong package
SETTINGS_KEYS = ("io_shape_dict", "runtime_weights", "external_weights", "platform", "fclk_mhz")


def driver_facts(driver_dir: Path) -> dict:
    """settings.json's driver facts and the runtime-weight files of a FINN driver folder, keyed as the driver
    reads them: '<partition>_<layer>' (FINN's MakePYNQDriver names them %d_%d_<node>.dat; the node name differs
    between the package and the real build, where MakeZYNQProject prefixes each partition's node names)."""
    settings = json.loads((Path(driver_dir) / "settings.json").read_text())["driver_information"]
    weights = Path(driver_dir) / "runtime_weights"
    files = {}
    for f in sorted(weights.iterdir()) if weights.is_dir() else []:
        m = re.match(r"(\d+_\d+)_", f.name)
        files[m[1] if m else f.name] = (f.name, f.read_bytes())
    return {"settings": {k: settings.get(k) for k in SETTINGS_KEYS}, "files": files}


def differences(ours: Path, finns: Path) -> list[str]:
    """Every difference between two driver folders, each naming both values (empty: the same)."""
    a, b = driver_facts(ours), driver_facts(finns)
    found = [f"settings.json {k}: {a['settings'][k]!r} here, {b['settings'][k]!r} in FINN's"
             for k in SETTINGS_KEYS if a["settings"][k] != b["settings"][k]]
    only_a = [a["files"][k][0] for k in sorted(set(a["files"]) - set(b["files"]))]
    only_b = [b["files"][k][0] for k in sorted(set(b["files"]) - set(a["files"]))]
    if only_a or only_b:
        found.append(f"runtime_weights/ (partition_layer): {only_a or 'nothing'} only here, {only_b or 'nothing'} "
                     f"only in FINN's")
    found += [f"runtime_weights/{a['files'][k][0]} (FINN's {b['files'][k][0]}): contents differ "
              f"({len(a['files'][k][1])} bytes here, {len(b['files'][k][1])} in FINN's)"
              for k in sorted(set(a["files"]) & set(b["files"])) if a["files"][k][1] != b["files"][k][1]]
    return found


def check_driver(ours: Path, finns: Path) -> None:
    """Refuses a package whose driver settings differ from the ones FINN made for the real build."""
    if not (Path(finns) / "settings.json").is_file():
        raise BuildError(f"FINN's make_driver left no settings.json in {finns}; the bitstream flow did not finish "
                         f"its driver step")
    found = differences(ours, finns)
    if found:
        raise BuildError(f"the package's driver settings ({ours}) differ from FINN's for the real build ({finns}): "
                         + "; ".join(found) + ". Report it with both folders; the package is not written")
