"""Simulation and the driver on a real (tiny) build: python mode, Verilator rtlsim, emulated board."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, ROOT, missing_prerequisite

from sim.run import SimError, SimOptions, simulate
from sim.verilator import hw_to_python_order

pytestmark = [pytest.mark.needs_data, pytest.mark.finn]


def test_python_mode_matches_brevitas_on_real_images(built):
    r = simulate(built, "python", 200, str(DATA), log=lambda *a: None)
    assert r["images"] == 200 and r["agreement_with_brevitas_pct"] == 100.0
    assert set(r["layer_modes"].values()) == {"python"}
    # FINN's own execution agrees
    f = simulate(built, "finn", 40, str(DATA), SimOptions(workers=2), log=lambda *a: None)
    assert f["agreement_with_brevitas_pct"] == 100.0 and f["batch_size"] == 1


@pytest.mark.slow
@pytest.mark.verilator
def test_rtlsim_mixed_mode_is_bit_exact_with_stalls(built):
    r = simulate(built, "rtlsim", 20, str(DATA), log=lambda *a: None)
    rtl = [l for l in r["layers"] if l["mode"] == "rtlsim"]
    assert {l["name"].split("_rtl")[0] for l in rtl} >= {"FMPadding", "ConvolutionInputGenerator"}
    assert all(l["bit_exact_vs_python"] for l in rtl), [l["name"] for l in rtl if not l["bit_exact_vs_python"]]
    # cycles without stalls within 20% of FINN's estimate: Verilator's counts are deterministic; measured at most
    # 15.3% below it (ConvolutionInputGenerator_rtl_1: 6,867 against 8,108; python -m sim --build B --mode rtlsim)
    for l in rtl:
        assert abs(l["cycles_per_image"] - l["estimated_cycles"]) <= 0.2 * l["estimated_cycles"], l
    assert r["agreement_with_brevitas_pct"] == 100.0
    assert json.loads((built / "sim" / "report_rtlsim.json").read_text())["all_simulated_layers_bit_exact"]


def test_cppsim_without_hlslib_says_what_is_missing(built, monkeypatch, tmp_path):
    import sim.cppsim
    monkeypatch.delenv("FINN_HLSLIB", raising=False)
    monkeypatch.delenv("XILINX_HLS", raising=False)
    monkeypatch.setattr(sim.cppsim, "BESIDE_CHECKOUT", tmp_path / "no-finn-hlslib")
    with pytest.raises(SimError, match="finn-hlslib .*FINN_HLSLIB"):
        simulate(built, "cppsim", 2, str(DATA), log=lambda *a: None)


@pytest.mark.slow  # over 30 s on 2 cores (make test's list)
def test_cppsim_layers_that_do_not_compile_are_named_and_refused(built, tmp_path, monkeypatch):
    """A finn-hlslib checkout without the kernels: every layer's compile fails, and the error says so."""
    from sim.hls_headers import ap_types_dir
    if shutil.which("g++") is None or ap_types_dir() is None:
        missing_prerequisite("g++ and the hls4ml wheel's ap_types", "make setup installs them")
    fake = tmp_path / "finn-hlslib"
    fake.mkdir()
    (fake / "mvau.hpp").write_text("// not finn-hlslib\n")
    (fake / "flatten.hpp").write_text("// no flatten\n")
    monkeypatch.setenv("FINN_HLSLIB", str(fake))
    with pytest.raises(SimError, match="no HLS layer compiled .*first error: .*error:"):
        simulate(built, "cppsim", 2, str(DATA), SimOptions(out=tmp_path / "sim"), log=lambda *a: None)
    assert (fake / "flatten.hpp").read_text() == "// no flatten\n"  # the checkout is never changed


def test_sim_bad_inputs(tmp_path, built):
    with pytest.raises(SimError, match="no hardware build"):
        simulate(tmp_path, "python", 2, str(DATA), log=lambda *a: None)
    with pytest.raises(SimError, match="unknown mode"):
        simulate(built, "gatesim", 2, str(DATA), log=lambda *a: None)


