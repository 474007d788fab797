"""python -m training ID --params configs/lenet5_binary.yml [--lr 0.01 ...]

Trains (or with --inference evaluates) a binary, ternary or float LeNet5/VGGNet7.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import compat  # noqa: F401
from common.errors import cli
from common.files import require_destination

from .config import ConfigError, add_arguments, describe, overrides_from, resolve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Quantization-aware training (Brevitas) of the study's binary/ternary/float LeNet5 and "
                    "VGGNet7. Values come from the preset (--params), then from the flags below, which win.",
        formatter_class=argparse.RawDescriptionHelpFormatter)  # each flag names its own default
    p.add_argument("id", nargs="?", default="", help="run name: outputs go to RESULTS/ID/run-TIMESTAMP/")
    p.add_argument("--params", help="YAML preset in configs/, e.g. configs/lenet5_binary.yml")
    p.add_argument("--resume", metavar="RUN_DIR", type=Path,
                   help="continue an interrupted run at its next epoch (its params.yml and last.pt)")
    p.add_argument("--finish", metavar="RUN_DIR", type=Path,
                   help="redo the end of a completed run: PreciseBN, final.pt, test accuracy, curves")
    p.add_argument("--inference", action="store_true",
                   help="evaluate --model-path on the test set instead of training")
    p.add_argument("--model-path", metavar="DIR_OR_PT", type=Path,
                   help="a run folder, a pretrained/ folder or a .pt checkpoint (with --inference)")
    p.add_argument("--export", metavar="DIR_OR_PT", type=Path,
                   help="export a checkpoint to QONNX for FINN (model.onnx beside it) and check it with qonnx's "
                        "executor against the Brevitas model on the first 1,000 test images (--test-limit N: N; "
                        "0: all)")
    add_arguments(p)
    return p


def check_run_id(run_id: str) -> None:
    """A run name becomes a folder under --results: one plain name, never a path out of it."""
    import re
    if run_id and (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", run_id) or ".." in run_id):
        raise ConfigError(f"run name {run_id!r} becomes the folder RESULTS/{run_id}: give one plain name (letters, "
                          f"digits, . _ + -; no '/' or '..'), e.g. lenet5_try2")


def main(argv=None) -> int:
    """The command under the project's error contract (common/errors.py)."""
    return cli(_main, argv)


def _main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        overrides = overrides_from(args)
        mode = next((f for f, v in (("--inference", args.inference), ("--export", args.export),
                                    ("--finish", args.finish), ("--resume", args.resume)) if v), None)
        if args.params and mode:  # the checkpoint's or run's own config decides: a preset would be ignored
            raise ConfigError(f"{mode} takes the configuration from the checkpoint or run folder; --params "
                              f"{args.params} would be ignored: drop it")
        if args.inference or args.export:
            from .checkpoint import evaluate_checkpoint
            from .export import export_checkpoint
            target = args.model_path if args.inference else args.export
            if target is None:
                raise ConfigError("--inference needs --model-path DIR_OR_PT")
            unused = sorted(set(overrides) - {"data_dir", "test_limit", "eval_batch_size"})
            if unused:  # the checkpoint's own config decides the rest; a silently ignored flag misleads
                raise ConfigError(f"--inference/--export take the model from the checkpoint; "
                                  f"{', '.join('--' + k.replace('_', '-') for k in unused)} would be ignored: drop it")
            if args.inference:
                evaluate_checkpoint(target, overrides)
            else:
                require_destination(target if target.is_dir() else target.parent, "the export's folder", "--export")
                export_checkpoint(target, overrides=overrides)
            return 0
        from .finish import finish_run
        from .run_folder import load_config_of
        from .train import Interrupted, train
        for flag, run in (("--finish", args.finish), ("--resume", args.resume)):
            if run is not None and Path(run).is_dir():  # before PreciseBN or an epoch is computed
                require_destination(run, "run folder", flag)
        if args.finish:
            if overrides:
                raise ConfigError(f"--finish uses the run's own params.yml; drop {', '.join(overrides)}")
            finish_run(args.finish)
            return 0
        if args.resume:
            cfg = load_config_of(args.resume)
            if overrides:
                raise ConfigError(f"--resume continues with the run's own params.yml; drop {', '.join(overrides)}")
            from .run_folder import resume_point
            if resume_point(args.resume, cfg) is None:
                if not (Path(args.resume) / "final.pt").is_file():  # stopped while finishing: finish it
                    print(f"{args.resume} has trained all {cfg.epochs} epochs but was not finished: finishing it")
                    finish_run(args.resume)
                    return 0
                print(f"{args.resume} has trained all {cfg.epochs} epochs: nothing to resume, nothing changed "
                      f"(its end again: python -m training --finish {args.resume})")
                return 0
            try:
                train(cfg, resume=args.resume)
            except Interrupted:
                return 130
            return 0
        if not args.params and not overrides:
            raise ConfigError("give a preset with --params configs/<model>_<precision>.yml (see --help)")
        check_run_id(args.id)
        cfg, overridden = resolve(args.params, overrides)
        print("resolved parameters:\n" + describe(cfg, overridden), flush=True)
        try:
            train(cfg, run_id=args.id)
        except Interrupted:
            return 130
        return 0
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None


if __name__ == "__main__":
    sys.exit(main())
