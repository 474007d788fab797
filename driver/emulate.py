"""An emulated pynq: the part of its API that finn-plus-driver's FINNDMAOverlay uses, backed by the simulator.

Buffers are numpy arrays with a device address; the IODMAs are register files (FINN's IODMA map:
0x00 control/status, 0x10/0x14 buffer address, 0x1C transfer count). Starting the input DMA reads
the packed input buffer, unpacks it with FINN's own data packing (finn.util.data_packing, the host
side of the hardware's convention), runs the build's dataflow graph in simulation, and writes the
packed top-1 results to the output DMA's buffer. So the real driver code (packing, buffers,
registers) runs end to end, exactly as on a board.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import types
from pathlib import Path

import numpy as np

AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4
_BUFFERS: dict[int, "EmulatedBuffer"] = {}
_ADDR = itertools.count(0x1000_0000, 0x100_0000)


class EmulatedBuffer(np.ndarray):
    """pynq.allocate's PynqBuffer: contiguous memory with a physical address."""

    def flush(self):
        pass

    def invalidate(self):
        pass


# contiguous (CMA) memory the PYNQ image reserves; pynq.allocate fails past it
CMA_BYTES = int(float(os.environ.get("BNN_EMULATED_CMA_MB", "128")) * 2**20)


def allocate(shape, dtype=np.uint8, cacheable=True, target=None, **kw):
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    live = sum(b.nbytes for b in _BUFFERS.values())
    if live + size > CMA_BYTES:
        raise RuntimeError("Failed to allocate Memory!")  # what pynq's allocator raises
    buf = np.zeros(shape, dtype=dtype).view(EmulatedBuffer)
    buf.device_address = next(_ADDR)
    _BUFFERS[buf.device_address] = buf
    return buf


class Accelerator:
    """The FPGA side: the dataflow graph of the build, fed by the IODMA registers."""

    def __init__(self, package: Path):
        self.package = package
        self.io = json.loads((package / "settings.json").read_text())["driver_information"]["io_shape_dict"]
        self.build_dir = Path(json.loads((package / "package.json").read_text())["build_dir"])
        self.mode = os.environ.get("BNN_EMULATED_SIM_MODE", "python")
        self._runner = None
        self.odma = None
        self.weight_ports = {}

    def runner(self):
        if self._runner is None:
            from hw_build.execute import StageRunner
            from sim.run import Build
            self._build = Build.load(self.build_dir)
            self._runner = StageRunner(self._build.child)  # the dataflow partition: NHWC stream in, top-1 out
        return self._runner

    def run(self, idma: "IODMA") -> None:
        from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
        from qonnx.core.datatype import DataType
        unwritten = [k for k, p in self.weight_ports.items() if not p.mmio.written]
        if unwritten:  # URAM holds no weights after configuration: a board would compute garbage
            raise RuntimeError(f"accelerator started before its runtime-writable weights were written: {unwritten}")
        n = idma.regs[0x1C]
        src = _BUFFERS[idma.regs[0x10] | idma.regs[0x14] << 32]
        dst = _BUFFERS[self.odma.regs[0x10] | self.odma.regs[0x14] << 32]
        if n > src.shape[0] or n > dst.shape[0]:
            raise RuntimeError(f"DMA transfer of {n} images exceeds the buffers ({src.shape[0]}, {dst.shape[0]})")
        idt, odt = DataType[_dt(self.io["idt"][0])], DataType[_dt(self.io["odt"][0])]
        ishape = (n,) + tuple(self.io["ishape_folded"][0][1:])
        x = packed_bytearray_to_finnpy(np.asarray(src[:n]), idt, ishape, reverse_endian=True, reverse_inner=True)
        x = x.reshape((n,) + tuple(self.io["ishape_normal"][0][1:]))
        r = self.runner()
        if self.mode == "rtlsim":
            from sim.run import layer_modes, run_mixed
            top = run_mixed(self._build, x.transpose(0, 3, 1, 2), layer_modes(self._build, "rtlsim"),
                            self._build.dir / "sim" / "work", log=lambda *a: None)[0]
        else:
            top = np.array([r.run_one(x[i:i + 1].transpose(0, 3, 1, 2))[0] for i in range(n)])
        y = top.reshape((n,) + tuple(self.io["oshape_folded"][0][1:])).astype(np.float32)
        packed = finnpy_to_packed_bytearray(y, odt, reverse_endian=True, reverse_inner=True)
        dst[:n] = packed.reshape(dst[:n].shape)
        self.odma.regs[0x00] = AP_DONE | AP_IDLE


