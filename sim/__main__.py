"""python -m sim --build build/lenet5_binary_Pynq-Z1 --mode auto -n 1000"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import compat  # noqa: F401


def parser():
    p = argparse.ArgumentParser(
        prog="python -m sim", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run test images through a hardware build's folded dataflow graph without hardware and "
                    "compare with the Brevitas model. Writes BUILD/sim/report_<mode>.json.")
    p.add_argument("--build", type=Path, required=True, help="output folder of 'python -m hw_build'")
    p.add_argument("--mode", default="auto", choices=["python", "finn", "rtlsim", "cppsim", "auto"],
                   help="python: every layer's function, exact, on whole batches (bit-exact with FINN's Python "
                        "model of each layer); finn: FINN's own execute_onnx image by image (the reference; "
                        "20-70x slower); rtlsim: RTL layers in Verilator with random stalls, the others in python "
                        "(mixed); cppsim: HLS layers from FINN's C++ (needs finn-hlslib; the hls4ml headers stand "
                        "in for Vitis HLS's); auto: the most faithful available per layer")
    p.add_argument("-n", "--images", type=int, default=1000, help="first N test images; 0: the whole test set")
    p.add_argument("--data-dir", default="", help="dataset folder (default: the checkpoint's, then $BNN_DATA_DIR)")
    p.add_argument("--out", type=Path, help="report folder (default BUILD/sim)")
    p.add_argument("--workers", type=int, help="processes for finn mode (default: 2)")
    p.add_argument("--batch-size", type=int, help="images per batch of the python mode, which bounds its memory "
                                                  "(default: sized to about 512 MiB of layer tensors)")
    return p


def main(argv=None) -> int:
    from hw_build.finn_env import command_line
    return command_line(_main, argv, "a simulation keeps no partial result; run the same command "
                                         "again (a smaller -n is quicker)")


def _main(argv=None) -> int:
    args = parser().parse_args(argv)
    from .run import SimError, simulate
    if args.images < 0:
        raise SimError(f"-n takes N >= 0 images (0: the whole test set), got {args.images}")
    if args.workers is not None and args.mode != "finn":
        raise SimError(f"--workers sets the processes of finn mode; --mode {args.mode} runs in one: drop --workers")
    if args.batch_size is not None and args.mode == "finn":
        raise SimError("--batch-size sizes the batches of the python mode; --mode finn runs image by image: "
                       "drop --batch-size")
    if args.batch_size is not None and args.batch_size < 1:
        raise SimError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers is not None and args.workers < 1:
        raise SimError(f"--workers must be at least 1, got {args.workers}")
    from .run import SimOptions
    simulate(args.build, args.mode, args.images, args.data_dir,
             SimOptions(out=args.out, workers=args.workers or 2, batch_size=args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
