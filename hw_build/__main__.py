"""python -m hw_build --checkpoint pretrained/lenet5/binary --board Pynq-Z1 [--target-fps N | --folding FILE]
python -m hw_build --replay build/lenet5_binary_Pynq-Z1 [--start-step STEP] [--bitstream]"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from common import compat  # noqa: F401

from .boards import BOARDS
from .config import HwConfig, add_arguments, from_args
from .errors import BuildError
from .flow import build, replay_config

RUN_ONLY = HwConfig.RUN_ONLY


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hw_build",
        description="Build a FINN dataflow accelerator from a trained checkpoint, verifying every stage against "
                    "the Brevitas model on real test images. Without --bitstream it stops after HW code "
                    "generation (no Xilinx tools needed); with it, FINN's IP generation, FIFO sizing, stitched IP, "
                    "synthesis, bitfile, PYNQ driver and deployment package follow (Vitis HLS and Vivado needed).",
        formatter_class=argparse.RawDescriptionHelpFormatter)  # each flag names its own default
    add_arguments(p)  # one flag per HwConfig field (hw_build/config.py)
    p.add_argument("--replay", type=Path, metavar="BUILD_DIR",
                   help="build again with the configuration BUILD_DIR/build_state.json recorded (into BUILD_DIR, or "
                        "--out; with --start-step it goes on to the last step unless --stop-after is given); only "
                        + ", ".join("--" + f.replace("_", "-") for f in RUN_ONLY) + " may be given "
                        "beside it")
    p.add_argument("--list-boards", action="store_true", help="print the boards and their resources, then exit")
    return p


def main(argv=None) -> int:
    from .finn_env import command_line
    return command_line(_main, argv)


def _main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.list_boards:
        for b in BOARDS.values():
            print(f"{b.name:10s} {b.part:22s} LUT {b.lut:>7,}  FF {b.ff:>7,}  BRAM36 {b.bram36:>4}  "
                  f"URAM {b.uram:>3}  DSP {b.dsp:>5,}  {b.note}")
        return 0
    if args.replay:
        build(_replayed(args))
        return 0
    if args.checkpoint is None:
        raise BuildError("--checkpoint (or --model) is needed: a pretrained/ folder, a training run folder or a "
                         "checkpoint file")
    build(from_args(args))
    return 0


def _replayed(args) -> HwConfig:
    """The recorded configuration, with the run-only options given beside --replay."""
    defaults = parser().parse_args([])
    fixed = [f.name for f in fields(HwConfig) if f.name not in RUN_ONLY
             and getattr(args, f.name) != getattr(defaults, f.name)]
    if fixed:
        raise BuildError(f"--replay takes the build's configuration from {args.replay / 'build_state.json'}; "
                         f"{', '.join('--' + n.replace('_', '-') for n in fixed)} would change it: drop it, or build "
                         f"anew with --checkpoint ... --out NEW_FOLDER")
    hw = replay_config(args.replay)
    hw.out = args.out or args.replay
    if args.start_step:  # continuing the build: on to the end unless --stop-after says where
        hw.stop_after = None
    for name in RUN_ONLY:
        if name != "out" and getattr(args, name) != getattr(defaults, name):
            setattr(hw, name, getattr(args, name))
    return hw


if __name__ == "__main__":
    sys.exit(main())
