"""Stage-by-stage verification against the trained Brevitas model on real test images.

Every stage must give the Brevitas model's top-1 on every image. Before streamlining the graph
still computes the float logits, compared with a tolerance; from streamlining on, the input of
the top-1 layer is integer class scores, which must equal those of the previous integer stage
exactly and map onto the Brevitas logits by one positive affine function (the final scalar norm).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import UserError
from graph.execute import StageRunner

FLOAT_ATOL = 1e-3


class VerificationError(UserError):
    pass


@dataclass
class StageResult:
    stage: str
    images: int
    top1_agree: int
    mismatched_images: list
    scores: str  # "float logits" or "integer scores"
    max_abs_diff_logits: float | None = None
    affine_max_residual: float | None = None
    identical_to_previous_integer_stage: bool | None = None
    seconds: float = 0.0
    ok: bool = True
    problem: str = ""


@dataclass
class Verifier:
    images: np.ndarray          # uint8 NCHW
    indices: np.ndarray         # positions in the test set, for messages
    ref_logits: np.ndarray
    out_dir: Path
    results: list = field(default_factory=list)
    prev_int_scores: np.ndarray | None = None
    prev_int_stage: str = ""

    @property
    def ref_top1(self):
        return self.ref_logits.argmax(1)

    def check(self, stage: str, model, parent=None) -> StageResult:
        t0 = time.time()
        runner = StageRunner(model, parent)
        with tqdm(total=len(self.images), desc=f"verify {stage}", leave=False, disable=None) as bar:
            top1, scores = runner.run(self.images.astype(np.float32), progress=bar.update)
        agree = top1 == self.ref_top1
        r = StageResult(stage, len(self.images), int(agree.sum()),
                        [int(i) for i in self.indices[~agree]], "float logits")
        integer = np.allclose(scores, np.round(scores)) and scores.shape == self.ref_logits.shape
        if integer and runner.score is not None and not self._float_graph(model):
            r.scores = "integer scores"
            r.affine_max_residual = _affine_residual(scores, self.ref_logits)
            if self.prev_int_scores is not None:
                r.identical_to_previous_integer_stage = bool(np.array_equal(scores, self.prev_int_scores))
            self.prev_int_scores, self.prev_int_stage = scores, stage
        elif scores.shape == self.ref_logits.shape:
            r.max_abs_diff_logits = float(np.abs(scores - self.ref_logits).max())
        r.seconds = round(time.time() - t0, 2)
        r.ok, r.problem = self._judge(r)
        self.results.append(r)
        self.write()
        if not r.ok:
            raise VerificationError(f"stage {stage} disagrees with the Brevitas model: {r.problem}. "
                                    f"Report: {self.out_dir / 'report.json'}")
        return r

    @staticmethod
    def _float_graph(model) -> bool:
        return any(n.op_type in ("BatchNormalization", "BipolarQuant", "Quant") for n in model.graph.node)

    def _judge(self, r: StageResult) -> tuple[bool, str]:
        if r.mismatched_images:
            shown = ", ".join(map(str, r.mismatched_images[:10]))
            return False, f"top-1 differs on {len(r.mismatched_images)} of {r.images} images (test indices {shown})"
        if r.max_abs_diff_logits is not None and r.max_abs_diff_logits > FLOAT_ATOL:
            return False, f"logits differ by up to {r.max_abs_diff_logits:.2e} (tolerance {FLOAT_ATOL})"
        if r.identical_to_previous_integer_stage is False:
            return False, f"integer class scores differ from stage {self.prev_int_stage}"
        if r.affine_max_residual is not None and r.affine_max_residual > FLOAT_ATOL:
            return False, (f"integer scores are not an affine map of the Brevitas logits "
                           f"(residual {r.affine_max_residual:.2e})")
        return True, ""

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = {"images": len(self.images), "test_indices": [int(self.indices[0]), int(self.indices[-1])],
                  "reference": "Brevitas model (eval mode) of the checkpoint",
                  "all_ok": all(r.ok for r in self.results),
                  "stages": [asdict(r) for r in self.results]}
        (self.out_dir / "report.json").write_text(json.dumps(report, indent=2))
        (self.out_dir / "summary.txt").write_text(self.summary())

    def summary(self) -> str:
        lines = [f"verification on {len(self.images)} test images against the Brevitas model",
                 f"{'stage':34s} {'top-1':>11s}  scores"]
        for r in self.results:
            detail = (f"max |dlogit| {r.max_abs_diff_logits:.1e}" if r.max_abs_diff_logits is not None else
                      f"affine residual {r.affine_max_residual:.1e}" if r.affine_max_residual is not None else "")
            if r.identical_to_previous_integer_stage:
                detail += ", identical to previous integer stage"
            lines.append(f"{r.stage:34s} {r.top1_agree:5d}/{r.images:<5d}  {r.scores}: {detail}"
                         + ("" if r.ok else f"  FAILED: {r.problem}"))
        return "\n".join(lines) + "\n"


def _affine_residual(scores: np.ndarray, logits: np.ndarray) -> float:
    """Max residual of logits ~ a * scores + b (one scalar a > 0 and b for all images and classes)."""
    s, l = scores.ravel(), logits.ravel()
    if np.ptp(s) == 0:
        return float(np.ptp(l))
    a, b = np.polyfit(s, l, 1)
    if a <= 0:
        return float("inf")
    return float(np.abs(a * s + b - l).max())
