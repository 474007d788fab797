"""The simulator's stream packing gives exactly the words of FINN's reference rtlsim packing; the build's
vectorized hex packing, BIPOLAR check and rounding check's max (hw_build/finn_speedups.py) give exactly FINN's
and qonnx's results."""
import conftest  # noqa: F401  (puts the project on sys.path)
import numpy as np
import pytest
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy
from qonnx.core.datatype import DataType

from sim.verilator import pack_words, unpack_words

pytestmark = pytest.mark.finn


@pytest.mark.parametrize("name, inner, pad", [("BIPOLAR", 9, 0), ("BINARY", 32, 3), ("UINT8", 1, 0),
                                              ("INT3", 7, 5), ("UINT4", 9, 8), ("INT8", 3, 0), ("INT2", 1, 6)])
def test_pack_and_unpack_match_finn(name, inner, pad):
    dt = DataType[name]
    rng = np.random.default_rng(len(name) + inner)
    x = rng.integers(dt.min(), dt.max() + 1, size=(2, 5, 4, inner)).astype(np.float32)
    if name == "BIPOLAR":
        x = np.where(x > 0, 1.0, -1.0).astype(np.float32)
    width = inner * dt.bitwidth() + pad
    words = pack_words(x, dt)
    assert words == npy_to_rtlsim_input(x, dt, width)
    noisy = [w | (((1 << pad) - 1) << (inner * dt.bitwidth())) for w in words]  # padding bits set: ignored
    back = unpack_words(noisy, dt, x.shape)
    assert np.array_equal(back, x)
    assert np.array_equal(back, rtlsim_output_to_npy(words, None, dt, x.shape, width, dt.bitwidth()))


HEX_TYPES = ["BIPOLAR", "BINARY", "TERNARY", "INT2", "UINT2", "INT3", "UINT4", "INT8", "UINT8", "INT16", "INT24",
             "UINT32", "INT32", "FIXED<8,4>", "FLOAT32"]


def _values(dt, shape, rng):
    if dt.name == "BIPOLAR":
        return np.where(rng.integers(0, 2, shape) > 0, 1.0, -1.0).astype(np.float32)
    if dt.name.startswith("FLOAT"):
        return rng.standard_normal(shape).astype(np.float32)
    if dt.is_fixed_point():
        return (rng.integers(-128, 128, shape) * dt.scale_factor()).astype(np.float32)
    return rng.integers(dt.min(), dt.max() + 1, shape).astype(np.float32)


