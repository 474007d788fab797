"""Which XNOR-MVAU accumulators FINN's own step_minimize_bit_width leaves too narrow for the popcount.

finn-hlslib accumulates a binary (XNOR-popcount) MVAU's popcount, an integer in [0, MW], in the layer's
accDataType; FINN sizes that type for a dot product of +-1 weights with {0, 1} inputs. The build corrects it
(hw_build.transforms.XnorPopcountAccumulator); this tool shows, per shipped model and board, what FINN's step
alone would have left, and the type the build now gives. Each model is built to its folding (no verification)
in a temporary folder.

    python -m tools.xnor_accumulators
    python -m tools.xnor_accumulators --model pretrained/vggnet7/pynqz1 --board Pynq-Z1
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path

from common.paths import OFFLINE_DATASETS

SHIPPED = [("pretrained/lenet5/binary", "Pynq-Z1"), ("pretrained/lenet5/binary_8bit_first_last", "Pynq-Z1"),
           ("pretrained/vggnet7/binary", "ZCU104"), ("pretrained/vggnet7/binary", "KV260"),
           ("pretrained/vggnet7/pynqz1", "Pynq-Z1")]


def accumulators(checkpoint: Path, board: str, data_dir: str, work: Path) -> list[tuple]:
    """(layer, MW, FINN's type, holds [0, MW], the build's type) per XNOR MVAU."""
    from hw_build.build_folder import BuildFolder
    from hw_build.flow import HwConfig, build
    from hw_build.transforms import xnor_mvaus
    out = work / f"{checkpoint.name}_{board}"
    with contextlib.redirect_stdout(io.StringIO()):  # FINN's and the exporter's chatter
        build(HwConfig(checkpoint=checkpoint, board=board, out=out, verify_images=0,
                       stop_after="minimize_bit_width", data_dir=data_dir), log=lambda *a: None)
    import finn.builder.build_dataflow_steps as finn_steps
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    folder = BuildFolder(out)
    ours = ModelWrapper(str(folder.last_stage("minimize_bit_width")))
    cfg = DataflowBuildConfig(output_dir=str(work / "finn_out"), synth_clk_period_ns=10.0, generate_outputs=[])
    finn = finn_steps.step_minimize_bit_width(ModelWrapper(str(folder.last_stage("folding"))), cfg)
    rows = []
    for node in xnor_mvaus(finn):
        inst = getCustomOp(node)
        acc, mw = DataType[inst.get_nodeattr("accDataType")], inst.get_nodeattr("MW")
        rows.append((node.name, mw, acc.name, acc.allowed(0) and acc.allowed(mw),
                     getCustomOp(ours.get_node_from_name(node.name)).get_nodeattr("accDataType")))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a checkpoint or pretrained/ folder (default: every shipped build)")
    ap.add_argument("--board", default="Pynq-Z1", help="with --model: the board whose folding to use")
    ap.add_argument("--data-dir", default=str(OFFLINE_DATASETS), help="datasets folder (default: ../shared/datasets)")
    a = ap.parse_args(argv)
    from training.checkpoint import preset_path
    todo = [(a.model, a.board)] if a.model else SHIPPED
    with tempfile.TemporaryDirectory() as tmp:
        for model, board in todo:
            rows = accumulators(preset_path(model), board, a.data_dir, Path(tmp))
            narrow = sum(not r[3] for r in rows)
            print(f"{model} {board}: FINN's step leaves {narrow} of {len(rows)} XNOR accumulators too narrow")
            for name, mw, finn, holds, ours in rows:
                print(f"  {name:12s} MW {mw:5d}  FINN {finn:7s} {'holds' if holds else 'TOO NARROW':10s}  build {ours}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