def _dt(name: str) -> str:
    """settings.json stores data types as "DataType['UINT8']"."""
    return name[name.index("[") + 1:name.index("]")].strip("'\"") if "[" in name else name


class IODMA:
    """Register file of one of FINN's IODMAs (pynq's DefaultIP read/write)."""

    def __init__(self, acc: Accelerator, is_input: bool):
        self.acc, self.is_input = acc, is_input
        self.regs = {0x00: AP_IDLE, 0x10: 0, 0x14: 0, 0x1C: 0}

    def read(self, offset):
        return self.regs.get(offset, 0)

    def write(self, offset, value):
        self.regs[offset] = int(value)
        if offset == 0x00 and value & AP_START:
            self.regs[0x00] = 0  # running
            if self.is_input:
                self.acc.run(self)


class MMIO:
    """pynq.MMIO of an AXI-lite weight interface: what the driver writes, it reads back."""

    def __init__(self, words: int = 1 << 20):
        self.array = np.zeros(words, dtype=np.uint32)
        self.written = 0

    def write_mm(self, offset, data):
        w = np.frombuffer(bytes(data), dtype=np.uint32)
        if offset % 4 or offset // 4 + len(w) > len(self.array):
            raise RuntimeError(f"AXI-lite write of {len(w)} words at {offset:#x} outside the weight memory")
        self.array[offset // 4:offset // 4 + len(w)] = w
        self.written = max(self.written, offset // 4 + len(w))


class WeightPartition:
    """A StreamingDataflowPartition with runtime-writable weights (its AXI-lite port)."""

    def __init__(self):
        self.mmio = MMIO()


class Overlay:
    """pynq.Overlay: programs the 'bitfile' and exposes the IPs as attributes."""

    package: Path = Path(".")

    def __init__(self, bitfile_name, download=True, device=None, **kw):
        acc = Accelerator(Overlay.package)
        self.device = device
        self.ip_dict = {}
        for name in acc.io.get("idma_names", ["idma0"]):
            setattr(self, name, IODMA(acc, True))
            self.ip_dict[name] = {}
        for name in acc.io.get("odma_names", ["odma0"]):
            odma = IODMA(acc, False)
            setattr(self, name, odma)
            self.ip_dict[name] = {}
            acc.odma = odma
        # one AXI-lite weight port per runtime weight file FINN wrote (<partition>_<layer>_<name>.dat)
        for dat in sorted((Overlay.package / "runtime_weights").glob("*.dat")):
            name = f"StreamingDataflowPartition_{int(dat.name.split('_')[0])}"
            part = WeightPartition()
            setattr(self, name, part)
            self.ip_dict[name] = {}
            acc.weight_ports[name] = part


def install(package: Path) -> None:
    """Makes `import pynq` give this emulation (before finn-plus-driver imports it)."""
    root = Path(__file__).resolve().parent.parent
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from training import compat  # noqa: F401
    Overlay.package = Path(package)
    pynq = types.ModuleType("pynq")
    pynq.Overlay, pynq.allocate = Overlay, allocate
    pynq.Bitstream = type("Bitstream", (), {})  # imported by the instrumentation overlays, unused here
    ps = types.ModuleType("pynq.ps")
    ps.Clocks = type("Clocks", (), {"fclk0_mhz": 100.0})
    pynq.ps = ps
    sys.modules["pynq"], sys.modules["pynq.ps"] = pynq, ps