def _outcome(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except Exception as e:  # FINN's own error for a width it cannot pack: the same type from both
        return type(e)


@pytest.mark.parametrize("name", HEX_TYPES)
def test_hex_packing_is_finns_for_every_width_order_and_prefix(name):
    """hw_build/finn_speedups.py's hex packing against FINN's original (per element, bitstring): the same strings,
    numpy string type and shape, or the same error, for exact, byte, 32-bit-word, wider and too narrow widths."""
    import finn.util.data_packing as dp

    from hw_build.finn_speedups import fast_pack_innermost_dim_as_hex_string as fast
    original = getattr(dp.pack_innermost_dim_as_hex_string, "original", dp.pack_innermost_dim_as_hex_string)
    dt, rng = DataType[name], np.random.default_rng(len(name))
    cases = 0
    for shape in [(7,), (3, 5), (2, 3, 16), (4, 1), (2, 2, 33)]:
        x = _values(dt, shape, rng)
        bits = shape[-1] * dt.bitwidth()
        for pad in {-(-bits // 4) * 4, -(-bits // 8) * 8, -(-bits // 32) * 32, -(-bits // 4) * 4 + 8, 2, bits}:
            for reverse in (False, True):
                for prefix in ("0x", ""):
                    ours = _outcome(fast, original, x, dt, pad, reverse_inner=reverse, prefix=prefix)
                    finns = _outcome(original, x, dt, pad, reverse_inner=reverse, prefix=prefix)
                    if isinstance(finns, type):
                        assert ours is finns, (shape, pad, reverse, prefix, finns, ours)
                    else:
                        assert isinstance(ours, np.ndarray) and ours.dtype == finns.dtype, (shape, pad, ours)
                        assert np.array_equal(ours, finns), (shape, pad, reverse, prefix)
                    cases += 1
    assert cases >= 60
    if not name.startswith("FLOAT"):  # a value the type cannot hold: FINN's assertion from both
        x = np.full((2, 3), 1 / 32, dtype=np.float32)  # below every integer and fixed-point type's step
        assert _outcome(fast, original, x, dt, 32) is _outcome(original, x, dt, 32) is AssertionError


def test_finn_writes_the_same_weight_files_through_it(built, tmp_path):
    """Every MVAU of a real build writes its weights in each of FINN's file modes (HLS header, Verilog .dat,
    the driver's runtime weights) byte for byte as FINN's original packing writes them (make bench-packing's
    comparison)."""
    import finn.custom_op.fpgadataflow.matrixvectoractivation as mvau_module

    from hw_build import finn_env
    from tools.bench_packing import MODES, bench_build
    finn_env.setup(tmp_path / "finn")
    assert getattr(mvau_module.pack_innermost_dim_as_hex_string, "original", None), \
        "finn_env.setup did not install the vectorized hex packing"
    rows = bench_build(built, list(MODES))
    assert len(rows) >= 3 * len(MODES)
    for r in rows:
        assert r["identical"] and r["bytes"], (r["layer"], r["mode"])
    assert getattr(mvau_module.pack_innermost_dim_as_hex_string, "original", None), "the bench left FINN's own"


def test_bench_packing_refuses_unknown_modes_and_folders_without_hw_code(tmp_path):
    """python -m tools.bench_packing: an unknown --modes entry or a folder with no hw_codegen model is one
    usage line naming the problem and the fix, exit 2, before FINN is set up."""
    import subprocess
    import sys
    for args, says in (([str(tmp_path), "--modes", "decoupled_verilog_dat,bogus"], "--modes: unknown ['bogus']"),
                       ([str(tmp_path)], "holds no model after hw_codegen")):
        r = subprocess.run([sys.executable, "-m", "tools.bench_packing", *args], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]
        assert "--stop-after hw_codegen" in r.stderr or "known: hls_header" in r.stderr


def test_bipolar_check_gives_qonnxs_answer_for_every_value():
    """The BIPOLAR type's allowed() with its scalar path (what streamlining's Absorb1BitMul* call per weight)
    answers as qonnx's np.isin for single values of every Python and NumPy kind, and arrays go to qonnx's own."""
    from qonnx.core.datatype import BipolarType, DataType

    from hw_build.finn_speedups import bipolar_allowed_with_scalar_path
    original = getattr(BipolarType.allowed, "original", BipolarType.allowed)
    fast, dt = bipolar_allowed_with_scalar_path(original), DataType["BIPOLAR"]
    values = [-1, 1, 0, 2, -2, True, False, -1.0, 1.0, 0.5, -0.999, float("nan"), float("inf"),
              np.float32(1), np.float32(-1), np.float32(0), np.float64(-1), np.int8(-1), np.int64(1), np.uint8(1),
              np.float16(1), np.float32(np.nan)]
    for v in values:
        assert bool(fast(dt, v)) == bool(original(dt, v)), v
    arrays = [np.array([-1.0, 1, 0, 0.5]), np.ones((2, 3), dtype=np.float32), np.array(1.0)]
    for a in arrays:
        assert np.array_equal(fast(dt, a), original(dt, a)), a
    weights = np.where(np.random.default_rng(0).random((64, 64)) > 0.5, 1.0, -1.0).astype(np.float32)
    assert np.vectorize(lambda x: fast(dt, x))(weights).all()  # as Absorb1BitMulIntoMatMul asks
    assert not np.vectorize(lambda x: fast(dt, x))(weights * 2).any()


def _same(a, b) -> bool:
    """The same value and type, a NaN equal to a NaN, -0.0 apart from 0.0."""
    if isinstance(a, type) or isinstance(b, type):
        return a is b
    return type(a) is type(b) and (a == b and np.signbit(a) == np.signbit(b) or (np.isnan(a) and np.isnan(b)))


def test_max_of_array_is_pythons_max_for_every_input_the_rounding_check_meets():
    """qonnx's sanitize_quant_values takes max() of a flattened rounding error: max_of_array gives the built-in's
    value and NumPy type, or its error, for float32/float64/float16 errors (zeros with -0.0 first, inf, NaN first
    or later, one element, empty), integer arrays, and everything else (2-D, lists, several arguments, key=)."""
    import builtins

    from hw_build.finn_speedups import max_of_array
    rng = np.random.default_rng(0)
    arrays = [np.abs(rng.standard_normal(1000)).astype(t) for t in (np.float32, np.float64, np.float16)]
    arrays += [np.zeros(7, np.float32), np.array([-0.0, 0.0], np.float32), np.array([0.0, -0.0]),
               np.array([np.inf, 1.0]), np.array([np.nan, 1.0], np.float32), np.array([1.0, np.nan, 3.0]),
               np.array([2.5], np.float32), np.array([], np.float32), np.arange(9, dtype=np.int64),
               np.array([True, False])]
    for a in arrays:
        assert _same(_outcome(max_of_array, a), _outcome(builtins.max, a)), a
    for args, kw in (((np.ones((2, 2)),), {}), (([3, 1, 2],), {}), ((1, 5, 2), {}), (([1, -7],), {"key": abs}),
                     (([],), {"default": 4})):
        assert np.array_equal(_outcome(max_of_array, *args, **kw), _outcome(builtins.max, *args, **kw)), args


def test_qonnx_rounding_check_with_it_rounds_and_refuses_as_qonnxs_own(monkeypatch):
    """sanitize_quant_values (qonnx's execute_onnx, every node) with the module's max set to max_of_array: the same
    rounded tensors, warnings and refusals as with the built-in."""
    import builtins
    import warnings

    import qonnx.util.basic as qb
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    from hw_build.finn_speedups import max_of_array
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    model = ModelWrapper(qonnx_make_model(helper.make_graph([], "g", [x], [x])))
    model.set_tensor_datatype("x", DataType["INT4"])
    near = np.arange(-8, 8, 0.25, dtype=np.float32).round() + np.float32(1e-6)
    cases = [np.arange(-32, 32, dtype=np.float32) % 16 - 8, near, np.full(64, 0.4, np.float32),
             np.full(64, np.nan, np.float32)]
    for values in cases:
        got = []
        for fn in (builtins.max, max_of_array):
            monkeypatch.setattr(qb, "max", fn, raising=False)
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                out = _outcome(qb.sanitize_quant_values, model, ["x"], {"x": values.copy()})
            got.append((out if isinstance(out, type) else out["x"], [str(m.message) for m in w]))
        assert got[0][1] == got[1][1]
        assert got[0][0] is got[1][0] if isinstance(got[0][0], type) else np.array_equal(
            got[0][0], got[1][0], equal_nan=True)


def test_setup_installs_it_unless_finns_own_is_asked_for(tmp_path):
    """finn_env.setup points FINN's writers at the vectorized packing, BIPOLAR's check at its scalar path and qonnx's
    rounding check at max_of_array; BNN_FINN_SPEEDUPS=off keeps FINN's and qonnx's own."""
    import os
    import subprocess
    import sys
    code = ("import sys; from pathlib import Path; from hw_build import finn_env; finn_env.setup(Path(sys.argv[1]))\n"
            "import finn.custom_op.fpgadataflow.matrixvectoractivation as m, finn.util.data_packing as dp\n"
            "from qonnx.core.datatype import BipolarType; import qonnx.util.basic as qb\n"
            "print(hasattr(m.pack_innermost_dim_as_hex_string, 'original'), "
            "hasattr(dp.pack_innermost_dim_as_hex_string, 'original'), hasattr(BipolarType.allowed, 'original'), "
            "'max' in vars(qb))")
    for env, expected in (({}, "True True True True"), ({"BNN_FINN_SPEEDUPS": "off"}, "False False False False")):
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip().splitlines()[-1] == expected, (env, run.stdout)
