import subprocess
import sys

import pytest

from conftest import ROOT
from training.config import ConfigError, TrainConfig, resolve
from training.__main__ import main, parser


@pytest.mark.parametrize("preset", sorted((ROOT / "configs").glob("*.yml")), ids=lambda p: p.name)
def test_every_preset_resolves(preset):
    cfg, _ = resolve(str(preset), {})
    assert cfg.model in preset.name


def test_command_line_overrides_preset():
    cfg, over = resolve(str(ROOT / "configs/lenet5_binary.yml"),
                        {"lr": "0.2", "epochs": "3", "lr_milestones": "10,20", "augment": "false"})
    assert (cfg.lr, cfg.epochs, cfg.lr_milestones, cfg.augment) == (0.2, 3, [10, 20], False)
    assert over == {"lr", "epochs", "lr_milestones", "augment"}


@pytest.mark.parametrize("key,value,needle", [
    ("epochs", "ten", "epochs (command line): expected an integer"),
    ("lr", "fast", "lr (command line): expected a number"),
    ("binarize", "maybe", "binarize (command line): expected true or false"),
    ("optimizer", "lamb", "optimizer: 'lamb' is not one of"),
    ("tern_weights", "10", "tern_weights: '10' must be 4 characters"),
    ("dataset", "cifar10", "lenet5 is built for mnist"),
])
def test_bad_values_name_the_key(key, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve(str(ROOT / "configs/lenet5_binary.yml"), {key: value})


def test_unknown_and_mistyped_preset_keys(tmp_path):
    p = tmp_path / "bad.yml"
    p.write_text("model: lenet5\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown key\\(s\\) learning_rate"):
        resolve(str(p), {})
    p.write_text("model: lenet5\nepochs: [1, 2]\n")
    with pytest.raises(ConfigError, match="epochs .*expected an integer"):
        resolve(str(p), {})
    p.write_text("model: [lenet5\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(str(p), {})
    with pytest.raises(ConfigError, match="not found"):
        resolve(str(tmp_path / "missing.yml"), {})


def test_quantized_nets_refuse_biases():
    with pytest.raises(ConfigError, match="no biases"):
        TrainConfig(biases=True).validate()


def test_cli_reports_error_before_any_work(capsys):
    assert main(["x", "--params", str(ROOT / "configs/lenet5_binary.yml"), "--epochs", "-1"]) == 2
    assert "epochs: must be positive" in capsys.readouterr().err


def test_help_explains_every_preset_key():
    text = parser().format_help()
    for f in TrainConfig.__dataclass_fields__:
        assert "--" + f.replace("_", "-") in text
    out = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--tern-weights" in out.stdout
