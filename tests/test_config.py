import re
import subprocess
import sys

import pytest
from conftest import ROOT

from training.__main__ import main, parser
from training.config import ConfigError, TrainConfig, resolve


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
    ("teacher_compile", "maybe", "teacher_compile: 'maybe' is not one of auto, on, off"),
    ("tern_weights", "10", "tern_weights: '10' must be 4 characters"),
    ("dataset", "cifar10", "lenet5 is built for mnist"),
    ("lr", "nan", "lr: must be a finite number"),
    ("lr", "inf", "lr: must be a finite number"),
    ("test_limit", "-5", "test_limit: must be 0 or more"),
    ("train_limit", "-1", "train_limit: must be 0 or more"),
    ("val_size", "-7", "val_size: must be -1"),
    ("distill_weight", "2", "distill_weight: must be in [0, 1]"),
    ("distill_temperature", "0", "distill_temperature: must be positive"),
    ("time_budget", "-3", "time_budget: must be 0"),
    ("checkpoint_every", "0", "checkpoint_every: must be positive"),
    ("swa_start", "-1", "swa_start: must be 0 (off) or an epoch of the run"),
    ("init_latent_from", "x.pt", "init_latent_from: gives magnitudes to init_from's signs; set init_from too"),
])
def test_bad_values_name_the_key(key, value, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
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


@pytest.mark.parametrize("line, key, expected", [
    ("epochs: 3", "epochs", 3), ("epochs: '3'", "epochs", 3), ("lr: 3", "lr", 3.0), ("lr: '1e-3'", "lr", 1e-3),
    ("epochs: 2.5", "epochs", "expected an integer, got 2.5"), ("epochs: true", "epochs", "expected an integer"),
    ("lr: true", "lr", "expected a number, got True"), ("lr: [1]", "lr", "expected a number"),
])
def test_preset_numbers_are_read_as_their_type_and_a_bool_is_no_number(tmp_path, line, key, expected):
    p = tmp_path / "p.yml"
    p.write_text(f"model: lenet5\n{line}\n")
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=re.escape(f"{key}") + ".*" + re.escape(expected)):
            resolve(str(p), {})
    else:
        value = getattr(resolve(str(p), {})[0], key)
        assert value == expected and type(value) is type(expected)


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


def test_empty_preset_and_preset_without_model(tmp_path):
    p = tmp_path / "empty.yml"
    p.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve(str(p), {})
    p.write_text("epochs: 3\n")
    with pytest.raises(ConfigError, match="does not name its model"):
        resolve(str(p), {})


def test_inference_refuses_options_it_would_ignore(capsys):
    assert main(["--inference", "--model-path", str(ROOT / "pretrained/lenet5/binary"), "--model", "vggnet7"]) == 2
    assert "--model would be ignored" in capsys.readouterr().err


def test_unwritable_results_stop_before_loading_data(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["x", "--params", str(ROOT / "configs/lenet5_binary.yml"), "--results", str(blocker / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{blocker} is a file, not a folder" in err and "give --results" in err and "Traceback" not in err


def test_two_runs_in_the_same_second_get_their_own_folders(tmp_path):
    from training.run_folder import Run
    cfg = TrainConfig(results=str(tmp_path))
    a, b = Run.create(cfg, "same"), Run.create(cfg, "same")
    assert a.dir != b.dir and a.dir.is_dir() and b.dir.is_dir()


def test_renamed_8bit_keys_are_still_read(tmp_path, capsys):
    """first_layer_8bit / last_layer_8bit were l1_fp / ln_fp: a preset or flag with the old key is read as
    the new one with a note; a checkpoint's recorded config with the old keys, silently."""
    preset = tmp_path / "old.yml"
    preset.write_text("model: lenet5\nl1_fp: true\n")
    cfg, _ = resolve(str(preset), {"ln_fp": "true"})
    assert cfg.first_layer_8bit and cfg.last_layer_8bit
    err = capsys.readouterr().err
    assert "l1_fp is now first_layer_8bit" in err and "ln_fp is now last_layer_8bit" in err
    args = parser().parse_args(["--model", "lenet5", "--l1-fp", "true"])
    assert args.first_layer_8bit == "true"
    recorded = TrainConfig.from_dict({"model": "lenet5", "l1_fp": True}, str(tmp_path / "last.pt"))
    assert recorded.first_layer_8bit and capsys.readouterr().err == ""


@pytest.mark.parametrize("line, needle", [
    ("tern_weights: 0011", "tern_weights: 0011 is read by YAML as the number 9, not as written; quote it "
                           "(tern_weights: '0011')"),
    ("seed: 010", "seed: 010 is read by YAML as the number 8"),
])
def test_a_value_yaml_reads_otherwise_is_named_as_written(tmp_path, line, needle):
    from training.config import ConfigError, load_preset
    preset = tmp_path / "p.yml"
    preset.write_text(f"model: lenet5\n{line}  # as a user writes it\n")
    with pytest.raises(ConfigError) as e:
        load_preset(preset)
    assert needle in str(e.value)
    preset.write_text("model: lenet5\ntern_weights: '0011'\nseed: 10\nlr: 1e-3\naugment: yes\n")
    assert load_preset(preset)["tern_weights"] == "0011"
