"""QONNX export for FINN: the FINN-compilable (CBAP) twin of a trained net, exported with Brevitas."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from common import compat  # noqa: F401

from .checkpoint import CheckpointError, load, predict
from .config import ConfigError, TrainConfig
from .data import make_splits
from .models import INPUT_CHW, Block


def _flip_input_channels(layer: nn.Module, flip: torch.Tensor) -> None:
    """Negates the weights that read the flipped channels. Latent zeros become a tiny negative
    value first, because the binary quantizer maps both +0 and -0 to +1."""
    w = layer.weight.data
    if isinstance(layer, nn.Linear) and w.shape[1] != flip.numel():
        flip = flip.repeat_interleave(w.shape[1] // flip.numel())  # flatten of C x H x W
    shape = (1, -1) + (1,) * (w.dim() - 2)
    s = flip.view(shape).to(w.dtype)
    w[w == 0] = -1e-12
    w.mul_(torch.where(s < 0, -1.0, 1.0))


def to_cbap(model: nn.Module) -> nn.Module:
    """An exact CBAP twin of a CPBA quantized net, for FINN.

    CPBA (conv, max-pool, BN, sign) with a negative BN gamma makes the sign a non-increasing
    function of the pooled value, which FINN cannot move past MaxPool. For a channel with gamma < 0,
    sign(BN(maxpool(x))) = -maxpool(sign(-BN(x))): so the twin uses BN with gamma and beta negated,
    pools after the sign (CBAP), and the next layer reads that channel with negated weights. Channels
    with gamma >= 0 only swap pool and sign, which commute for a non-decreasing step. A constant
    padding in front of the next conv would pad a flipped channel with the wrong value, so that case
    is refused.
    """
    twin = copy.deepcopy(model).eval()
    blocks = [m for m in twin.modules() if isinstance(m, Block)]
    for i, b in enumerate(blocks):
        if b.order != "CPBA" or b.pool is None or b.act is None:
            b.order = "CBAP"
            continue
        flip = torch.sign(b.norm.weight.data) if b.norm is not None and b.norm.affine else None
        b.order = "CBAP"
        if flip is None or (flip >= 0).all():
            continue
        flip = torch.where(flip < 0, -1.0, 1.0)
        nxt = blocks[i + 1]
        if nxt.pad is not None:
            raise CheckpointError(
                f"block{i + 1} is CPBA with {int((flip < 0).sum())} negative BN gammas and feeds a padded conv: "
                f"FINN pads every channel with -1, but flipped channels would need +1. Train with "
                f"layer_order CBAP for nets with padding after a pool")
        b.norm.weight.data.mul_(flip)
        b.norm.bias.data.mul_(flip)
        _flip_input_channels(nxt.layer, flip)
    return twin


def export_qonnx(model: nn.Module, cfg: TrainConfig, out: Path) -> Path:
    """QONNX of the FINN-compilable twin; input is uint8 pixels NCHW (annotated by the hardware build)."""
    from brevitas.export import export_qonnx as brevitas_export_qonnx
    if not cfg.binarize:
        raise ConfigError("only quantized nets (binarize: true) go to FINN; the float reference has no QONNX")
    if cfg.padding == "replicate" and any(isinstance(m, nn.ReplicationPad2d) for m in model.modules()):
        raise ConfigError("padding replicate (the study's) has no FINN layer; retrain with padding minus_one")
    twin = to_cbap(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    brevitas_export_qonnx(twin, input_t=torch.zeros(1, *INPUT_CHW[cfg.model]), export_path=str(out))
    _drop_orphan_external_data(out)
    return out


def _drop_orphan_external_data(path: Path) -> None:
    """torch's exporter leaves <name>.onnx.data beside a model that Brevitas then writes self-contained:
    when no initializer refers to it, it is an orphan copy of the weights (41 MB for VGGNet7)."""
    import onnx
    data = path.with_name(path.name + ".data")
    if data.is_file():
        m = onnx.load(str(path), load_external_data=False)
        if not any(i.data_location == onnx.TensorProto.EXTERNAL for i in m.graph.initializer):
            data.unlink()


def qonnx_logits(onnx_path: Path, x: torch.Tensor, batch: int = 250):
    """qonnx's own executor on the exported graph. The file has batch 1; qonnx's ChangeBatchSize gives copies that
    take `batch` images at once (every node works per image, so the logits are the file's, tested): LeNet5's
    10,000 test images in 25 s against 4 min image by image (docs/results.md)."""
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes
    from tqdm import tqdm
    copies: dict[int, ModelWrapper] = {}

    def run(xb: torch.Tensor) -> np.ndarray:
        if len(xb) not in copies:
            copies[len(xb)] = ModelWrapper(str(onnx_path)).transform(ChangeBatchSize(len(xb))).transform(InferShapes())
        m = copies[len(xb)]
        return execute_onnx(m, {m.graph.input[0].name: xb.float().numpy()})[m.graph.output[0].name]

    return np.concatenate([run(x[k:k + batch]) for k in tqdm(range(0, len(x), batch), desc="qonnx executor",
                                                             unit="batch", leave=False, disable=None)])


def check_qonnx(model: nn.Module, onnx_path: Path, x: torch.Tensor, y: torch.Tensor) -> dict:
    """qonnx's executor against the Brevitas model's logits on the same uint8 pixels."""
    import numpy as np
    ref = predict(model, x).detach().numpy()
    got = qonnx_logits(onnx_path, x)
    top1, labels = got.argmax(1), y.numpy()
    return {"images": len(x), "agree": int((top1 == ref.argmax(1)).sum()),
            "max_dlogit": float(np.abs(got - ref).max()), "qonnx_acc": 100.0 * float((top1 == labels).mean()),
            "brevitas_acc": 100.0 * float((ref.argmax(1) == labels).mean())}


CHECK_IMAGES = 1000  # the default check; --test-limit 0 takes all 10,000


def export_checkpoint(path: Path, log=print, overrides: dict | None = None) -> Path:
    """model.onnx beside the checkpoint, then checked with qonnx's executor on the first CHECK_IMAGES test images
    (test_limit given: that many; 0: all)."""
    over = {k: v for k, v in (overrides or {}).items() if k in ("data_dir", "test_limit")}
    model, cfg, ck_path = load(path, {"test_limit": CHECK_IMAGES, **over})
    out = export_qonnx(model, cfg, ck_path.parent / "model.onnx")
    log(f"wrote {out}")
    s = make_splits(cfg.dataset, cfg.data_dir, cfg.val_size, cfg.seed, 1, cfg.test_limit)
    r = check_qonnx(model, out, s.x_test, s.y_test)
    log(f"qonnx's executor on {r['images']:,} test images: top-1 as the Brevitas model on {r['agree']:,}, "
        f"max |dlogit| {r['max_dlogit']:.1e}; accuracy {r['qonnx_acc']:.2f}% (Brevitas {r['brevitas_acc']:.2f}%)")
    if r["agree"] != r["images"]:
        raise ConfigError(f"the exported {out} gives another class than the Brevitas model on "
                          f"{r['images'] - r['agree']} of {r['images']} test images: the export is not faithful; "
                          f"report it with the checkpoint")
    return out
