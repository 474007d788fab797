"""A sweep's specification (SPEC.yml): the training preset, the option sets to compare, the board and the
frame-rate targets every trained point is built for. Every key is checked before any work."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UserError
from common.paths import ROOT


class SpecError(UserError):
    pass


@dataclass
class Spec:
    name: str
    base: str                      # training preset, e.g. configs/lenet5_binary.yml
    train: dict                    # overrides for every point (the short schedule)
    points: dict                   # option-set name -> its training overrides
    board: str = "Pynq-Z1"
    fps: list = field(default_factory=lambda: [10_000])
    verify_images: int = 100
    specialize: str = ""           # FINN specialize config given to every build (the first layer on DSPs)
    max_utilization: float = 85.0

    def point_config(self, name: str):
        """The resolved TrainConfig of one option set (preset, then the schedule, then the option set)."""
        from training.config import resolve
        try:
            cfg, _ = resolve(str(ROOT / self.base), {**self.train, **self.points[name]},
                             f"spec point {name!r} or its train: block")
        except UserError as e:
            raise SpecError(f"point {name!r}: {e}") from None
        return cfg

    def key(self, name: str) -> str:
        """What a point's training depends on: its config less the keys that do not change the model."""
        d = self.point_config(name).to_dict()
        for k in ("results", "data_dir", "threads", "device", "compile", "eval_batch_size"):
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


KEYS = {"name", "base", "train", "points", "board", "fps", "verify_images", "specialize", "max_utilization"}


def load_spec(path: Path, quick: bool = False) -> Spec:
    from common.errors import read_user_file
    path = Path(path)
    raw = read_user_file(path, "spec", "yaml", "see configs/sweep/lenet5.yml", SpecError)
    if not isinstance(raw, dict) or not raw.get("points"):
        raise SpecError(f"spec {path} needs at least 'base' and 'points' (see configs/sweep/lenet5.yml)")
    if quick:  # the tiny grid: the spec's own quick: block replaces what it names
        raw = {**raw, **(raw.get("quick") or {})}
    raw.pop("quick", None)
    unknown = set(raw) - KEYS
    if unknown:
        raise SpecError(f"spec {path}: unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
    spec = Spec(**{"name": path.stem, "train": {}, **raw})
    if not (ROOT / spec.base).is_file():
        raise SpecError(f"spec {path}: base preset {spec.base} not found")
    if not spec.fps or any(not isinstance(f, (int, float)) or f <= 0 for f in spec.fps):
        raise SpecError(f"spec {path}: fps must be a list of positive frame rates, got {spec.fps}")
    if spec.specialize and not (ROOT / spec.specialize).is_file():
        raise SpecError(f"spec {path}: specialize config {spec.specialize} not found")
    for name in spec.points:  # every option set resolves before any work
        spec.points[name] = spec.points[name] or {}
        spec.point_config(name)
    from hw_build.boards import get_board
    get_board(spec.board)
    return spec
