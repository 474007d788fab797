"""Loading checkpoints (run folders, pretrained/ folders, .pt and compact .npz files) and evaluating them."""
from __future__ import annotations

import errno
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from common import compat  # noqa: F401
from common.errors import UserError
from common.files import atomic_path
from common.paths import ROOT

from .config import TrainConfig
from .data import make_splits
from .models import build_model


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged or does not fit its model; the message names the file."""


CHECKPOINT_NAMES = ("final.pt", "best.pt", "model.npz", "model.pt")  # run folders first, then pretrained/


def save_checkpoint(ck: dict, path: Path) -> None:
    """The one writer of .pt checkpoints: atomic, so a kill never leaves a torn file."""
    with atomic_path(path) as tmp:
        try:
            torch.save(ck, tmp)
        except RuntimeError as e:  # torch's zip writer reports a failed write (a full disk) as a RuntimeError
            if not any(w in str(e) for w in ("iostream error", "unexpected pos", "failed writing", "write")):
                raise
            raise OSError(errno.ENOSPC, f"the write stopped short: {' '.join(str(e).split())[:100]}") from None


def read_checkpoint(path: Path, map_location="cpu") -> dict:
    """The checkpoint dict ({"model": state_dict, "config": dict, ...}) of a .pt or compact .npz file."""
    ck_path = find_checkpoint(path)
    try:
        if ck_path.suffix == ".npz":
            from .compact import load_compact
            ck = load_compact(ck_path)
        else:
            ck = torch.load(ck_path, map_location=map_location, weights_only=False)
    except Exception as e:
        if is_onnx(ck_path):
            raise CheckpointError(f"{ck_path} is an ONNX model (a QONNX export), not a checkpoint: the flow starts "
                                  f"from the trained weights; give the checkpoint it came from (a build's "
                                  f"checkpoint.pt/.npz, a run folder or a pretrained/ folder)") from None
        raise CheckpointError(f"{ck_path} cannot be read ({type(e).__name__}: {e}); it is corrupt or not a "
                              f"checkpoint of this project") from None
    if not isinstance(ck, dict) or "model" not in ck or "config" not in ck:
        raise CheckpointError(f"{ck_path} is not a checkpoint of this project (needs 'model' and 'config')")
    return ck


def is_onnx(path: Path) -> bool:
    """A whole, valid ONNX model (onnx's own reader and checker), as opposed to a damaged checkpoint."""
    try:
        import onnx
        onnx.checker.check_model(onnx.load(str(path), load_external_data=False))
        return True
    except Exception:
        return False


def find_checkpoint(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path} holds no {', '.join(CHECKPOINT_NAMES)}; give a run folder, a pretrained/ "
                              f"folder, a .pt or a compact .npz checkpoint")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    return path


def load(path: Path, overrides: dict | None = None) -> tuple[nn.Module, TrainConfig, Path]:
    """The model (eval mode) and its config from a checkpoint written by training."""
    ck_path = find_checkpoint(path)
    ck = read_checkpoint(ck_path)
    cfg = TrainConfig.from_dict(ck["config"], str(ck_path), overrides)
    model = build_model(cfg)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{ck_path} does not fit the {cfg.model} its config describes: {e}") from None
    return model.eval(), cfg, ck_path


COMPILE_PAYS_S = 60.0  # eager seconds still to go that make compiling worth it: ~25-35 s, then about 2x faster


@torch.no_grad()
def predict(model: nn.Module, x_uint8: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """Logits for uint8 NCHW pixels. On the CPU, where the first batch's time says the others would take over
    COMPILE_PAYS_S eagerly (a VGGNet7 on thousands of images), the other full batches run through torch.compile,
    which fuses the quantizers' element-wise work (VGGNet7: 2x, the same logits); eager where compiling fails."""
    model.eval()
    t0 = time.perf_counter()
    out = [model(x_uint8[:batch].float())]
    eager_rest_s = (time.perf_counter() - t0) * (len(x_uint8) - batch) / batch
    net = torch.compile(model) if x_uint8.device.type == "cpu" and eager_rest_s > COMPILE_PAYS_S else model
    for i in range(batch, len(x_uint8), batch):
        xb = x_uint8[i:i + batch].float()
        if net is not model and len(xb) == batch:  # a short last batch would compile again: eager
            try:
                out.append(net(xb))
                continue
            except Exception as e:  # an optional speed-up (no C++ compiler, an unsupported op): eager, same logits
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); predicting eagerly")
                net = model
        out.append(model(xb))
    return torch.cat(out)


def evaluate_checkpoint(path: Path, overrides: dict | None = None, log=print, count: bool = False):
    """Test accuracy in %; with count=True also the number of test images it was measured on."""
    model, cfg, ck_path = load(path, {k: v for k, v in (overrides or {}).items()
                                      if k in ("data_dir", "test_limit", "eval_batch_size")})
    s = make_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, 1, cfg.test_limit)
    acc = 100.0 * (predict(model, s.x_test, cfg.eval_batch_size).argmax(1) == s.y_test).float().mean().item()
    log(f"{ck_path}: test accuracy {acc:.2f}% on {len(s.x_test)} images")
    return (acc, len(s.x_test)) if count else acc


def preset_path(path: str) -> Path:
    """A path a preset names: as given, or else against the checkout (a shipped pretrained/ folder, from any
    working directory)."""
    p = Path(path)
    return ROOT / p if not p.is_absolute() and not p.exists() and (ROOT / p).exists() else p


def _read_source(path: str, key: str, fix: str) -> dict:
    """The checkpoint a preset key names, or an error naming the key and the fix."""
    src = preset_path(path)
    if not src.exists():
        raise CheckpointError(f"{key}: {path} not found; {fix}")
    return read_checkpoint(src)


def init_from(model, path: str) -> str:
    """Copies the tensors whose name and shape match (float pretraining of a quantized net; a shipped model to
    train on)."""
    ck = _read_source(path, "init_from", "give the run folder or checkpoint to start from (a pretrained/ folder "
                                         "works too: it starts from its stored +-1 weights)")
    own = model.state_dict()
    same = {k: v for k, v in ck["model"].items() if k in own and own[k].shape == v.shape}
    if not same:
        raise CheckpointError(f"init_from: {path} shares no tensor of matching name and shape with this {ck['config']}")
    model.load_state_dict(same, strict=False)
    return f"initialised {len(same)} of {len(own)} tensors from {path}"


@torch.no_grad()
def init_latent_magnitudes(model, path: str) -> str:
    """Gives init_from's +-1 weights the magnitudes of the same latent weights in path, keeping their signs: latent
    weights at +-1 sit as far from zero as the clamp allows, where Adam's small steps take epochs to flip any."""
    theirs = _read_source(path, "init_latent_from", "give the checkpoint whose latent weights the signs were "
                                                    "trained from (a run's .pt or run folder)")["model"]
    signs = {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1
             and bool(((p == 1) | (p == -1)).all())}
    scaled = [n for n, p in signs.items() if n in theirs and theirs[n].shape == p.shape]
    if not scaled:
        raise CheckpointError(f"init_latent_from: {path} has no tensor of the name and shape of this net's +-1 "
                              f"weights ({', '.join(signs) or 'none: init_from gave no +-1 weights'})")
    for n in scaled:
        signs[n].mul_(theirs[n].to(signs[n].device).abs().clamp(1e-6, 1.0))  # never 0: the sign stays
    return f"latent magnitudes of {len(scaled)} binary weight tensors from {path}"
