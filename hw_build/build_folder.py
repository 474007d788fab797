"""The build folder as one contract: hw_build writes it, sim and the emulated board read it.

build/<model>_<precision>_<board>/
  checkpoint.pt|.npz     the checkpoint built (a copy; its SHA-256 in build_state.json)
  model.onnx             QONNX export
  intermediate/NN_step.onnx  the model after every step
  verification/          report.json, summary.txt
  report/                estimates.json, summary.txt, cycles_per_layer.png, resources_per_layer.png
  finn/                  FINN's own output folder (reports, intermediate_models/dataflow_parent.onnx)
  finn_tmp/              FINN's generated code per layer
  deploy/                the deployment package (hw_build/package.py)
  sim/                   simulation reports and Verilator builds
  build_state.json       steps done, timings, where it stopped, checkpoint hash
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuildFolder:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).resolve())

    state_file = property(lambda self: self.root / "build_state.json")
    intermediate = property(lambda self: self.root / "intermediate")
    verification = property(lambda self: self.root / "verification")
    report = property(lambda self: self.root / "report")
    estimates_file = property(lambda self: self.root / "report" / "estimates.json")
    finn_out = property(lambda self: self.root / "finn")
    finn_tmp = property(lambda self: self.root / "finn_tmp")
    parent_model = property(lambda self: self.root / "finn" / "intermediate_models" / "dataflow_parent.onnx")
    deploy = property(lambda self: self.root / "deploy")
    sim = property(lambda self: self.root / "sim")

    def checkpoint_copy(self, suffix: str) -> Path:
        return self.root / f"checkpoint{suffix}"

    def stage(self, index: int, name: str) -> Path:
        return self.intermediate / f"{index:02d}_{name}.onnx"

    def last_stage(self, name: str) -> Path | None:
        found = sorted(self.intermediate.glob(f"*_{name}.onnx"))
        return found[-1] if found else None

    def write_state(self, state: dict) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def read_state(self) -> dict | None:
        if not self.state_file.is_file():
            return None
        from training.errors import read_user_file
        from .errors import BuildError
        return read_user_file(self.state_file, "build state", "json", "build again into this folder (python -m "
                              "hw_build ... --out FOLDER) or into a new one", BuildError)

    def estimates(self) -> dict:
        return json.loads(self.estimates_file.read_text()) if self.estimates_file.is_file() else {}

    @staticmethod
    def sha256(path: Path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def checkpoint_unchanged(self, state: dict) -> bool:
        ck = Path(state["checkpoint"])
        return ck.is_file() and self.sha256(ck) == state["checkpoint_sha256"]
