"""A stand-in for pynq on a machine without a board: the part of its API that driver/accel.py uses.

Only the standard library and numpy are imported here, as on a stock PYNQ image; the fabric is a separate
process (`python -m sim.fabric BUILD`, in the project's environment) that runs the build's dataflow graph
in simulation. Its command comes from $BNN_FABRIC (JSON: {"argv": [...], "cwd": "..."}); without it there
is no device, as pynq says on a machine without an FPGA.

Buffers are numpy arrays with a device address; allocated cacheable, the fabric sees them as of the last
flush() and the host sees the fabric's writes after invalidate(), as through the ARM's caches. The IODMAs
are register files that take Python ints only (as pynq's MMIO) and clear ap_done on read; starting the input
DMA sends the first COUNT images of its buffer, packed as the hardware streams them, to the fabric and
writes the packed result into the output DMA's buffer. Weight ports (AXI-lite) keep what the driver writes;
the fabric is not started before every weight port holds, word for word, FINN's weight file of the package.
"""
from __future__ import annotations

import itertools
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np

# FINN's IODMA register map (HLS ap_ctrl block, then the buffer address and the image count)
AP_CTRL, ADDR_LO, ADDR_HI, COUNT = 0x00, 0x10, 0x14, 0x1C
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4
_BUFFERS: dict = {}
_ADDR = itertools.count(0x1000_0000, 0x100_0000)
CMA_BYTES = int(float(os.environ.get("BNN_EMULATED_CMA_MB", "128")) * 2**20)  # the image's contiguous memory


class PynqBuffer(np.ndarray):
    """A cacheable buffer is seen by the fabric as of its last flush(), and the host sees what the fabric
    wrote only after invalidate(), as through the ARM's caches; a non-cacheable one is shared directly."""

    def flush(self):
        if getattr(self, "device_view", None) is not None:
            self.device_view[...] = self

    def invalidate(self):
        if getattr(self, "device_view", None) is not None:
            self[...] = self.device_view

    def device(self) -> np.ndarray:
        return self if getattr(self, "device_view", None) is None else self.device_view


def allocate(shape, dtype=np.uint8, cacheable=False, target=None, **kw):
    live = sum(b.nbytes for b in _BUFFERS.values() if b is not None)
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if live + size > CMA_BYTES:
        raise RuntimeError("Failed to allocate Memory!")  # pynq's words
    buf = np.zeros(shape, dtype=dtype).view(PynqBuffer)
    buf.device_view = np.zeros(shape, dtype=dtype) if cacheable else None
    buf.device_address = next(_ADDR)
    _BUFFERS[buf.device_address] = buf
    return buf


