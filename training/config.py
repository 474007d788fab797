"""Training configuration: one dataclass, loaded from a YAML preset, overridden on the command line.

Every field is a preset key and a ``--flag`` (underscores become dashes). Unknown keys
and values of the wrong type stop with an error that names them, before any work.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from common.errors import UserError
from common.registry import DATASETS, NETWORKS

CHOICES = {
    "model": tuple(NETWORKS),
    "dataset": tuple(DATASETS),
    "optimizer": ("adam", "sgd", "rmsprop", "asgd"),
    "lr_schedule": ("none", "step", "cosine"),
    "loss": ("sqr_hinge", "cross_entropy"),
    "regularization": ("none", "l2", "bin"),
    "layer_order": ("CBAP", "CPBA"),
    "padding": ("minus_one", "replicate"),
    "ste": ("bnn", "vanilla"),
    "amp": ("auto", "none", "bf16", "fp16"),
    "device": ("auto", "cpu", "cuda"),
    "compile": ("auto", "on", "off"),
    "teacher_compile": ("auto", "on", "off"),
}


def _opt(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # what to train
    model: str = _opt("lenet5", "network: lenet5 (MNIST) or vggnet7 (CIFAR-10)")
    dataset: str = _opt("mnist", "dataset: mnist or cifar10")
    binarize: bool = _opt(True, "binary weights and activations (Brevitas); false trains the float reference")
    tern_weights: str = _opt("", "per-layer ternary weights, one 0/1 per weight layer, e.g. '1001' (LeNet5 has 4, "
                                 "VGGNet7 9)")
    tern_acts: str = _opt("", "per-layer ternary inputs, one 0/1 per weight layer; index 0 applies with binarize_input")
    first_layer_8bit: bool = _opt(False, "first layer at 8-bit weights instead of binary (the study's 'full "
                                         "precision' that FINN can build; old key: l1_fp)")
    last_layer_8bit: bool = _opt(False, "last layer at 8-bit weights instead of binary (old key: ln_fp)")
    binarize_input: bool = _opt(False, "binarize the input pixels at binarize_input_threshold")
    binarize_input_threshold: float = _opt(0.5, "threshold for binarize_input, on pixels scaled to [0, 1]")
    width_scale: float = _opt(1.0, "multiplies every hidden layer's channel/neuron count (study: x1, x2, x4)")
    layer_order: str = _opt("CPBA", "CPBA: conv, pool, BN, act (study's binary nets); CBAP: conv, BN, act, pool")
    padding: str = _opt("minus_one", "'same' padding of VGGNet7's binary convs: minus_one (FINN builds it), "
                                     "or replicate (study; FINN cannot build it)")
    batchnorm: bool = _opt(True, "batch norm after each hidden layer (the last layer always has a scalar norm)")
    biases: bool = _opt(False, "biases in conv/linear layers (float nets only)")
    ste: str = _opt("bnn", "straight-through estimator of the sign: bnn (hardtanh, gradient 0 outside [-1, 1]) "
                           "or vanilla (identity). The study's bireal and swish have no Brevitas quantizer")
    # optimisation
    epochs: int = _opt(50, "number of training epochs")
    batch_size: int = _opt(100, "training batch size")
    optimizer: str = _opt("adam", "optimizer: adam, sgd, rmsprop or asgd")
    lr: float = _opt(1e-3, "initial learning rate")
    momentum: float = _opt(0.9, "momentum (sgd, rmsprop)")
    weight_decay: float = _opt(0.0, "weight decay of the optimizer")
    lr_schedule: str = _opt("cosine", "none, step (x lr_decay at lr_milestones) or cosine (to 0 over the epochs)")
    lr_milestones: list = _opt(None, "epochs at which a step schedule multiplies the lr by lr_decay, e.g. [100, 200]",
                               item=int)
    lr_decay: float = _opt(0.1, "factor of a step schedule")
    loss: str = _opt("sqr_hinge", "sqr_hinge (squared hinge, study's binary LeNet5) or cross_entropy")
    regularization: str = _opt("none", "none, l2, or bin: sum(1 - w^2) pulling latent weights to +-1")
    reg_strength: float = _opt(0.0, "weight of the regularization term")
    augment: bool = _opt(False, "training augmentation: random shift (MNIST) / flip and crop with 4-pixel padding "
                                "(CIFAR-10)")
    seed: int = _opt(0, "random seed (weights, split order, batches)")
    precise_bn: bool = _opt(True, "after training, recompute batch-norm statistics as exact averages over the "
                                  "training set (PreciseBN) for best.pt and last.pt and keep the one with the "
                                  "higher validation accuracy as final.pt; false: final.pt is best.pt as trained")
    distill_from: str = _opt("", "knowledge distillation: a trained checkpoint (e.g. pretrained/lenet5/float) whose "
                                 "softened outputs the net also learns from; empty: off")
    distill_temperature: float = _opt(4.0, "distillation temperature T: both nets' logits are divided by T "
                                           "before the softmax, and the KL term is scaled by T^2")
    distill_weight: float = _opt(0.5, "distillation weight w in [0, 1]: loss = (1 - w) task loss + w T^2 KL")
    init_from: str = _opt("", "checkpoint whose weights of matching name and shape initialise this net "
                              "(the study's float pretraining: a float run's best.pt)")
    init_latent_from: str = _opt("", "with init_from a pretrained/ folder (binary weights stored as their signs, +-1): "
                                     "each binary weight takes the magnitude of the same latent weight in this "
                                     "checkpoint (e.g. the run the folder's model was trained on from), keeping its "
                                     "sign, so that Adam's small steps can flip signs again; empty: they start at +-1")
    swa_start: int = _opt(0, "stochastic weight averaging (Izmailov et al. 2018): the trained parameters (latent "
                             "weights, batch-norm scales and shifts) averaged over the ends of epochs swa_start to the "
                             "last; the average, with PreciseBN statistics, is a candidate for final.pt (without a "
                             "validation split: final.pt); 0: off")
    # data and run
    data_dir: str = _opt("", "folder with mnist.npz / cifar10.npz (layout of ../shared/datasets); "
                             "empty: $BNN_DATA_DIR, then ./data (filled by 'make data')")
    val_size: int = _opt(-1, "validation images split off the training set; -1: study's (MNIST 10k, CIFAR-10 5k); "
                                  "0: none, train on every training image (final.pt: last.pt, PreciseBN)")
    train_limit: int = _opt(0, "use only the first N training images (0: all); for quick runs and tests")
    test_limit: int = _opt(0, "evaluate only the first N test images (0: all)")
    results: str = _opt("results", "folder for run outputs: RESULTS/ID/run-TIMESTAMP/")
    # speed
    device: str = _opt("auto", "auto (cuda when present), cpu or cuda")
    amp: str = _opt("auto", "mixed precision autocast: auto (bf16 on a GPU and on CPUs that compute bf16 natively, "
                            "AVX512-BF16 or AMX; none elsewhere, where bf16 was 7-13x slower), none, bf16, or "
                            "fp16 (GPU). params.yml records what ran")
    channels_last: bool = _opt(False, "channels_last memory format for convolutions")
    compile: str = _opt("auto", "torch.compile the training forward (fuses the quantizers' element-wise work): "
                                "auto = on for cuda; on the CPU on for runs of 2,000 steps or more (compiling "
                                "takes ~1 min), except VGGNet7 in fp32 (measured no faster). params.yml records "
                                "what ran")
    teacher_compile: str = _opt("auto", "torch.compile the distillation teacher's forward (frozen, inference only): "
                                        "auto = on wherever the training forward is compiled and on the CPU for "
                                        "runs of 2,000 steps or more (the VGGNet7 teacher in fp32 too: 2.0x faster, "
                                        "the same logits); params.yml records what ran")
    threads: int = _opt(0, "torch CPU threads; 0: as many as the cores other work leaves free (at most torch's "
                                "default), decided again every 5 s on the CPU")
    time_budget: float = _opt(0.0, "seconds for the whole run (a resumed run counts its earlier epochs): from the "
                                   "3rd epoch on, after every epoch, epochs becomes what fits at the latest epochs' "
                                   "speed (at most the epochs asked) and the cosine anneal ends with it; 0: off")
    budget_note: str = _opt("", "what fewer epochs cost with this recipe, as measured (a preset's own figures), said "
                                "when the time budget cuts the epochs asked")
    checkpoint_every: int = _opt(1, "write last.pt (the resume point) every N epochs; best.pt whenever "
                                    "validation improves")
    eval_batch_size: int = _opt(1000, "batch size for validation and test")

    def n_weight_layers(self) -> int:
        return NETWORKS[self.model].n_weight_layers

    def validate(self) -> None:
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: {getattr(self, key)!r} is not one of {', '.join(allowed)}")
        expected = NETWORKS[self.model].dataset
        if self.dataset != expected:
            raise ConfigError(f"dataset: {self.model} is built for {expected}, not {self.dataset}")
        n = self.n_weight_layers()
        for key in ("tern_weights", "tern_acts"):
            s = getattr(self, key)
            if s and (len(s) != n or set(s) - {"0", "1"}):
                raise ConfigError(f"{key}: {s!r} must be {n} characters of 0/1 for {self.model}")
        if (self.tern_weights or self.tern_acts or self.first_layer_8bit or self.last_layer_8bit) and not self.binarize:
            raise ConfigError("tern_weights/tern_acts/first_layer_8bit/last_layer_8bit apply to quantized nets: "
                              "set binarize: true")
        if self.biases and self.binarize:
            raise ConfigError("biases: quantized nets have no biases (FINN folds BN into thresholds); "
                              "set biases: false or binarize: false")
        for f in fields(self):  # nan and inf pass every comparison below; refuse them first
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f.name}: must be a finite number, got {v}")
        for key in ("train_limit", "test_limit", "threads", "weight_decay", "momentum", "reg_strength"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be 0 or more, got {getattr(self, key)}")
        if self.val_size < -1:
            raise ConfigError(f"val_size: must be -1 (the study's split) or a count, got {self.val_size}")
        if not 0.0 <= self.binarize_input_threshold <= 1.0:
            raise ConfigError(f"binarize_input_threshold: must be in [0, 1], got {self.binarize_input_threshold}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ConfigError(f"distill_weight: must be in [0, 1], got {self.distill_weight}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"distill_temperature: must be positive, got {self.distill_temperature}")
        if self.time_budget < 0:
            raise ConfigError(f"time_budget: must be 0 (off) or positive seconds, got {self.time_budget}")
        for key in ("epochs", "batch_size", "eval_batch_size", "checkpoint_every"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}: must be positive, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"lr: must be positive, got {self.lr}")
        if self.width_scale <= 0:
            raise ConfigError(f"width_scale: must be positive, got {self.width_scale}")
        if not 0 <= self.swa_start <= self.epochs:
            raise ConfigError(f"swa_start: must be 0 (off) or an epoch of the run (1 to epochs = {self.epochs}), "
                              f"got {self.swa_start}")
        if self.swa_start and not self.precise_bn:
            raise ConfigError("swa_start: the average's batch-norm statistics are recomputed (PreciseBN); "
                              "set precise_bn: true")
        if self.init_latent_from and not self.init_from:
            raise ConfigError("init_latent_from: gives magnitudes to init_from's signs; set init_from too")
        if self.lr_schedule == "step" and not self.lr_milestones:
            raise ConfigError("lr_milestones: a step schedule needs milestones, e.g. --lr-milestones 100,200")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, source: str, overrides: dict | None = None,
                  validate: bool = True, overrides_source: str = "command line") -> "TrainConfig":
        """The one way a config is read back (presets, checkpoints, run folders): each known key coerced to its
        field's type (errors name the source), keys of other versions ignored, then the overrides (from the
        command line, or what overrides_source names), whose keys must be known."""
        values, overrides = renamed(values, source), renamed(overrides or {}, overrides_source)
        unknown = sorted(set(overrides) - set(FIELDS))
        if unknown:
            raise ConfigError(f"unknown option {', '.join(unknown)} ({overrides_source}); options are the preset "
                              f"keys (python -m training --help)")
        v = {k: coerce(FIELDS[k], x, source) for k, x in values.items() if k in FIELDS}
        v.update({k: coerce(FIELDS[k], x, overrides_source) for k, x in (overrides or {}).items()})
        cfg = cls(**v)
        if validate:
            cfg.validate()
        return cfg


class ConfigError(UserError, ValueError):
    """A preset or command-line value that cannot be used; the message names the key."""


def _type_of(f: dataclasses.Field):
    return typing.get_type_hints(TrainConfig)[f.name]


def coerce(f: dataclasses.Field, value, source: str):
    """Checks one value against the field's type; strings (from the command line) are parsed."""
    t = _type_of(f)
    where = f"{f.name} ({source})"
    if t is list:
        if value is None:
            return None
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        try:
            return [f.metadata["item"](v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a list of integers, got {value!r}") from None
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if t in (int, float):  # an integer field takes no float; neither takes a bool (YAML's true is not 1)
        if isinstance(value, (int,) if t is int else (int, float)) and not isinstance(value, bool):
            return t(value)
        if isinstance(value, str):
            try:
                return t(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected {'an integer' if t is int else 'a number'}, got {value!r}")
    if t is str:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise AssertionError(t)


FIELDS = {f.name: f for f in fields(TrainConfig)}
RENAMED = {"l1_fp": "first_layer_8bit", "ln_fp": "last_layer_8bit"}  # old key -> key; old keys still read


def renamed(values: dict, source: str, quiet: tuple = ("checkpoint",)) -> dict:
    """values with old keys under their new names; a note for each where a user wrote it (not for what
    checkpoints and run folders of earlier versions recorded)."""
    old = [k for k in values if k in RENAMED]
    if old and not any(q in source for q in quiet) and not source.endswith((".pt", ".npz", "params.yml")):
        print(f"note: {', '.join(f'{k} is now {RENAMED[k]}' for k in old)} ({source}); read as such",
              file=sys.stderr)
    return {RENAMED.get(k, k): v for k, v in values.items()}


def load_preset(path: str | Path) -> dict:
    from common.errors import read_user_file
    path = Path(path)
    data = read_user_file(path, "preset", "yaml", "presets are YAML in configs/ (e.g. configs/lenet5_binary.yml)",
                          ConfigError)
    if not data:
        raise ConfigError(f"preset {path} is empty; a preset names at least its model (see configs/*.yml)")
    if "model" not in data:
        raise ConfigError(f"preset {path} does not name its model (model: lenet5 or vggnet7)")
    data = renamed(data, str(path))
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"preset {path}: unknown key(s) {', '.join(unknown)}; "
                          f"known keys: {', '.join(FIELDS)}")
    raw = _raw_scalars(path)
    for k, v in data.items():
        _check_yaml_reading(k, v, raw.get(k), path)
    return {k: coerce(FIELDS[k], v, str(path)) for k, v in data.items()}


def _raw_scalars(path: Path) -> dict:
    """The text written after each top-level `key:` of a YAML file (comments and quotes as written)."""
    import re
    found = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        m = re.match(r"^(\w+):[ \t]*(.*?)[ \t]*(?:[ \t]#.*)?$", line)
        if m and m[2]:
            found[m[1]] = m[2]
    return found


def _check_yaml_reading(key: str, value, raw: str | None, path: Path) -> None:
    """A value YAML turned into something other than what was written is refused with the text as written and
    how to quote it: for a text option, anything YAML read as a number or true/false that does not print as
    written (tern_weights: 0011 is the octal number 9; name: no is false); for a number, a leading zero (seed:
    010 is 8)."""
    if raw is None or isinstance(value, str) or raw.startswith(("'", '"', "[", "{")) or key not in FIELDS:
        return
    text_option = _type_of(FIELDS[key]) is str
    octal = not isinstance(value, bool) and len(raw.lstrip("+-")) > 1 and raw.lstrip("+-")[0] == "0" \
        and raw.lstrip("+-")[1].isdigit()
    if (text_option and str(value) != raw) or octal:
        kind = "true/false" if isinstance(value, bool) else f"the number {value!r}"
        raise ConfigError(f"preset {path}: {key}: {raw} is read by YAML as {kind}, not as written; quote it "
                          f"({key}: '{raw}') or write the value plainly")


def resolve(preset: str | None, overrides: dict, overrides_source: str = "command line") -> tuple[TrainConfig, set]:
    """Preset values, then overrides (which win). Returns the config and the overridden keys."""
    cfg = TrainConfig.from_dict(load_preset(preset) if preset else {}, str(preset), overrides,
                                overrides_source=overrides_source)
    return cfg, set(overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per field; values stay strings here and are checked by coerce()."""
    group = parser.add_argument_group("preset keys (each overrides the preset's value)")
    for f in fields(TrainConfig):
        default = f.default
        choices = CHOICES.get(f.name)
        extra = f" [{'|'.join(choices)}]" if choices else ""
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                           metavar=_type_of(f).__name__.upper(),
                           help=f"{f.metadata['help']}{extra}"
                                + (" (default: none)" if default is None else f" (default: {default!r})"))
    for old, new in RENAMED.items():  # the old flags still work, unlisted
        group.add_argument("--" + old.replace("_", "-"), dest=new, default=None, help=argparse.SUPPRESS)


def overrides_from(args: argparse.Namespace) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}


def describe(cfg: TrainConfig, overridden: set) -> str:
    lines = []
    for f in fields(TrainConfig):
        mark = "  (override)" if f.name in overridden else ""
        lines.append(f"  {f.name:26s} {getattr(cfg, f.name)!r}{mark}")
    return "\n".join(lines)