def test_depthwise_window_reorder():
    class Inst:
        onnx_node = type("N", (), {"op_type": "ConvolutionInputGenerator_rtl"})

        def get_nodeattr(self, k):
            return {"depthwise": 1, "ConvKernelDim": [2, 2], "SIMD": 2, "IFMChannels": 4}[k]
    hw = np.arange(16).reshape(1, 16)  # (C/SIMD=2, K=4, SIMD=2)
    py = hw_to_python_order(Inst(), hw)
    assert py.reshape(4, 2, 2)[1, 0].tolist() == hw.reshape(2, 4, 2)[0, 1].tolist()


def _infer(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "driver" / "infer.py"), "--no-progress", *args],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})


def test_driver_emulated_board_path_and_sim_agree(built):
    pkg = built / "deploy"
    a = _infer("--backend", "emulated", "--package", str(pkg), "-n", "150", "--batch", "64")
    assert a.returncode == 0, a.stderr
    b = _infer("--backend", "sim", "--package", str(pkg), "-n", "150")
    assert b.returncode == 0, b.stderr
    ra = json.loads((pkg / "report_emulated.json").read_text())
    rb = json.loads((pkg / "report_sim.json").read_text())
    assert ra["images"] == rb["images"] == 150 and ra["correct"] == rb["correct"]
    assert ra["accuracy_pct"] > 80 and ra["latency_ms_batch1"] is not None


def test_driver_errors(built, tmp_path):
    r = _infer("--package", str(tmp_path))
    assert r.returncode == 2 and "settings.json not found" in r.stderr
    r = _infer("--package", str(built / "deploy"), "-n", "5")  # board backend here: no bitfile (no Vivado)
    assert r.returncode == 2 and "finn-accel.bit not found: build the bitstream with 'make bitstream'" in r.stderr
    r = _infer("--package", str(built / "deploy"), "--backend", "emulated", "--batch", "0")
    assert r.returncode == 2 and "--batch must be positive" in r.stderr
    r = _infer("--package", str(built / "deploy"), "--backend", "emulated", "-n", "2000", "--batch", "5000",
               env={"BNN_EMULATED_CMA_MB": "1"})  # 2,000 MNIST images need 1.5 MB of DMA buffer
    assert r.returncode == 2 and "could not allocate DMA buffers for a batch of 2000" in r.stderr
    bad = tmp_path / "pkg"
    bad.mkdir()
    for f in ("settings.json", "package.json"):
        (bad / f).write_text((built / "deploy" / f).read_text())
    (bad / "data").mkdir()
    np.save(bad / "data" / "test_x.npy", np.zeros((4, 32, 32, 3), np.uint8))
    np.save(bad / "data" / "test_y.npy", np.zeros(4, np.uint8))
    r = _infer("--package", str(bad), "--backend", "sim")
    assert r.returncode == 2 and "does not fit this model" in r.stderr


def test_cppsim_header_patches_fit_the_pinned_hls4ml():
    """The speed patches of the stand-in HLS headers apply to the pinned hls4ml (a newer one would compile
    without them, slower, with a note), and a header they do not fit is named."""
    from sim.hls_headers import PATCHES, ap_types_dir, patched
    if ap_types_dir() is None:
        missing_prerequisite("the hls4ml wheel's ap_types", "make setup installs them")
    notes = []
    for name in {p[0] for p in PATCHES} | {"etc/ap_private.h"}:
        text = patched((ap_types_dir() / name).read_text(), name, log=lambda *a, **k: notes.append(a[0]))
        if name == "etc/ap_private.h":
            assert text.count("bnn_range_bits(") == 3 and text.count("INLINE void clearUnusedBits(void)\n") == 2
    assert notes == []
    patched("// another header\n", "ap_int_base.h", log=lambda *a, **k: notes.append(a[0]))
    assert len(notes) == 2 and all("ap_int_base.h does not fit this hls4ml" in n for n in notes)


