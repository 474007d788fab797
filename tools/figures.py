"""make figures: the pictures in docs/img/, made from what the flow writes (never edited by hand).

  training_curves_vggnet7_binary.png   pretrained/vggnet7/binary/metrics.csv (the shipped model's training)
  cycles_per_layer_lenet5_Pynq-Z1.png,  a LeNet5/Pynq-Z1 build's report/estimates.json (FINN estimates;
  resources_per_layer_lenet5_Pynq-Z1.png  built to the estimates step when build/lenet5_binary_Pynq-Z1 lacks it)
  sweep_pareto_lut.png                  a capacity sweep's table.csv (results/sweep/lenet5, else the quick grid,
                                        run when neither exists)
"""
from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common.paths import BUILD, CONFIGS, ROOT

OUT = ROOT / "docs" / "img"
PRETRAINED_RUN = ROOT / "pretrained" / "vggnet7" / "binary"
LENET_BUILD = BUILD / "lenet5_binary_Pynq-Z1"
SWEEPS = (ROOT / "results" / "sweep" / "lenet5", ROOT / "results" / "sweep" / "lenet5_quick")


def training_curves(out: Path) -> Path:
    from training.plots import training_curves as plot
    return plot(PRETRAINED_RUN / "metrics.csv", out / "training_curves_vggnet7_binary.png",
                title="binary VGGNet7, CIFAR-10 (pretrained/vggnet7/binary)")


def per_layer(out: Path) -> list[Path]:
    from hw_build.build_folder import BuildFolder
    from hw_build.estimates import plot
    folder = BuildFolder(LENET_BUILD)
    if not folder.estimates():
        _run("-m", "hw_build", "--checkpoint", "pretrained/lenet5/binary", "--board", "Pynq-Z1", "--verify-images",
             "0", "--stop-after", "estimates", "--out", str(folder.root))
    with tempfile.TemporaryDirectory() as tmp:
        plot(folder.estimates(), Path(tmp))
        return [shutil.copyfile(Path(tmp) / f"{name}.png", out / f"{name}_lenet5_Pynq-Z1.png")
                for name in ("cycles_per_layer", "resources_per_layer")]


def sweep_pareto(out: Path) -> Path:
    from sweep.report import plot
    from sweep.spec import load_spec
    spec = CONFIGS / "sweep" / "lenet5.yml"
    found = next((d for d in SWEEPS if (d / "table.csv").is_file()), None)
    if found is None:
        _run("-m", "sweep", str(spec), "--quick")
        found = SWEEPS[1]
    with open(found / "table.csv") as f:
        table = [_typed(r) for r in csv.DictReader(f)]
    with tempfile.TemporaryDirectory() as tmp:
        plot(table, Path(tmp), load_spec(spec).board)
        return shutil.copyfile(Path(tmp) / "pareto_lut.png", out / "sweep_pareto_lut.png")


def _typed(row: dict) -> dict:
    """table.csv's text back to the numbers and flags the plot takes."""
    for k in ("test_acc_pct", "target_fps", "fps_est", "LUT"):
        row[k] = float(row[k]) if row[k] not in ("", None) else ""
    row["target_fps"] = int(row["target_fps"])
    row["fits"] = row["fits"] == "True"
    return row


def _run(*argv: str) -> None:
    print("running: python", " ".join(argv), flush=True)
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.figures", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT, help=f"folder for the PNGs (default {OUT.relative_to(ROOT)})")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for made in [training_curves(args.out), *per_layer(args.out), sweep_pareto(args.out)]:
        print(f"wrote {Path(made).relative_to(ROOT) if Path(made).is_relative_to(ROOT) else made}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