class Fabric:
    """The simulator process: request = n, byte count, packed input; reply = byte count, packed output."""

    def __init__(self):
        spec = os.environ.get("BNN_FABRIC")
        if not spec:
            raise RuntimeError("No Devices Found")
        spec = json.loads(spec)
        self.proc = subprocess.Popen(spec["argv"], cwd=spec.get("cwd"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, n: int, data: bytes) -> bytes:
        self.proc.stdin.write(struct.pack("<QQ", n, len(data)) + data)
        self.proc.stdin.flush()
        head = self.proc.stdout.read(8)
        if len(head) < 8:
            raise RuntimeError(f"the fabric process ended (exit {self.proc.wait()}); its error is above")
        (size,) = struct.unpack("<Q", head)
        return self.proc.stdout.read(size)


class MMIO:
    def __init__(self, words: int = 1 << 20):
        self.array = np.zeros(words, dtype=np.uint32)
        self.written = 0

    def write_mm(self, offset, data):
        w = np.frombuffer(bytes(data), dtype=np.uint32)
        if offset % 4 or offset // 4 + len(w) > len(self.array):
            raise RuntimeError(f"AXI-lite write of {len(w)} words at {offset:#x} outside the weight memory")
        self.array[offset // 4:offset // 4 + len(w)] = w
        self.written = max(self.written, offset // 4 + len(w))


class WeightPort:
    """A partition's AXI-lite weight memory; `expected` is FINN's weight file (one 32-bit hex word a line)."""

    def __init__(self, expected: np.ndarray, mapped_words: int = 1 << 20):
        self.mmio, self.expected = MMIO(mapped_words), expected

    @property
    def words(self) -> int:
        return len(self.expected)

    def mismatch(self) -> str | None:
        got = self.mmio.array[:self.words]
        bad = np.nonzero(got != self.expected)[0]
        return (f"word {bad[0]} is {int(got[bad[0]]):#010x}, FINN's weight file has {int(self.expected[bad[0]]):#010x}"
                if len(bad) else None)


class DMA:
    def __init__(self, overlay, is_input):
        self.overlay, self.is_input = overlay, is_input
        self.regs = {AP_CTRL: AP_IDLE, ADDR_LO: 0, ADDR_HI: 0, COUNT: 0}

    def read(self, offset):
        value = self.regs.get(offset, 0)
        if offset == AP_CTRL:
            self.regs[AP_CTRL] &= ~AP_DONE  # ap_done clears on read, as in HLS's ap_ctrl_hs block
        return value

    def write(self, offset, value):
        if not isinstance(offset, int) or not isinstance(value, int):  # pynq's MMIO takes Python ints only
            raise ValueError("Data type must be int or bytes.")
        self.regs[offset] = value
        if offset == AP_CTRL and value & AP_START:
            self.regs[AP_CTRL] = 0
            if self.is_input:
                self.overlay._transfer(self)


def _design(hwh: Path) -> dict | None:
    """IP name -> {phys_addr, addr_range} of a bitfile's .hwh, read with PYNQ's own metadata parser; None in a
    Python without it (the package run alone with only numpy: the IPs are then the package's own names)."""
    try:
        from pynqmetadata.frontends import Metadata
        from pynqmetadata.views.runtime import IpDictView
    except ImportError:
        return None
    return {k: v for k, v in IpDictView(Metadata(str(hwh))).view.items() if "phys_addr" in v}


class Overlay:
    """Programs the 'bitfile' (PACKAGE/bitfile/finn-accel.bit; it need not exist) of a deployment package."""

    def __init__(self, bitfile_name, download=True, device=None, **kw):
        self.package = Path(bitfile_name).resolve().parent.parent
        io = json.loads((self.package / "settings.json").read_text())["driver_information"]["io_shape_dict"]
        hwh = Path(bitfile_name).with_suffix(".hwh")
        self.design = _design(hwh) if hwh.is_file() else None  # the .hwh's IPs and ranges, as pynq reads them
        self.fabric = Fabric()
        self.ip_dict = {name: {} for name in self.design or {}}  # a real overlay lists every IP of the design
        for name in io.get("idma_names", ["idma0"]):
            self._add(name, DMA(self, True))
        for name in io.get("odma_names", ["odma0"]):
            self.odma = self._add(name, DMA(self, False))
        self.weight_ports = {}
        for dat in sorted((self.package / "runtime_weights").glob("*.dat")):
            name = f"StreamingDataflowPartition_{int(dat.name.split('_')[0])}"
            mapped = (self.design[name]["addr_range"] // 4) if self.design and name in self.design else 1 << 20
            words = np.array([int(w, 16) for w in dat.read_text().split()], dtype=np.uint32)
            self.weight_ports[name] = self._add(name, WeightPort(words, mapped))

    def _add(self, name, ip):
        if self.design is not None and name not in self.design:
            return None  # not in the bitstream: a driver asking for it fails as on a board
        setattr(self, name, ip)
        self.ip_dict[name] = {}
        return ip

    def _transfer(self, idma):
        short = [k for k, p in self.weight_ports.items() if p.mmio.written < p.words]
        if short:  # URAM holds no weights after configuration: a board would compute garbage
            raise RuntimeError(f"accelerator started before its runtime-writable weights were written: {short}")
        wrong = {k: m for k, p in self.weight_ports.items() if (m := p.mismatch())}
        if wrong:  # the layer would compute with other weights than the build's
            raise RuntimeError(f"runtime-writable weights differ from FINN's weight files: {wrong}")
        n = idma.regs[COUNT]
        src = _BUFFERS[idma.regs[ADDR_LO] | idma.regs[ADDR_HI] << 32]
        dst = _BUFFERS[self.odma.regs[ADDR_LO] | self.odma.regs[ADDR_HI] << 32]
        if n > src.shape[0] or n > dst.shape[0]:
            raise RuntimeError(f"DMA transfer of {n} images exceeds the buffers ({src.shape[0]}, {dst.shape[0]})")
        out = self.fabric.run(n, np.ascontiguousarray(src.device()[:n]).tobytes())
        dst.device()[:n] = np.frombuffer(out, dtype=np.uint8).reshape(dst[:n].shape)
        self.odma.regs[AP_CTRL] = AP_DONE | AP_IDLE
