"""The build folder as one contract: hw_build writes it, sim and the emulated board read it. Every path
inside it is spelled here and nowhere else.

build/<model>_<precision>_<board>/
  checkpoint.pt|.npz     the checkpoint built (a copy; its SHA-256 in build_state.json)
  model.onnx             QONNX export
  intermediate/NN_step.onnx  the model after every step
  verification/          report.json, summary.txt
  report/                estimates.json, summary.txt, cycles_per_layer.png, resources_per_layer.png
  finn/                  FINN's own output folder (reports, intermediate_models/dataflow_parent.onnx)
  finn_tmp/              FINN's generated code per layer
  driver_settings/       FINN's MakePYNQDriver output before Vivado (settings.json, runtime_weights/)
  deploy/                the deployment package (hw_build/package.py)
  sim/                   simulation reports and Verilator builds
  build_state.json       the whole configuration (--replay), steps done, timings, where it stopped, hashes
  build.log              everything the build printed, with times
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from common.errors import read_user_file
from common.files import write_json

from .errors import BuildError


@dataclass(frozen=True)
class BuildFolder:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).resolve())

    state_file = property(lambda self: self.root / "build_state.json")
    model_onnx = property(lambda self: self.root / "model.onnx")
    intermediate = property(lambda self: self.root / "intermediate")
    verification = property(lambda self: self.root / "verification")
    report = property(lambda self: self.root / "report")
    estimates_file = property(lambda self: self.root / "report" / "estimates.json")
    finn_out = property(lambda self: self.root / "finn")
    finn_report = property(lambda self: self.root / "finn" / "report")
    finn_deploy = property(lambda self: self.root / "finn" / "deploy")
    finn_driver = property(lambda self: self.root / "finn" / "driver")
    finn_verification = property(lambda self: self.root / "finn" / "verification_output")
    stitched_io = property(lambda self: self.root / "verification" / "stitched_ip")
    finn_tmp = property(lambda self: self.root / "finn_tmp")
    driver_settings = property(lambda self: self.root / "driver_settings")
    parent_model = property(lambda self: self.root / "finn" / "intermediate_models" / "dataflow_parent.onnx")
    deploy = property(lambda self: self.root / "deploy")
    summary_file = property(lambda self: self.root / "report" / "summary.txt")
    sim = property(lambda self: self.root / "sim")

    def checkpoint_copy(self, suffix: str) -> Path:
        return self.root / f"checkpoint{suffix}"

    def stage(self, index: int, name: str) -> Path:
        return self.intermediate / f"{index:02d}_{name}.onnx"

    def last_stage(self, name: str) -> Path | None:
        found = sorted(self.intermediate.glob(f"*_{name}.onnx"))
        return found[-1] if found else None

    def write_state(self, state: dict) -> None:
        write_json(self.state_file, state)

    def read_state(self) -> dict | None:
        if not self.state_file.is_file():
            return None
        return read_user_file(self.state_file, "build state", "json", "build again into this folder (python -m "
                              "hw_build ... --out FOLDER) or into a new one", BuildError)

    def estimates(self) -> dict:
        return json.loads(self.estimates_file.read_text()) if self.estimates_file.is_file() else {}

    @staticmethod
    def sha256(path: Path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    def own_checkpoint(self, state: dict) -> Path:
        """The build's own copy of its checkpoint, in this folder wherever the folder now is (build_state.json
        names it relative to the folder; older builds recorded an absolute path: its name is the same)."""
        return self.root / Path(state["checkpoint"]).name

    def checkpoint_unchanged(self, state: dict) -> bool:
        ck = self.own_checkpoint(state)
        return ck.is_file() and self.sha256(ck) == state["checkpoint_sha256"]

    def built_at(self, state: dict) -> str | None:
        """Where the folder was when it was built (FINN's models name files there by absolute path)."""
        return (state.get("config") or {}).get("out")

    def relocate(self, model, state: dict):
        """A model of this build with every path that named the folder where it was built (FINN's code and IP
        folders, the partitions' model files) naming this folder: a moved or copied build reads its own files."""
        old = self.built_at(state)
        if not old or Path(old) == self.root:
            return model
        old = str(Path(old))
        for node in model.graph.node:
            for a in node.attribute:
                if a.type == a.STRING and a.s.decode(errors="replace").startswith(old + "/"):
                    a.s = (str(self.root) + a.s.decode()[len(old):]).encode()
        return model

    def load_model(self, path: Path, state: dict):
        """A saved model of this build, relocated (relocate)."""
        from qonnx.core.modelwrapper import ModelWrapper
        return self.relocate(ModelWrapper(str(path)), state)