@pytest.mark.slow  # over 30 s on 2 cores (make test's list)
def test_every_hls_layer_in_cppsim_is_bit_exact(built):
    """cppsim against the finn-hlslib beside the checkout (../shared/finn-hlslib, older than finn-plus's pin:
    the project's pool compatibility layer), every HLS layer compiled, no fallback to python."""
    from sim.cppsim import cppsim_available, cppsim_requirements, hlslib_dir
    if not cppsim_available():
        missing_prerequisite(cppsim_requirements(), "see docs/simulation.md (cppsim)")
    from finn.util.basic import CppBuilder
    from finn.util.settings import get_settings

    def finn_as_a_build_sees_it():
        return (os.environ.get("XILINX_HLS"), os.environ.get("FINN_CUSTOM_HLS"), get_settings().finn_deps,
                CppBuilder.append_includes)
    before = finn_as_a_build_sees_it()
    r = simulate(built, "cppsim", 60, str(DATA), log=lambda *a: None)
    assert finn_as_a_build_sees_it() == before  # cppsim's changes to FINN and the environment were undone
    hls = [l for l in r["layers"] if l["name"].split("_")[-2] == "hls"]
    assert {l["name"].split("_")[0] for l in hls} >= {"MVAU", "Pool", "LabelSelect"}
    assert all(l["mode"] == "cppsim" and l["bit_exact_vs_python"] and not l["note"] for l in hls), hls
    assert r["agreement_with_brevitas_pct"] == 100.0 and str(hlslib_dir()) in r["finn_hlslib"]


def test_batch_size_beyond_memory_is_refused_before_any_work(built):
    with pytest.raises(SimError, match=r"--batch-size 1000000000 needs about .* GiB.*use --batch-size \d+"):
        simulate(built, "python", 10, str(DATA), SimOptions(batch_size=10**9), log=lambda *a: None)
    r = simulate(built, "python", 30, str(DATA), SimOptions(batch_size=7), log=lambda *a: None)  # batches of 7
    assert r["batch_size"] == 7 and r["agreement_with_brevitas_pct"] == 100.0 and r["peak_rss_mib"] > 0


