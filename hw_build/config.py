"""The build's configuration: one dataclass (HwConfig), its command-line flags generated from its fields,
and how a build finds its inputs (shipped folding, output folder)."""
from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from common.paths import BUILD, FOLDING

from .boards import get_board
from .errors import BuildError


@dataclass
class HwConfig:
    checkpoint: Path = field(metadata={"metavar": "DIR_OR_FILE", "flags": ("--checkpoint", "--model"), "help":
                                       "the trained model: pretrained/ folder, training run folder or checkpoint "
                                       "(.pt, compact .npz); --model is the same option"})
    board: str = field(default="Pynq-Z1", metadata={"help": "target board (--list-boards)"})
    target_fps: int | None = field(default=None, metadata={"metavar": "FPS",
        "help": "automatic folding (FINN's SetFolding) to this many images/s; with --folding, only the cycle budget "
                "drawn in the plots. Default: the shipped folding configs/folding/<model>_<precision>_<board>.json, "
                "else 10000"})
    folding: Path | None = field(default=None, metadata={"metavar": "FILE",
        "help": "folding JSON in FINN's format (PE, SIMD, ram_style, resType per layer)"})
    specialize: Path | None = field(default=None, metadata={"metavar": "FILE",
        "help": "FINN's specialize_layers config JSON ({\"MVAU_0\": {\"preferred_impl_style\": \"rtl\"}}): an "
                "8-bit-input MVAU named rtl goes to DSPs (MVAU_rtl + Thresholding). Default: the shipped "
                "<folding>.specialize.json beside the folding (shipped or given with --folding) when there is one"})
    max_utilization: float = field(default=85.0, metadata={"metavar": "PCT",
        "help": "fit check: the highest %% of any resource (LUT, BRAM18, URAM, DSP) the design may use, everything "
                "counted (layers, data-width converters, FIFOs, shell allowance)"})
    clock_ns: float = field(default=10.0, metadata={"metavar": "NS", "help": "clock period in ns (10 = 100 MHz)"})
    out: Path | None = field(default=None, metadata={
        "metavar": "DIR", "help": "output folder (default build/<model>_<precision>[_<variant>]_<board>, the variant "
                "naming 8-bit first/last layers and binarized input)"})
    verify_images: int = field(default=-1, metadata={"metavar": "N",
        "help": "test images compared with the Brevitas model after each stage (batched exact execution, 'python' "
                "mode of sim); -1: the whole test set, 0: none"})
    bitstream: bool = field(default=False, metadata={
        "help": "go on to the bitfile and deployment package (needs vitis_hls and vivado in PATH)"})
    fifo_depths: Path | None = field(default=None, metadata={"metavar": "FILE",
        "help": "with --bitstream: FIFO depths from FILE instead of FINN's simulation-based sizing (FINN's "
                "fifo_config_file with auto_fifo_depths off); FILE is FINN's fifo_sizing.json format, as every "
                "bitstream build writes it to report/fifo_depths.json. With --verify-images 0 the build then "
                "simulates nothing and needs no finn_xsi"})
    allow_timing_violation: bool = field(default=False, metadata={
        "help": "with --bitstream: package a bitfile whose routed design misses timing (negative WNS) instead of "
                "stopping before the package"})
    data_dir: str = field(default="", metadata={"metavar": "DIR",
        "help": "folder with mnist.npz / cifar10.npz (default: the checkpoint's, then $BNN_DATA_DIR, then ./data)"})
    mvau_wwidth_max: int = field(default=1024, metadata={"metavar": "BITS",
        "help": "widest weight stream (bits) automatic folding may give one MVAU PE"})
    stop_after: str | None = field(default=None, metadata={
        "metavar": "STEP", "help": "end the flow after this step (docs/hardware.md lists them: export, streamline, "
                                   "convert_to_hw, estimates, hw_codegen, ...)"})
    start_step: str | None = field(default=None, metadata={
        "metavar": "STEP", "help": "resume the build in --out at this step, from the model its earlier run saved "
                                   "after the step before (intermediate/NN_STEP.onnx); the configuration must be "
                                   "that build's (--replay DIR --start-step STEP takes it from the folder)"})

    # what a --start-step run may change of the build it resumes (the rest must be the same)
    RUN_ONLY = ("start_step", "stop_after", "verify_images", "bitstream", "out", "data_dir", "allow_timing_violation")

    def validate(self) -> None:
        """Every numeric option finite and in range, before any work."""
        if self.target_fps is not None and not self.target_fps > 0:
            raise BuildError(f"--target-fps must be positive, got {self.target_fps}")
        if not 0 < self.max_utilization <= 100:
            raise BuildError(f"--max-utilization must be in (0, 100], got {self.max_utilization}")
        if not 0 < self.clock_ns < 1000:
            raise BuildError(f"--clock-ns must be a positive period in ns, got {self.clock_ns}")
        if self.verify_images < -1:
            raise BuildError(f"--verify-images takes N >= 0 images or -1 (the whole test set), "
                             f"got {self.verify_images}")
        if self.mvau_wwidth_max <= 0:
            raise BuildError(f"--mvau-wwidth-max must be positive, got {self.mvau_wwidth_max}")
        if (self.fifo_depths or self.allow_timing_violation) and not self.bitstream:
            raise BuildError(f"--{'fifo-depths' if self.fifo_depths else 'allow-timing-violation'} applies to the "
                             f"bitstream steps: add --bitstream")
        if self.folding and self.mvau_wwidth_max != 1024:
            raise BuildError("--mvau-wwidth-max bounds automatic folding; --folding gives every layer's folding: "
                             "drop one of them")

    def to_state(self) -> dict:
        """The configuration as build_state.json records it (paths as text)."""
        return {f.name: str(v) if isinstance(v, Path) else v for f in fields(self) for v in [getattr(self, f.name)]}

    @classmethod
    def from_state(cls, values: dict, source: Path) -> "HwConfig":
        """The configuration build_state.json recorded; refused naming the key when it does not fit."""
        known = {f.name for f in fields(cls)}
        if not isinstance(values, dict) or "checkpoint" not in values or set(values) - known:
            raise BuildError(f"{source} records no build configuration this version reads (unknown: "
                             f"{sorted(set(values) - known) if isinstance(values, dict) else values!r}); "
                             f"build again with python -m hw_build --checkpoint ... --out FOLDER")
        paths = {"checkpoint", "folding", "specialize", "out", "fifo_depths"}
        return cls(**{k: Path(v) if k in paths and v is not None else v for k, v in values.items()})

    def model_id(self, train_cfg, variant: bool = True) -> str:
        """<model>_<precision>[_w<width>][_<variant>]: names the build folder and the package; without the
        variant (the study's first/last-layer and input options, same layers and shapes) it names the shipped
        folding the variants share."""
        width = "" if train_cfg.width_scale == 1 else f"_w{train_cfg.width_scale:g}"
        return f"{train_cfg.model}_{precision_name(train_cfg)}{width}{variant_name(train_cfg) if variant else ''}"


