"""The accelerator on a PYNQ board, with numpy and pynq only (what a stock PYNQ image has).

It speaks FINN's zynq-iodma protocol: the input and output IODMAs are HLS cores with an AXI-lite control
block, each given a buffer address and an image count and started; data goes in FINN's packed stream
format (settings.json: data types and folded/packed shapes, written by FINN's MakePYNQDriver). Layers
whose weight memories the bitstream cannot initialise (URAM) get their weights over AXI-lite first.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

# FINN's IODMA register map (HLS ap_ctrl block, then the buffer address and the image count)
AP_CTRL, ADDR_LO, ADDR_HI, COUNT = 0x00, 0x10, 0x14, 0x1C
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4


class AccelError(RuntimeError):
    """A package or board problem; the message names it and the fix."""


def datatype(name: str) -> tuple[int, bool, bool]:
    """settings.json's "DataType['INT4']" -> (bits, signed, bipolar)."""
    n = name[name.index("[") + 1:name.index("]")].strip("'\"") if "[" in name else name
    if n in ("BIPOLAR", "BINARY"):
        return 1, False, n == "BIPOLAR"
    for prefix, signed in (("UINT", False), ("INT", True)):
        if n.startswith(prefix) and n[len(prefix):].isdigit():
            return int(n[len(prefix):]), signed, False
    raise AccelError(f"data type {name} is not an integer type this driver packs")


def pack(x: np.ndarray, dtype: str) -> np.ndarray:
    """Folded values (..., SIMD) -> bytes (..., ceil(SIMD*bits/8)): element i at bits i*b.., little-endian
    (FINN's packing with reverse_inner and reverse_endian); two's complement; bipolar -1/+1 as 0/1."""
    bits, _, bipolar = datatype(dtype)
    v = np.asarray(x).astype(np.int64)
    if bipolar:
        v = (v + 1) // 2
    v &= (1 << bits) - 1
    planes = (v[..., None] >> np.arange(bits)) & 1
    flat = planes.reshape(*v.shape[:-1], v.shape[-1] * bits).astype(np.uint8)
    return np.packbits(flat, axis=-1, bitorder="little")


def unpack(b: np.ndarray, dtype: str, folded_shape) -> np.ndarray:
    bits, signed, bipolar = datatype(dtype)
    inner = folded_shape[-1]
    flat = np.unpackbits(np.asarray(b, dtype=np.uint8), axis=-1, bitorder="little")[..., :inner * bits]
    v = (flat.reshape(*flat.shape[:-1], inner, bits).astype(np.int64) << np.arange(bits)).sum(-1)
    if signed:
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    if bipolar:
        v = 2 * v - 1
    return v.reshape(folded_shape)


def read_dat(path: Path) -> np.ndarray:
    """FINN's runtime weight file: one 32-bit word in hex per line."""
    return np.array([int(w, 16) for w in path.read_text().split()], dtype=np.uint32)


