"""driver/accel.py and the stand-in pynq (sim/pynq_standin) against pynq 3.0.1, the PYNQ 3.0 board image's:
every name the driver takes from pynq exists there and accepts what the driver passes, the stand-in has each
one too, and the rules the stand-in enforces are pynq's own. pynq is read from its sources, not imported (it
needs a board's libraries); its sdist is fetched from PyPI once into the venv (pip download --no-deps)."""
import ast
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT, missing_prerequisite

PYNQ = "3.0.1"
FILES = ("__init__.py", "overlay.py", "buffer.py", "mmio.py", "pl_server/xrt_device.py")
# What the driver does with pynq: (where in pynq, where in the stand-in, the arguments the driver passes).
# Positional counts exclude self; keywords must be accepted by name (or by **kwargs).
USED = [
    ("overlay.py:Overlay.__init__", "Overlay.__init__", 1, {"download"}),
    ("buffer.py:allocate", "allocate", 0, {"shape", "dtype", "cacheable"}),
    ("buffer.py:PynqBuffer.flush", "PynqBuffer.flush", 0, set()),
    ("buffer.py:PynqBuffer.invalidate", "PynqBuffer.invalidate", 0, set()),
    ("overlay.py:DefaultIP.read", "DMA.read", 1, set()),
    ("overlay.py:DefaultIP.write", "DMA.write", 2, set()),
    ("mmio.py:MMIO.write_mm", "MMIO.write_mm", 2, set()),
]


@pytest.fixture(scope="module")
def pynq_src() -> dict:
    cache = Path(sys.prefix) / "refs"
    sdist = cache / f"pynq-{PYNQ}.tar.gz"
    if not sdist.is_file():
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                            f"pynq=={PYNQ}", "-d", str(cache)], capture_output=True, text=True, timeout=900)
        if not sdist.is_file():
            missing_prerequisite(f"pynq {PYNQ}'s sources from PyPI ({' '.join(r.stderr.split())[-300:]})",
                                 "a machine that reaches the package index")
    with tarfile.open(sdist) as t:
        return {name: t.extractfile(f"pynq-{PYNQ}/pynq/{name}").read().decode() for name in FILES}


def _defs(source: str) -> dict:
    """'function' and 'Class.method' -> their ast nodes."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            out.update({f"{node.name}.{f.name}": f for f in node.body if isinstance(f, ast.FunctionDef)})
    return out


def _takes(fn: ast.FunctionDef, positional: int, keywords: set) -> bool:
    params = [a.arg for a in fn.args.args if a.arg not in ("self", "cls")]
    named = set(params) | {a.arg for a in fn.args.kwonlyargs}
    return (len(params) >= positional or fn.args.vararg is not None) and (
        keywords <= named or fn.args.kwarg is not None)


def test_every_pynq_name_the_driver_uses_is_pynq_301s_and_the_stand_ins(pynq_src):
    standin = _defs((ROOT / "sim" / "pynq_standin" / "pynq" / "__init__.py").read_text())
    driver = (ROOT / "driver" / "accel.py").read_text()
    for where, standin_name, positional, keywords in USED:
        file, name = where.split(":")
        real = _defs(pynq_src[file]).get(name)
        assert real is not None, f"pynq {PYNQ} has no {name} in {file}"
        assert _takes(real, positional, keywords), (name, positional, keywords)
        assert standin_name in standin and _takes(standin[standin_name], positional, keywords), standin_name
        assert f".{name.split('.')[-1]}(" in driver or name.endswith("__init__") or name == "allocate", \
            f"{name} is no longer used by the driver: update USED"
    exported = {a.name for n in ast.parse(pynq_src["__init__.py"]).body if isinstance(n, ast.ImportFrom)
                for a in n.names}
    imported = {a.name for n in ast.walk(ast.parse(driver)) if isinstance(n, ast.ImportFrom) and n.module == "pynq"
                for a in n.names}
    assert imported and imported <= exported, imported - exported
    # allocate(**kwargs) hands cacheable on to the XRT memory's allocator
    assert "cacheable" in {a.arg for a in _defs(pynq_src["pl_server/xrt_device.py"])["_xrt_allocate"].args.args}


def test_the_stand_ins_rules_are_pynqs(pynq_src):
    """The attributes the driver reads are set by pynq, and a register write of anything but int or bytes fails
    there with the message the stand-in gives."""
    defs = _defs(pynq_src["overlay.py"])
    assigned = {f"{cls}.{t.attr}" for cls in ("Overlay", "DefaultIP")
                for n in ast.walk(defs[f"{cls}.__init__"]) if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Attribute)}
    assert {"Overlay.ip_dict", "DefaultIP.mmio"} <= assigned, assigned
    assert "device_address: int" in pynq_src["buffer.py"]
    message = 'raise ValueError("Data type must be int or bytes.")'
    assert message in pynq_src["mmio.py"]
    assert message in (ROOT / "sim" / "pynq_standin" / "pynq" / "__init__.py").read_text()
