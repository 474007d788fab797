"""The simulator's stream packing gives exactly the words of FINN's reference rtlsim packing."""
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
