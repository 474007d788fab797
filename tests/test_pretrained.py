"""The shipped pretrained models reach the study's accuracy on the full MNIST test set."""
import json

import pytest
from conftest import DATA, ROOT

from training.checkpoint import evaluate_checkpoint

pytestmark = pytest.mark.needs_data


@pytest.mark.parametrize("precision, study", [("binary", 99.16), ("float", 99.50), ("binary_kd", 99.25),
                                              ("binary_8bit_first_last", 99.50)])
def test_pretrained_lenet5_reaches_the_study(precision, study):
    folder = ROOT / "pretrained" / "lenet5" / precision
    acc = evaluate_checkpoint(folder, {"data_dir": str(DATA)}, log=lambda *a: None)
    recorded = json.loads((folder / "info.json").read_text())
    assert round(acc, 2) == recorded["test_acc"] == float((folder / "test_accuracy.txt").read_text().split()[0])
    assert recorded["test_images"] == 10000
    assert acc >= study, f"{precision} LeNet5 at {acc:.2f}%, study {study}%"


@pytest.mark.slow
@pytest.mark.parametrize("precision, floor", [("binary", 88.0), ("pynqz1", 84.73)])
def test_pretrained_vggnet7_gives_its_recorded_accuracy(precision, floor):
    """The shipped VGGNet7s (binary: 152 GPU epochs, below the study's 89.85%; pynqz1: half width, distilled on the
    CPU from the full-width one, above finn-examples' CNV-w1a1 84.19%) on all 10,000 test images give the accuracy
    their records state, and never less than their floors (full width: 88.0%; half width: its shipped 84.73%)."""
    folder = ROOT / "pretrained" / "vggnet7" / precision
    acc, n = evaluate_checkpoint(folder, {"data_dir": str(DATA)}, log=lambda *a: None, count=True)
    recorded = json.loads((folder / "info.json").read_text())
    assert n == recorded["test_images"] == 10000
    assert round(acc, 2) == recorded["test_acc"] == float((folder / "test_accuracy.txt").read_text().split()[0])
    assert round(acc, 2) >= floor, f"{precision} VGGNet7 at {acc:.2f}%, below its floor {floor}% (a worse checkpoint)"