class Accelerator:
    """One FINN dataflow accelerator: program, write runtime weights, run batches of images."""

    def __init__(self, bitfile: Path, settings: dict, runtime_weight_dir: Path, batch_size: int = 1,
                 download: bool = True, timeout_s: float = 60.0):
        from pynq import Overlay
        self.io, self.timeout_s = settings["io_shape_dict"], timeout_s
        if self.io.get("num_inputs", 1) != 1 or self.io.get("num_outputs", 1) != 1:
            raise AccelError("this driver runs accelerators with one input and one output stream")
        hwh = Path(bitfile).with_suffix(".hwh")
        try:
            self.overlay = Overlay(str(bitfile), download=download)
        except (AttributeError, KeyError, ValueError, SyntaxError) as e:  # PYNQ's .hwh parser on a damaged file
            if not hwh.is_file():
                raise
            raise AccelError(f"PYNQ cannot read the design description {hwh} beside the bitfile ({type(e).__name__}: "
                             f"{e}); it is damaged or not Vivado's: copy bitfile/ again from the build's deploy/ "
                             f"(python -m hw_build --replay BUILD --bitstream --start-step deployment_package "
                             f"writes it again)") from None
        self.idma = self._ip(self.io.get("idma_names", ["idma0"])[0])
        self.odma = self._ip(self.io.get("odma_names", ["odma0"])[0])
        self._batch = 0
        self.batch_size = batch_size
        self.write_runtime_weights(Path(runtime_weight_dir), bool(settings.get("runtime_weights")))

    def _ip(self, name: str):
        if name not in self.overlay.ip_dict:
            raise AccelError(f"the bitstream has no IP {name} (its IPs: {', '.join(sorted(self.overlay.ip_dict))}): "
                             f"the package and the bitfile come from different builds")
        return getattr(self.overlay, name)

    def _shape(self, key: str, n: int) -> tuple:
        return (n,) + tuple(self.io[key][0][1:])

    @property
    def batch_size(self) -> int:
        return self._batch

    @batch_size.setter
    def batch_size(self, n: int) -> None:
        from pynq import allocate
        if n == self._batch:
            return
        self.ibuf = self.obuf = None  # frees the old contiguous buffers first
        # cacheable as in FINN's driver: the flush/invalidate around each run keep the DMA's view exact
        self.ibuf = allocate(shape=self._shape("ishape_packed", n), dtype=np.uint8, cacheable=True)
        self.obuf = allocate(shape=self._shape("oshape_packed", n), dtype=np.uint8, cacheable=True)
        self._batch = n

    def write_runtime_weights(self, folder: Path, expected: bool) -> None:
        """Each <partition>_<layer>_*.dat to its partition's AXI-lite weight port, read back and compared."""
        files = sorted(folder.glob("*.dat")) if folder.is_dir() else []
        if expected and not files:
            raise AccelError(f"the accelerator has runtime-writable weights but {folder} holds no .dat files: "
                             f"copy the whole deploy/ folder, runtime_weights/ included")
        for f in files:
            port = f"StreamingDataflowPartition_{int(f.name.split('_')[0])}"
            if not hasattr(self.overlay, port):
                raise AccelError(f"{f.name}: the bitstream has no AXI-lite weight port {port}; "
                                 f"the package and the bitfile come from different builds")
            words = read_dat(f)
            mmio = getattr(self.overlay, port).mmio
            mmio.write_mm(0, words.tobytes())
            if not np.array_equal(np.asarray(mmio.array[:len(words)]), words):
                raise AccelError(f"weights of {f.name} read back differently from what was written")
        if files:
            self.run(self._batch)  # flushes stale words out of the weight streamers, as FINN's driver does

    def run(self, n: int) -> None:
        """Starts the DMAs on the first n images of the buffers and waits until the output DMA is done."""
        if not self.odma.read(AP_CTRL) & AP_IDLE:
            raise AccelError("the output DMA is not idle: reprogram the board (download=True)")
        for dma, buf in ((self.odma, self.obuf), (self.idma, self.ibuf)):  # output side armed first
            dma.write(ADDR_LO, buf.device_address & 0xFFFFFFFF)
            dma.write(ADDR_HI, (buf.device_address >> 32) & 0xFFFFFFFF)
            dma.write(COUNT, int(n))
            dma.write(AP_CTRL, AP_START)
        deadline = time.monotonic() + self.timeout_s
        while not self.odma.read(AP_CTRL) & AP_DONE:
            if time.monotonic() > deadline:
                raise AccelError(f"the accelerator did not finish {n} images in {self.timeout_s:g} s: the design "
                                 f"stalls (a deadlock shows in the build's stitched-IP simulation) or the bitfile "
                                 f"is not this package's; reprogram the board, or raise --timeout for huge batches")

    def execute(self, x: np.ndarray) -> np.ndarray:
        """x: (n, *ishape_normal[1:]) with n <= batch_size -> (n, *oshape_normal[1:])."""
        n = len(x)
        if n > self._batch:
            raise AccelError(f"{n} images for buffers of {self._batch}")
        packed = pack(np.asarray(x).reshape(self._shape("ishape_folded", n)), self.io["idt"][0])
        self.ibuf[:n] = packed.reshape(self._shape("ishape_packed", n))
        self.ibuf.flush()
        self.run(n)
        self.obuf.invalidate()
        out = unpack(np.asarray(self.obuf[:n]), self.io["odt"][0], self._shape("oshape_folded", n))
        return out.reshape(self._shape("oshape_normal", n))
