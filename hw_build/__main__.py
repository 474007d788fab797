"""python -m hw_build --model pretrained/lenet5/binary --board Pynq-Z1 [--target-fps N | --folding FILE]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training import compat  # noqa: F401


def parser() -> argparse.ArgumentParser:
    from .boards import BOARDS
    p = argparse.ArgumentParser(
        prog="python -m hw_build",
        description="Build a FINN dataflow accelerator from a trained checkpoint, verifying every stage against "
                    "the Brevitas model on real test images. Without --bitstream it stops after HW code "
                    "generation (no Xilinx tools needed); with it, FINN's IP generation, FIFO sizing, stitched IP, "
                    "synthesis, bitfile, PYNQ driver and deployment package follow (Vitis HLS and Vivado needed).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, required="--list-boards" not in sys.argv,
                   help="pretrained/ folder, training run folder or .pt checkpoint")
    p.add_argument("--board", default="Pynq-Z1", help=f"target board: {', '.join(BOARDS)}")
    fold = p.add_mutually_exclusive_group()
    fold.add_argument("--target-fps", type=int,
                      help="automatic folding (FINN's SetFolding) to this many images/s. Default: the shipped "
                           "folding configs/folding/<model>_<precision>_<board>.json, else 10000")
    fold.add_argument("--folding", type=Path, help="folding JSON in FINN's format (PE, SIMD, ram_style per layer)")
    p.add_argument("--clock-ns", type=float, default=10.0, help="clock period in ns (10 = 100 MHz)")
    p.add_argument("--out", type=Path, help="output folder (default build/<model>_<precision>_<board>)")
    p.add_argument("--verify-images", type=int, default=100,
                   help="test images compared with the Brevitas model after each stage; -1: whole test set, 0: none")
    p.add_argument("--data-dir", default="", help="folder with mnist.npz / cifar10.npz (default: the checkpoint's, "
                                                  "then $BNN_DATA_DIR, then ./data)")
    p.add_argument("--bitstream", action="store_true",
                   help="go on to the bitfile and deployment package (needs vitis_hls and vivado in PATH)")
    p.add_argument("--mvau-wwidth-max", type=int, default=1024,
                   help="widest weight stream (bits) automatic folding may give one MVAU PE")
    p.add_argument("--stop-after", metavar="STEP", help="end the flow after this step (see README: export, "
                                                       "streamline, convert_to_hw, estimates, hw_codegen, ...)")
    p.add_argument("--list-boards", action="store_true", help="print the boards and their resources, then exit")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .boards import BOARDS, BoardError
    if args.list_boards:
        for b in BOARDS.values():
            print(f"{b.name:10s} {b.part:22s} LUT {b.lut:>7,}  FF {b.ff:>7,}  BRAM36 {b.bram36:>4}  "
                  f"URAM {b.uram:>3}  DSP {b.dsp:>5,}  {b.note}")
        return 0
    from training.checkpoint import CheckpointError
    from training.config import ConfigError
    from training.data import DataError
    from .finn_env import ToolMissing
    from .flow import BuildError, HwConfig, build
    from .verify import VerificationError
    hw = HwConfig(checkpoint=args.model, board=args.board, target_fps=args.target_fps, folding=args.folding,
                  clock_ns=args.clock_ns, out=args.out, verify_images=args.verify_images,
                  bitstream=args.bitstream, data_dir=args.data_dir, mvau_wwidth_max=args.mvau_wwidth_max,
                  stop_after=args.stop_after)
    try:
        build(hw)
    except ToolMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (BuildError, BoardError, CheckpointError, ConfigError, DataError, VerificationError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