def test_sim_refuses_a_build_whose_checkpoint_changed(built, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(built, copy, symlinks=True)
    state = json.loads((copy / "build_state.json").read_text())
    state["checkpoint"] = str(copy / "checkpoint.pt")
    (copy / "build_state.json").write_text(json.dumps(state))
    with open(copy / "checkpoint.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(SimError, match="changed since the build"):
        simulate(copy, "python", 2, str(DATA), log=lambda *a: None)


def test_sim_refuses_images_of_another_shape(built):
    from sim.run import Build, check_images_fit
    with pytest.raises(SimError, match="do not fit the accelerator's input"):
        check_images_fit(Build.load(built), np.zeros((2, 3, 32, 32), np.uint8))


def test_board_backend_names_missing_bitfile(built, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "driver"))
    import infer
    settings = json.loads((built / "deploy" / "settings.json").read_text())["driver_information"]
    with pytest.raises(infer.InferError, match="finn-accel.bit not found: build the bitstream.*--backend sim runs"):
        infer.open_accelerator(built / "deploy", settings, built / "deploy" / "bitfile" / "finn-accel.bit", 4, False)


def test_cppsim_names_an_xilinx_hls_without_headers(monkeypatch, tmp_path):
    from sim.cppsim import cppsim_available, cppsim_requirements
    monkeypatch.setenv("XILINX_HLS", str(tmp_path))
    assert not cppsim_available()
    assert f"$XILINX_HLS={tmp_path} has no include/ap_int.h" in cppsim_requirements()


def test_driver_packing_is_finns(monkeypatch, rng=np.random.default_rng(0)):
    """driver/accel.py packs and unpacks exactly as FINN's data_packing (reverse_inner, reverse_endian)."""
    monkeypatch.syspath_prepend(str(ROOT / "driver"))
    from accel import pack, unpack
    from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
    from qonnx.core.datatype import DataType
    for name, lo, hi, simd in (("UINT8", 0, 256, 3), ("INT4", -8, 8, 5), ("UINT2", 0, 4, 7), ("BINARY", 0, 2, 13),
                               ("BIPOLAR", -1, 2, 9), ("INT8", -128, 128, 1)):
        x = rng.integers(lo, hi, size=(4, 2, 3, simd))
        if name == "BIPOLAR":
            x = 2 * (x > 0) - 1
        finn = finnpy_to_packed_bytearray(x.astype(np.float32), DataType[name], reverse_endian=True, reverse_inner=True)
        ours = pack(x, f"DataType['{name}']")
        assert np.array_equal(ours, finn), name
        back = packed_bytearray_to_finnpy(finn, DataType[name], x.shape, reverse_endian=True, reverse_inner=True)
        assert np.array_equal(unpack(finn, name, x.shape), back) and np.array_equal(back, x), name


@pytest.mark.slow
def test_deploy_package_runs_on_a_stock_pynq_python(built, tmp_path):
    """deploy/ copied alone into a fresh virtual environment with only numpy<2 (a PYNQ 3.x image has numpy 1.x
    and pynq, no qonnx, no bitstring) and the stand-in pynq: the board command runs the test images."""
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy<2"], capture_output=True, text=True)
    if pip.returncode != 0:
        missing_prerequisite(f"numpy<2 in a fresh venv ({pip.stderr[-300:]})",
                             "a machine that reaches the package index")
    board = tmp_path / "board"
    shutil.copytree(built / "deploy", board)
    (board / "bitfile").mkdir()  # the stand-in's fabric is the simulator; it never reads these placeholders
    for ext in ("bit", "hwh"):
        (board / "bitfile" / f"finn-accel.{ext}").write_text("test placeholder: no Vivado here\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "sim" / "pynq_standin"),
           "BNN_FABRIC": json.dumps({"argv": [sys.executable, "-m", "sim.fabric", str(built)], "cwd": str(ROOT)})}
    probe = subprocess.run([str(py), "-c", "import numpy, importlib.util as u; print(numpy.__version__, "
                            "[m for m in ('qonnx', 'finn', 'bitstring', 'torch', 'finn_plus_driver') "
                            "if u.find_spec(m)])"],
                           capture_output=True, text=True, env=env)
    assert probe.stdout.split()[0].startswith("1.") and probe.stdout.strip().endswith("[]"), probe.stdout
    r = subprocess.run([str(py), "infer.py", "--no-progress", "-n", "50", "--batch", "16"], cwd=board,
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    board_report = json.loads((board / "report_board.json").read_text())
    s = _infer("--backend", "sim", "--package", str(built / "deploy"), "-n", "50")
    assert s.returncode == 0, s.stderr
    assert board_report["correct"] == json.loads((built / "deploy" / "report_sim.json").read_text())["correct"]
    assert board_report["images"] == 50 and board_report["accuracy_pct"] > 80


@pytest.mark.slow
@pytest.mark.verilator
def test_uram_weights_are_written_at_start_by_the_driver(tmp_path, monkeypatch):
    """A layer with URAM weights (UltraScale+: runtime-writable, URAM has no bitstream init): FINN writes its
    weight file, the package carries it, the real driver writes it over AXI-lite before the first image,
    and the emulated board refuses to compute before that."""
    from conftest import init_checkpoint

    from hw_build.flow import HwConfig, build
    ck = init_checkpoint(tmp_path / "vgg.pt", model="vggnet7", dataset="cifar10", width_scale=0.0625,
                         layer_order="CBAP")
    first = build(HwConfig(checkpoint=ck, board="ZCU104", out=tmp_path / "a", verify_images=0, target_fps=1000,
                           stop_after="folding", data_dir=str(DATA)), log=lambda *a: None)
    fold = json.loads((first.folder.finn_report / "auto_folding_config.json").read_text())
    fold["MVAU_hls_6"].update(ram_style="ultra", runtime_writeable_weights=1)
    (tmp_path / "fold.json").write_text(json.dumps(fold))
    ctx = build(HwConfig(checkpoint=ck, board="ZCU104", out=tmp_path / "b", verify_images=4, data_dir=str(DATA),
                         folding=tmp_path / "fold.json"), log=lambda *a: None)
    assert ctx.estimates["total"]["URAM"] > 0 and all(r.ok for r in ctx.verifier.results)
    pkg = ctx.folder.deploy
    assert len(list((pkg / "runtime_weights").glob("*.dat"))) == 1
    r = _infer("--backend", "emulated", "--package", str(pkg), "-n", "20", "--batch", "10")
    assert r.returncode == 0, r.stderr
    s = _infer("--backend", "sim", "--package", str(pkg), "-n", "20")
    assert s.returncode == 0, s.stderr
    ra, rb = (json.loads((pkg / f"report_{b}.json").read_text()) for b in ("emulated", "sim"))
    assert ra["correct"] == rb["correct"]
    monkeypatch.syspath_prepend(str(ROOT / "sim" / "pynq_standin"))
    import pynq
    monkeypatch.setenv("BNN_FABRIC", json.dumps({"argv": [sys.executable, "-c", "pass"]}))  # never reached
    board = pynq.Overlay(str(pkg / "bitfile" / "finn-accel.bit"))
    port = next(getattr(board, k) for k in board.ip_dict if k.startswith("StreamingDataflowPartition"))
    assert port.mmio.written == 0  # a fresh board: no weights yet, and it refuses to compute
    with pytest.raises(RuntimeError, match="before its runtime-writable weights were written"):
        board.idma0.write(0x00, 1)
    wrong = port.expected.copy()
    wrong[3] ^= 1  # one bit off in one word, as a driver packing or offset bug would leave it
    port.mmio.write_mm(0, wrong.tobytes())
    with pytest.raises(RuntimeError, match=r"differ from FINN's weight files: .*word 3 is 0x"):
        board.idma0.write(0x00, 1)


def test_the_emulated_board_fails_a_driver_that_breaks_pynq_rules(built, monkeypatch):
    """The stand-in pynq keeps the board's rules, so a driver that breaks one gets what it would get on the
    board: a cacheable buffer not flushed is stale for the DMA (the previous batch's classes come back),
    a numpy integer written to a register is refused, a design that never finishes ends in the timeout."""
    monkeypatch.syspath_prepend(str(ROOT / "sim" / "pynq_standin"))
    monkeypatch.syspath_prepend(str(ROOT / "driver"))
    import accel
    import pynq
    pkg = built / "deploy"
    settings = json.loads((pkg / "settings.json").read_text())["driver_information"]
    x = np.load(pkg / "data" / "test_x.npy")[:16]
    monkeypatch.setenv("BNN_FABRIC", json.dumps({"argv": [sys.executable, "-m", "sim.fabric", str(built)],
                                                 "cwd": str(ROOT)}))
    acc = accel.Accelerator(pkg / "bitfile" / "finn-accel.bit", settings, pkg / "runtime_weights", batch_size=8)
    first, second = acc.execute(x[:8]), acc.execute(x[8:])
    assert not np.array_equal(first, second) and np.array_equal(acc.execute(x[8:]), second)
    monkeypatch.setattr(pynq.PynqBuffer, "flush", lambda self: None)
    assert np.array_equal(acc.execute(x[:8]), second)  # the DMA read the unflushed, previous batch
    with pytest.raises(ValueError, match="must be int"):
        acc.idma.write(accel.COUNT, np.uint32(8))
    monkeypatch.setattr(pynq.Overlay, "_transfer", lambda self, idma: None)  # a design that never finishes
    acc.timeout_s = 0.3
    with pytest.raises(accel.AccelError, match="did not finish 8 images in 0.3 s"):
        acc.execute(x[:8])


def test_driver_checks_the_board_it_runs_on(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "driver"))
    import infer
    infer.check_board("Pynq-Z1", "Pynq-Z1")
    infer.check_board("Pynq-Z1", None)  # not a PYNQ image: nothing to compare
    with pytest.raises(infer.InferError, match="built for ZCU104, and this board says it is Pynq-Z1.*--any-board"):
        infer.check_board("ZCU104", "Pynq-Z1")


def test_driver_refuses_a_package_without_its_runtime_weights(tmp_path, monkeypatch):
    """accel.py: an accelerator with runtime-writable weights and no weight files is refused by name."""
    monkeypatch.syspath_prepend(str(ROOT / "sim" / "pynq_standin"))
    monkeypatch.syspath_prepend(str(ROOT / "driver"))
    import accel
    io = {"idt": ["DataType['UINT8']"], "odt": ["DataType['UINT8']"], "ishape_normal": [[1, 4]],
          "ishape_folded": [[1, 1, 4]], "ishape_packed": [[1, 1, 4]], "oshape_normal": [[1, 1]],
          "oshape_folded": [[1, 1, 1]], "oshape_packed": [[1, 1, 1]]}
    settings = {"runtime_weights": True, "io_shape_dict": io}
    (tmp_path / "bitfile").mkdir()
    (tmp_path / "settings.json").write_text(json.dumps({"driver_information": settings}))
    monkeypatch.setenv("BNN_FABRIC", json.dumps({"argv": [sys.executable, "-c", "pass"]}))  # never reached
    with pytest.raises(accel.AccelError, match="runtime-writable weights but .* holds no .dat files"):
        accel.Accelerator(tmp_path / "bitfile" / "finn-accel.bit", settings, tmp_path / "runtime_weights")


def test_the_emulated_board_takes_its_ips_from_the_bitfiles_hwh(built, tmp_path):
    """With a .hwh beside the bitfile, the stand-in's IPs are the ones PYNQ's metadata parser reads from it (a
    real Vivado .hwh, pynqmetadata's own test design, renamed as FINN names its IODMAs): a driver asking for
    an IP the design lacks fails as on a board, naming it and the IPs there are."""
    import pynqmetadata
    source = Path(pynqmetadata.__file__).parent / "tests" / "hwhs" / "resizer.hwh"
    if not source.is_file():
        missing_prerequisite(f"pynqmetadata's test design {source}",
                             "pip install pynqmetadata==0.2.0 (requirements/deps.txt) installs it")
    pkg = shutil.copytree(built / "deploy", tmp_path / "deploy")
    (pkg / "bitfile").mkdir(exist_ok=True)
    hwh = pkg / "bitfile" / "finn-accel.hwh"
    hwh.write_text(re.sub(r"\baxi_dma_0\b", "idma0", source.read_text()))  # a design without odma0
    r = _infer("--backend", "emulated", "--package", str(pkg), "--build", str(built), "-n", "10")
    assert r.returncode == 2 and "the bitstream has no IP odma0 (its IPs: idma0, resize_accel_0)" in r.stderr, r.stderr
    hwh.write_text(re.sub(r"\bresize_accel_0\b", "odma0", hwh.read_text()))
    r = _infer("--backend", "emulated", "--package", str(pkg), "--build", str(built), "-n", "10")
    assert r.returncode == 0, r.stderr


def test_sim_backend_names_a_package_outside_its_build_folder(built, tmp_path):
    pkg = shutil.copytree(built / "deploy", tmp_path / "deploy")
    r = _infer("--backend", "sim", "--package", str(pkg), "-n", "5")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{tmp_path} is not a build folder (no build_state.json)" in r.stderr and "--build DIR" in r.stderr
    assert _infer("--backend", "sim", "--package", str(pkg), "--build", str(built), "-n", "5").returncode == 0
