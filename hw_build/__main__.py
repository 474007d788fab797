"""python -m hw_build --checkpoint pretrained/lenet5/binary --board Pynq-Z1 [--target-fps N | --folding FILE]"""
from __future__ import annotations

import argparse
import sys

from training import compat  # noqa: F401


def parser() -> argparse.ArgumentParser:
    from .config import add_arguments
    p = argparse.ArgumentParser(
        prog="python -m hw_build",
        description="Build a FINN dataflow accelerator from a trained checkpoint, verifying every stage against "
                    "the Brevitas model on real test images. Without --bitstream it stops after HW code "
                    "generation (no Xilinx tools needed); with it, FINN's IP generation, FIFO sizing, stitched IP, "
                    "synthesis, bitfile, PYNQ driver and deployment package follow (Vitis HLS and Vivado needed).",
        formatter_class=argparse.RawDescriptionHelpFormatter)  # each flag names its own default
    add_arguments(p)  # one flag per HwConfig field (hw_build/config.py)
    p.add_argument("--list-boards", action="store_true", help="print the boards and their resources, then exit")
    return p


def main(argv=None) -> int:
    from training.errors import cli
    return cli(_main, argv)


def _main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .boards import BOARDS
    if args.list_boards:
        for b in BOARDS.values():
            print(f"{b.name:10s} {b.part:22s} LUT {b.lut:>7,}  FF {b.ff:>7,}  BRAM36 {b.bram36:>4}  "
                  f"URAM {b.uram:>3}  DSP {b.dsp:>5,}  {b.note}")
        return 0
    from .config import from_args
    from .errors import BuildError
    from .flow import build
    if args.checkpoint is None:
        raise BuildError("--checkpoint (or --model) is needed: a pretrained/ folder, a training run folder or a "
                         "checkpoint file")
    build(from_args(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
