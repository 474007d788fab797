"""The bitfile's .hwh against the package: read with PYNQ's own metadata parser (pynqmetadata, what pynq 3.x's
Overlay builds its ip_dict from), the package is refused unless the IODMAs the driver drives and the AXI-lite
port of every partition whose weights it writes exist, each with an address range that holds what is written.
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import BuildError

WORD_BYTES = 4  # FINN's runtime weight files: one 32-bit word per line (driver/accel.py read_dat)


def ip_dict(hwh: Path) -> dict:
    """name -> {phys_addr, addr_range, ...} of every addressable IP, as pynq 3.x sees the design."""
    from pynqmetadata.frontends import Metadata
    from pynqmetadata.views.runtime import IpDictView
    return {k: v for k, v in IpDictView(Metadata(str(hwh))).view.items() if "phys_addr" in v}


def problems(ips: dict, package: Path) -> list[str]:
    """What the driver of `package` would not find in the design whose IPs (ip_dict) are `ips`."""
    io = json.loads((package / "settings.json").read_text())["driver_information"]["io_shape_dict"]
    found = [f"no IP {name} (the driver's {kind})" for kind in ("idma_names", "odma_names")
             for name in io.get(kind, []) if name not in ips]
    weights = package / "runtime_weights"
    for f in sorted(weights.glob("*.dat")) if weights.is_dir() else []:
        port = f"StreamingDataflowPartition_{int(f.name.split('_')[0])}"
        need = len(f.read_text().split()) * WORD_BYTES
        if port not in ips:
            found.append(f"no IP {port} for the runtime weights {f.name}")
        elif ips[port]["addr_range"] < need:
            found.append(f"{port} maps {ips[port]['addr_range']} bytes, {f.name} needs {need}")
    return found


def check_hwh(hwh: Path, package: Path) -> None:
    if not Path(hwh).is_file():
        raise BuildError(f"{hwh} not found: FINN's deployment package holds no .hwh beside the bitfile")
    ips = ip_dict(hwh)  # one parse of the design
    found = problems(ips, package)
    if found:
        names = sorted(ips)
        raise BuildError(f"the bitfile's design ({hwh}) does not match the package the driver uses: "
                         + "; ".join(found) + f". Its IPs: {', '.join(names[:20])}. The package is not usable on "
                         f"the board with this bitfile")
