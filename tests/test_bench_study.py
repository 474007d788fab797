"""The side-by-side harness against the study's code, run on a stand-in of its repository (the real one is
not part of this project): same prepared batches on both sides, its train() called as it is."""
import json
import subprocess
import sys

import pytest
from conftest import ROOT

FAKE_MAIN = '''
import torch, torch.nn as nn
from progress.bar import Bar
class SquareHingeLoss(nn.Module):
    def __init__(self, device, num_outputs=10):
        super().__init__()
    def forward(self, x, y):
        t = 2 * torch.eye(10)[y] - 1
        return torch.clamp(1 - x * t, min=0).pow(2).sum(1).mean()
class LeNet5_binary(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.fc = nn.Linear(784, 10)
    def forward(self, x):
        return self.fc(x.flatten(1))
def train(net, trainloader, optimizer, device, criterion, args, epoch):
    bar = Bar("Epoch", max=len(trainloader))
    for images, labels in trainloader:
        optimizer.zero_grad()
        loss = criterion(net(images), labels)
        loss.backward()
        optimizer.step()
        bar.next()
        print(" | Train-Loss: %.3f" % loss.item(), end="")
'''


@pytest.mark.needs_data  # real batches of the training set
def test_bench_study_times_both_sides_on_the_same_batches(tmp_path):
    repo = tmp_path / "study"
    (repo / "models").mkdir(parents=True)
    (repo / "config").mkdir()
    (repo / "main.py").write_text(FAKE_MAIN)
    (repo / "models" / "lenet.py").write_text("")
    (repo / "config" / "binary_mnist.yml").write_text("optimizer: sgd\nlr: 0.01\nmomentum: 0.99\n"
                                                      "loss: SquareHingeLoss\n")
    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "tools.bench_study", "--study-repo", str(repo), "--models",
                        "lenet5", "--modes", "fp32", "--steps", "3", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(x["side"], x["mode"]) for x in rows] == [("study", "fp32"), ("ours", "fp32")]
    # structure and positive values only: the ratio itself depends on the machine and its load (make bench)
    assert all(isinstance(x["images_per_s"], float) and x["images_per_s"] > 0 for x in rows)
    assert isinstance(rows[1]["vs_study"], float) and rows[1]["vs_study"] > 0
    assert "Train-Loss" not in r.stdout  # the study's per-step progress line is timed, not shown


@pytest.mark.parametrize("extra, message", [
    ([], "not a checkout of RWTH-IDS/efficient-binary-neural-networks"),
    (["--modes", "fp8"], "--modes: unknown mode 'fp8'"),
    (["--models", "resnet"], "--models: 'resnet'"),
])
def test_bench_study_refuses_bad_input_in_one_line(tmp_path, extra, message):
    r = subprocess.run([sys.executable, "-m", "tools.bench_study", "--study-repo", str(tmp_path), *extra],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("error:")]) == 1