def add_arguments(p) -> None:
    """One flag per HwConfig field, its type and default from the field, its help from the field's metadata."""
    hints = typing.get_type_hints(HwConfig)
    for f in fields(HwConfig):
        meta = f.metadata
        flags = meta.get("flags", ("--" + f.name.replace("_", "-"),))
        kw = {"dest": f.name, "help": meta["help"]}
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        t = hints[f.name]
        base = next((a for a in typing.get_args(t) if a is not type(None)), t)
        if base is bool:
            p.add_argument(*flags, action="store_true", **kw)
            continue
        default = None if f.default is MISSING else f.default
        if default not in (None, ""):
            kw["help"] += f" (default: {default})"
        p.add_argument(*flags, type=base, default=default, **kw)


def from_args(args) -> HwConfig:
    return HwConfig(**{f.name: getattr(args, f.name) for f in fields(HwConfig)})  # build() validates it


def precision_name(cfg) -> str:
    if not cfg.binarize:
        return "float"
    if cfg.tern_weights or cfg.tern_acts:
        return "ternary"
    return "binary"


def variant_name(cfg) -> str:
    """What sets a net apart from its precision's plain form: '_8bit-first', '_8bit-last', '_binary-input'."""
    return "".join(f"_{t}" for t, on in (("8bit-first", cfg.first_layer_8bit), ("8bit-last", cfg.last_layer_8bit),
                                          ("binary-input", cfg.binarize_input)) if on)


