"""The shipped pretrained models reach the study's accuracy on the full MNIST test set."""
import json

import pytest

from conftest import DATA, ROOT
from training.checkpoint import evaluate_checkpoint

pytestmark = pytest.mark.needs_data


@pytest.mark.parametrize("precision, study", [("binary", 99.16), ("float", 99.50), ("binary_kd", 99.25)])
def test_pretrained_lenet5_reaches_the_study(precision, study):
    folder = ROOT / "pretrained" / "lenet5" / precision
    acc = evaluate_checkpoint(folder, {"data_dir": str(DATA)}, log=lambda *a: None)
    recorded = json.loads((folder / "info.json").read_text())
    assert round(acc, 2) == recorded["test_acc"] == float((folder / "test_accuracy.txt").read_text().split()[0])
    assert recorded["test_images"] == 10000
    assert acc >= study, f"{precision} LeNet5 at {acc:.2f}%, study {study}%"


# The binary VGGNet7 (GPU-trained, 152 epochs, 88.21%; below the study) is checked against its record on all
# 10,000 test images by tests/test_batched.py::test_whole_test_set_simulated_as_brevitas[vgg_zcu104], which
# computes its Brevitas predictions anyway.
