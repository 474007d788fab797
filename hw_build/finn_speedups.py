"""Three per-element loops of finn-plus 1.6.1 / qonnx, which take most of a large build's time (and half of
FINN's own Python execution of a VGGNet7's stages), run vectorized, with the same results (tests/test_packing.py:
equal on every case the builds meet). install(), run by finn_env.setup, puts them in place;
BNN_FINN_SPEEDUPS=off keeps FINN's and qonnx's own code throughout.

- Hex packing of weight files: FINN writes every weight file (hw_codegen's .dat and params.h, the driver's
  runtime_weights, rtlsim inputs) through ``pack_innermost_dim_as_hex_string``, element by element through
  ``bitstring`` (about 35 us an element). FINN's own ``finnpy_to_packed_bytearray`` packs the same bits with
  NumPy (finn-plus defines it as that packing padded to whole bytes); its bytes become the same hex strings.
  Cases outside it (a zero-length or 0-d array, a width that is not whole hex digits or too narrow) go to
  FINN's original, which raises its own errors.
- Streamlining's Absorb1BitMulIntoMatMul/Conv check every weight through ``np.vectorize`` of the weight
  type's ``allowed``, which for BIPOLAR is ``np.isin`` on each single value (about 17 us): a scalar takes a
  direct comparison instead, an array still ``np.isin``.
- qonnx's execute_onnx rounds every integer-typed tensor before and after each node (``sanitize_quant_values``)
  and takes the largest rounding error with Python's built-in ``max`` over the flattened array, element by
  element (about 50 ns an element: half of the 44 s FINN takes to execute every stage of the full-width
  VGGNet7 on 2 images). That module's ``max`` becomes ``max_of_array``: NumPy's argmax for a non-empty 1-D float array
  without NaN (where the two agree), the built-in for anything else.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import os
import sys

import numpy as np

_HEX = np.array(list("0123456789abcdef"))


def hex_strings(packed: np.ndarray, pad_to_nbits: int, prefix: str) -> np.ndarray:
    """Rows of bytes (..., nbytes) as hex strings of pad_to_nbits / 4 digits after prefix (numpy str array)."""
    digits = np.stack([_HEX[packed >> 4], _HEX[packed & 15]], axis=-1).reshape(*packed.shape[:-1], -1)
    want = pad_to_nbits // 4
    if digits.shape[-1] > want:  # whole-byte padding went past the asked width: the extra digits are zeros
        digits = digits[..., digits.shape[-1] - want:]
    head = np.array(list(prefix) + ["0"] * (want - digits.shape[-1]), dtype="<U1")
    digits = np.concatenate([np.broadcast_to(head, (*digits.shape[:-1], len(head))), digits], axis=-1)
    return np.ascontiguousarray(digits).view(f"<U{digits.shape[-1]}")[..., 0]


def fast_pack_innermost_dim_as_hex_string(original, ndarray, dtype, pad_to_nbits, reverse_inner=False, prefix="0x"):
    """FINN's pack_innermost_dim_as_hex_string (original: FINN's own, for the cases outside this path)."""
    from finn.util.data_packing import finnpy_to_packed_bytearray
    if type(ndarray) is not np.ndarray or ndarray.dtype not in (np.float32, np.float16):
        ndarray = np.asarray(ndarray, dtype=np.float32)
    pad_to_nbits = max(pad_to_nbits, 4)
    bits = ndarray.shape[-1] * dtype.bitwidth() if ndarray.ndim else 0
    if not bits or pad_to_nbits % 4 or pad_to_nbits < bits:
        return original(ndarray, dtype, pad_to_nbits, reverse_inner=reverse_inner, prefix=prefix)
    packed = finnpy_to_packed_bytearray(np.asarray(ndarray, dtype=np.float32), dtype, reverse_inner=reverse_inner)
    return hex_strings(np.asarray(packed, dtype=np.uint8), pad_to_nbits, prefix)


def bipolar_allowed_with_scalar_path(original):
    """BipolarType.allowed: a single value by comparison, an array (or anything else) by qonnx's own."""
    @functools.wraps(original)
    def allowed(self, value):
        if isinstance(value, (int, float, np.integer, np.floating)):
            return np.bool_(value == -1 or value == 1)
        return original(self, value)
    allowed.original = original
    return allowed


def max_of_array(*args, **kwargs):
    """Python's max, by NumPy for a non-empty 1-D float ndarray without NaN (the built-in skips a NaN that is not
    first; NumPy would return it): the first largest element, as the built-in keeps (-0.0 before 0.0 stays)."""
    if len(args) == 1 and not kwargs:
        a = args[0]
        if type(a) is np.ndarray and a.ndim == 1 and a.size and a.dtype.kind == "f" and not np.isnan(a).any():
            return a[a.argmax()]
    return builtins.max(*args, **kwargs)


def _repoint(old, new) -> None:
    """Every loaded module holding FINN's hex packing function `old` (data_packing and the modules that
    imported it by name) gets `new`; modules imported later take data_packing's."""
    for module in list(sys.modules.values()):
        if getattr(module, "pack_innermost_dim_as_hex_string", None) is old:
            module.pack_innermost_dim_as_hex_string = new


@contextlib.contextmanager
def finns_own_packing():
    """FINN's per-element hex packing inside the block (the side-by-side bench and tests), the vectorized
    one again after it."""
    import finn.util.data_packing as dp
    fast = dp.pack_innermost_dim_as_hex_string
    _repoint(fast, fast.original)
    try:
        yield
    finally:
        _repoint(fast.original, fast)


def install() -> bool:
    """Points FINN's modules at the vectorized packing, BIPOLAR's check at its scalar path and qonnx's rounding
    check at max_of_array. False where BNN_FINN_SPEEDUPS=off keeps FINN's and qonnx's own."""
    import finn.util.data_packing as dp
    import qonnx.util.basic as qonnx_basic
    from qonnx.core.datatype import BipolarType
    if os.environ.get("BNN_FINN_SPEEDUPS", "").lower() in ("off", "0", "no"):
        return False
    original = dp.pack_innermost_dim_as_hex_string
    if getattr(original, "original", None):
        return True
    fast = functools.wraps(original)(functools.partial(fast_pack_innermost_dim_as_hex_string, original))
    fast.original = original
    _repoint(original, fast)
    BipolarType.allowed = bipolar_allowed_with_scalar_path(BipolarType.allowed)
    qonnx_basic.max = max_of_array  # a module global: shadows the built-in in sanitize_quant_values only
    return True