def default_out(hw: HwConfig, train_cfg) -> Path:
    return BUILD / f"{hw.model_id(train_cfg)}_{get_board(hw.board).name}"


def shipped_folding(hw: HwConfig, train_cfg) -> Path | None:
    """configs/folding/<model>_<precision>_<board>.json (its .specialize.json, FINN's specialize_layers config
    naming the layers that take the RTL implementation, beside it)."""
    p = FOLDING / f"{hw.model_id(train_cfg, variant=False)}_{get_board(hw.board).name}.json"
    return p if p.is_file() else None


def specialize_beside(folding: Path) -> Path | None:
    """X.specialize.json beside a folding X.json: the pair is one design (which layers are RTL changes the
    layer names the folding uses)."""
    p = folding.with_name(folding.name[:-len(".json")] + ".specialize.json") if folding.name.endswith(".json") else None
    return p if p is not None and p.is_file() else None


def check_inputs(hw: HwConfig, train_cfg) -> tuple[Path | None, Path | None]:
    """The folding and specialize files this build uses (given, or shipped beside each other), checked."""
    folding = Path(hw.folding) if hw.folding else (None if hw.target_fps else shipped_folding(hw, train_cfg))
    specialize = Path(hw.specialize) if hw.specialize else (specialize_beside(folding) if folding else None)
    for what, f in (("folding file", folding), ("specialize config", specialize)):
        _check_json(what, f)
    check_fifo_depths(hw.fifo_depths)
    return folding, specialize


def check_fifo_depths(path: Path | None) -> None:
    """--fifo-depths: FINN's FIFO sizing report format, {"fifo_depths": {"StreamingFIFO_rtl_0": 32, ...}, ...}."""
    if path is None:
        return
    from common.errors import read_user_file
    fix = ('FINN\'s fifo_sizing.json format: {"fifo_depths": {"StreamingFIFO_rtl_0": 32, ...}}, as a bitstream '
           'build writes it to report/fifo_depths.json')
    data = read_user_file(path, "FIFO depths file", "json", fix, BuildError)
    depths = data.get("fifo_depths") if isinstance(data, dict) else None
    if not isinstance(depths, dict) or not depths or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in depths.values()):
        raise BuildError(f"FIFO depths file {path} needs a 'fifo_depths' object mapping each FIFO to a depth >= 2; "
                         f"{fix}")
    for key, allowed in (("impl_style", ("rtl", "vivado")), ("ram_style", ("auto", "block", "distributed", "ultra"))):
        styles = data.get(key)  # FINN's reader sets both with each depth it changes
        if not isinstance(styles, dict) or any(styles.get(name) not in allowed for name in depths):
            raise BuildError(f"FIFO depths file {path} needs '{key}' for every FIFO of 'fifo_depths' (one of "
                             f"{', '.join(allowed)}), as FINN's reader applies them together; {fix}")


def _check_json(what: str, path: Path | None) -> None:
    """A folding or specialize file must exist and hold a JSON object keyed by layer name."""
    if path is None:
        return
    from common.errors import read_user_file
    data = read_user_file(path, what, "json", 'FINN\'s format: {"MVAU_hls_0": {"PE": 4, "SIMD": 8}, ...}', BuildError)
    if not all(isinstance(v, dict) for v in data.values()):
        raise BuildError(f"{what} {path} must map layer names to attribute objects (FINN's format)")
