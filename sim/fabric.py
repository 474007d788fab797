"""The FPGA fabric of the stand-in pynq (sim/pynq_standin): a process that runs a build's dataflow graph.

    python -m sim.fabric BUILD [--mode python|rtlsim]

Reads requests on stdin (little-endian u64 image count, u64 byte count, the input stream as packed by
the driver) and answers each on stdout (u64 byte count, the packed top-1 stream). Unpacking and packing
use FINN's own data packing, the host side of the hardware's stream convention, so a driver that packs
differently from FINN computes wrong classes here as on a board.
"""
from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np


def _dt(name: str) -> str:
    return name[name.index("[") + 1:name.index("]")].strip("'\"") if "[" in name else name


class Fabric:
    def __init__(self, build_dir: Path, mode: str = "python"):
        from common import compat  # noqa: F401

        from .run import Build
        self.build = Build.load(build_dir)
        self.io = json.loads((self.build.folder.deploy / "settings.json").read_text())[
            "driver_information"]["io_shape_dict"]
        self.mode = mode

    def run(self, n: int, data: bytes) -> bytes:
        from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
        from qonnx.core.datatype import DataType
        idt, odt = DataType[_dt(self.io["idt"][0])], DataType[_dt(self.io["odt"][0])]
        packed = np.frombuffer(data, dtype=np.uint8).reshape((n,) + tuple(self.io["ishape_packed"][0][1:]))
        x = packed_bytearray_to_finnpy(packed, idt, (n,) + tuple(self.io["ishape_folded"][0][1:]),
                                       reverse_endian=True, reverse_inner=True)
        x = x.reshape((n,) + tuple(self.io["ishape_normal"][0][1:])).transpose(0, 3, 1, 2)
        from .run import run_graph
        top = run_graph(self.build, x, self.mode)[0]
        y = top.reshape((n,) + tuple(self.io["oshape_folded"][0][1:])).astype(np.float32)
        return finnpy_to_packed_bytearray(y, odt, reverse_endian=True, reverse_inner=True).tobytes()


def serve(fabric: Fabric, rd, wr) -> None:
    while True:
        head = rd.read(16)
        if len(head) < 16:
            return
        n, size = struct.unpack("<QQ", head)
        out = fabric.run(n, rd.read(size))
        wr.write(struct.pack("<Q", len(out)) + out)
        wr.flush()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.fabric", description=__doc__.split("\n\n")[0])
    p.add_argument("build", type=Path, help="hardware build folder (python -m hw_build)")
    p.add_argument("--mode", choices=["python", "rtlsim"], default="python", help="how the graph runs")
    args = p.parse_args(argv)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # the protocol owns stdout; anything printed goes to stderr
    serve(Fabric(args.build, args.mode), sys.stdin.buffer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
