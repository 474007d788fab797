"""The deployment package: the folder a user copies to the PYNQ board.

deploy/
  infer.py          the on-board command (driver/infer.py), with its parts infer_*.py beside it
  accel.py          the accelerator driver (driver/accel.py): numpy and pynq only, as on a stock PYNQ image
  settings.json     FINN's driver settings (shapes, data types, packing), from FINN's MakePYNQDriver
  package.json      model, board, clock, input layout, estimates
  data/test_x.npy   the test set as the accelerator takes it (uint8, NHWC), test_y.npy the labels
  runtime_weights/  FINN's weight files of layers whose weights the driver writes at start (URAM weight
                    memories: UltraScale+ URAM cannot be initialised by the bitstream)
  bitfile/          finn-accel.bit and .hwh, once a bitstream was built (Vivado)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from common.files import write_json
from common.paths import DRIVER

from .build_folder import BuildFolder

# what runs on the board: the command, its parts and the accelerator driver (numpy and pynq only)
DRIVER_FILES = ("infer.py", "infer_errors.py", "infer_package.py", "infer_backends.py", "accel.py")


def write_package(folder: BuildFolder, hw, train_cfg, board, estimates: dict) -> Path:
    """deploy/ from FINN's driver settings in driver_settings/ and the test set."""
    from training.data import make_splits
    deploy, settings = folder.deploy, folder.driver_settings / "settings.json"
    (deploy / "data").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings, deploy / "settings.json")
    for f in DRIVER_FILES:  # driver/ is exactly what runs on the board
        shutil.copyfile(DRIVER / f, deploy / f)
    runtime = folder.driver_settings / "runtime_weights"
    if runtime.is_dir():
        shutil.copytree(runtime, deploy / "runtime_weights", dirs_exist_ok=True)
    io = json.loads(settings.read_text())["driver_information"]["io_shape_dict"]
    ishape = tuple(io["ishape_normal"][0][1:])
    s = make_splits(train_cfg.dataset, hw.data_dir or train_cfg.data_dir, train_limit=1)
    x = s.x_test.numpy().transpose(0, 2, 3, 1)  # NCHW -> NHWC, the order of the accelerator's input stream
    if x.shape[1:] != ishape:
        raise RuntimeError(f"test images {x.shape[1:]} do not match the accelerator input {ishape}")
    np.save(deploy / "data" / "test_x.npy", np.ascontiguousarray(x, dtype=np.uint8))
    np.save(deploy / "data" / "test_y.npy", s.y_test.numpy().astype(np.uint8))
    info = {"model": hw.model_id(train_cfg), "dataset": train_cfg.dataset, "board": board.name,
            "part": board.part, "clock_mhz": 1000.0 / hw.clock_ns, "input_layout": "NHWC uint8 pixels",
            "input_shape": list(ishape), "output": "top-1 class index",
            "estimated_fps": estimates.get("fps"), "estimated_latency_us": estimates.get("latency_us"),
            "bitfile": "bitfile/finn-accel.bit"}
    write_json(deploy / "package.json", info)
    return deploy


def add_bitfile(folder: BuildFolder) -> None:
    src, dst = folder.finn_deploy / "bitfile", folder.deploy / "bitfile"
    dst.mkdir(parents=True, exist_ok=True)
    for ext in ("bit", "hwh"):
        found = sorted(src.glob(f"*.{ext}"))
        if not found:
            raise RuntimeError(f"FINN's deployment package in {src} has no .{ext}")
        shutil.copyfile(found[0], dst / f"finn-accel.{ext}")
