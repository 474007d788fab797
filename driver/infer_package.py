"""The deployment package as the driver reads it: FINN's settings, the package facts, the test set; and the
build folder the simulation backends run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from infer_errors import InferError


def _read_json(path: Path, key: str = "") -> dict:
    """A package file: UTF-8 JSON holding a mapping (with `key`), else one line naming the file (the project's
    read_user_file, mirrored: driver/ runs alone on the board)."""
    fix = "copy the package again from the build's deploy/ folder (make build / make bitstream)"
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InferError(f"{path} is not valid JSON text ({' '.join(str(e).split())[:120]}); {fix}") from None
    if not isinstance(data, dict) or (key and not isinstance(data.get(key), dict)):
        raise InferError(f"{path} is not a deployment package's {path.name}{f' (no {key})' if key else ''}; {fix}")
    return data


def load_package(pkg: Path, n: int):
    for f in ("settings.json", "data/test_x.npy", "data/test_y.npy"):
        if not (pkg / f).is_file():
            raise InferError(f"{pkg / f} not found: --package must be a deployment package "
                             f"(build/<model>_<board>/deploy, made by 'make build' / 'make bitstream')")
    settings = _read_json(pkg / "settings.json", "driver_information")["driver_information"]
    info = _read_json(pkg / "package.json") if (pkg / "package.json").is_file() else {}
    x, y = np.load(pkg / "data" / "test_x.npy"), np.load(pkg / "data" / "test_y.npy")
    if n:
        x, y = x[:n], y[:n]
    want = tuple(settings["io_shape_dict"]["ishape_normal"][0][1:])
    if x.shape[1:] != want or x.dtype != np.uint8:
        raise InferError(f"test images are {x.dtype}{list(x.shape[1:])} but the accelerator takes uint8{list(want)} "
                         f"(NHWC): the data does not fit this model")
    if len(x) != len(y):
        raise InferError(f"{len(x)} images but {len(y)} labels in {pkg / 'data'}")
    return settings, info, x, y


def build_folder(pkg: Path, given: Path | None) -> Path:
    """The build folder the simulation backends run: given, or the one holding the package."""
    build = (given or pkg.parent).resolve()
    if not (build / "build_state.json").is_file():
        raise InferError(f"{build} is not a build folder (no build_state.json): --backend sim and emulated run the "
                         f"build's graph; give --build DIR (the folder python -m hw_build wrote)")
    return build
