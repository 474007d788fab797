"""The HLS headers cppsim compiles against when Vitis HLS is not installed.

A folder shaped like $XILINX_HLS (include/, lnx64/...) assembled in the build directory from the hls4ml
wheel's open-source ap_types (pinned in requirements/deps.txt) and the project's stand-ins
(sim/hls_standins/README.md). The copies get the patches below: two for what FINN's code needs, three for
speed. The speed patches change no computed bit (tests compare every cppsim layer with the python mode);
measured on LeNet5's SIMD-800 XNOR layer (MVAU_hls_0), 20 images, one process: 4.6 s unpatched, 2.3 s with
the range fast paths, 0.68 s with clearUnusedBits also non-volatile.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

STANDINS = Path(__file__).resolve().parent / "hls_standins"

RANGE_HELPER = """// project fast path (sim/hls_headers.py): bits l..h (h - l < 64) of a little-endian word array
static inline uint64_t bnn_range_bits(const uint64_t *w, int words, int l, int h) {
  int lw = l / 64, lb = l % 64, len = h - l + 1;
  uint64_t v = w[lw] >> lb;
  if (lb && lw + 1 < words) v |= w[lw + 1] << (64 - lb);
  return len < 64 ? v & (~0ULL >> (64 - len)) : v;
}
"""
PRIVATE_RANGE_REF = "template <int _AP_W, bool _AP_S>\nstruct _private_range_ref {"
RANGE_FROM_REF = """  INLINE ap_int_base(const ap_range_ref<_AP_W2, _AP_S2>& ref) {
    Base::V = (ref.get()).V;
  }"""
# (file, old text, new text, times old must occur): applied to the copies, never to the wheel
PATCHES = [
    # FINN's code reads T::sign_flag, which Vitis's ap_int_base has and hls4ml's lacks
    ("ap_int_base.h", "static const int width = _AP_W;",
     "static const int width = _AP_W;\n  static const bool sign_flag = _AP_S;", 1),
    # hls4ml's _private_range_ref copies and shifts the whole multi-word value to read a range: O(width)
    ("etc/ap_private.h", PRIVATE_RANGE_REF, RANGE_HELPER + PRIVATE_RANGE_REF, 1),
    ("etc/ap_private.h", "    } else {\n      val = d_bv;\n      val >>= l_index;",
     "    } else if (_AP_W > 64 && h_index - l_index < 64) {  // project fast path (sim/hls_headers.py)\n"
     "      val = bnn_range_bits(d_bv.get_pVal(), (_AP_W + 63) / 64, l_index, h_index);\n"
     "    } else {\n      val = d_bv;\n      val >>= l_index;", 2),
    # a narrow integer from a range of a wide one, without the wide temporaries (finn-hlslib's
    # Weights_Tile reads each SIMD lane so)
    ("ap_int_base.h", RANGE_FROM_REF, RANGE_FROM_REF.replace("    Base::V = (ref.get()).V;", """\
    if constexpr (_AP_W <= 64 && _AP_W2 > 64) {  // project fast path (sim/hls_headers.py)
      if (ref.h_index >= ref.l_index && ref.h_index - ref.l_index < 64) {
        Base::V = bnn_range_bits(ref.d_bv.V.get_pVal(), (_AP_W2 + 63) / 64, ref.l_index, ref.h_index);
        return;
      }
    }
    Base::V = (ref.get()).V;"""), 1),
]
# clearUnusedBits is declared volatile only, which forces every ap_int value through memory after each
# operation (and a store-forwarding stall per XNOR lane); a non-volatile overload keeps them in registers
VOLATILE_CLEAR = re.compile(r"(  INLINE void clearUnusedBits\(void\) volatile\n(?:.*\n)*?  \}\n)")
SIM_LIBS = ("lnx64/lib/csim/libhlsmc++-GCC46.so", "lnx64/tools/fpo_v7_1/libIp_floating_point_v7_1_bitacc_cmodel.so",
            "lnx64/tools/fpo_v7_1/libgmp.so", "lnx64/tools/fpo_v7_1/libmpfr.so")


def ap_types_dir() -> Path | None:
    spec = importlib.util.find_spec("hls4ml")  # located, not imported (its imports are heavy)
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
    return d if (d / "ap_int.h").is_file() else None


def patched(text: str, name: str, log=print) -> str:
    """text with every patch for file `name`; one that does not fit (another hls4ml) is left out, with a note."""
    for file, old, new, times in PATCHES:
        if file == name:
            if text.count(old) == times:
                text = text.replace(old, new)
            else:
                log(f"note: cppsim header patch for {file} does not fit this hls4ml (pinned: 1.3.0); "
                    f"compiling without it (same results, slower)", file=sys.stderr)
    if name == "etc/ap_private.h":
        text = VOLATILE_CLEAR.sub(lambda m: m.group(1).replace(") volatile\n", ")\n", 1) + m.group(1), text)
    return text


def standin_hls_root(work: Path) -> Path:
    """A folder shaped like $XILINX_HLS for FINN's compile script, reused while its sources are unchanged."""
    root = work / "hls_standin"
    inc = root / "include"
    stamp = hashlib.sha256(b"".join(f.read_bytes() for f in sorted(STANDINS.glob("*.h")))
                           + Path(__file__).read_bytes()).hexdigest()
    if (root / ".ready").is_file() and (root / ".ready").read_text() == stamp:
        return root
    inc.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ap_types_dir(), inc, dirs_exist_ok=True)
    for name in {p[0] for p in PATCHES} | {"etc/ap_private.h"}:
        (inc / name).write_text(patched((inc / name).read_text(), name))
    with open(inc / "ap_int.h", "a") as f:
        f.write("\n#include <hls_half.h>\n")
    for f in STANDINS.glob("*.h"):
        shutil.copyfile(f, inc / f.name)
    for lib in SIM_LIBS:  # FINN links these Vitis simulation libraries; the layers' code paths need none
        (root / lib).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-shared", "-x", "c", "-", "-o", str(root / lib)], input="", text=True, check=True)
    (root / ".ready").write_text(stamp)
    return root
