"""Compact checkpoints (``model.npz``): a quantized net's weights stored as what they are.

A binary layer's weights are 1 bit each (the sign the quantizer takes: latent w >= 0 is +1), a ternary
layer's 2 bits (a non-zero plane and a sign plane), everything else (8-bit first/last layers' latent
weights, batch-norm parameters and statistics) as the float32/int64 tensors they are. One NumPy archive
(``np.savez_compressed``, read with ``allow_pickle=False``):

    __meta__        JSON: format, config (TrainConfig as a dict), epoch, val_acc, source, precise_bn,
                    and for every stored tensor its kind and shape
    bits/<key>      binary weight layer: np.packbits(w >= 0) over the flattened tensor
    nonzero/<key>,  ternary weight layer: np.packbits(w != 0), np.packbits(w < 0)
    negative/<key>
    tensor/<key>    any other state-dict entry, unchanged

The loader rebuilds the state dict with the binary/ternary weights at their quantized values (+-1, 0).
The quantizers map those to themselves, so the model computes exactly what the latent-weight model did;
fine-tuning from a compact checkpoint starts from those stored values, not from the latent weights
(which training keeps in its .pt checkpoints). A binary VGGNet7 is 1.2 MB here against 41 MB latent.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FORMAT = "bnn-finn compact checkpoint 1"
META_KEYS = ("epoch", "val_acc", "source", "precise_bn")


def weight_kinds(config: dict) -> dict:
    """state-dict key of every weight layer -> 'binary', 'ternary', 'int8' or 'float'."""
    from .config import TrainConfig
    from .models import build_model, layer_precisions
    cfg = TrainConfig.from_dict(config, "checkpoint", validate=False)
    model = build_model(cfg)
    names = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    kinds, _ = layer_precisions(cfg, len(names))
    return {f"{n}.weight": k for n, k in zip(names, kinds)}


def save_compact(ck: dict, path: Path) -> Path:
    """Writes ck ({"model": state_dict, "config": dict, epoch, val_acc, ...}) atomically as a compact archive."""
    kinds = weight_kinds(ck["config"])
    arrays, layout = {}, {}
    for key, t in ck["model"].items():
        a = t.detach().cpu().numpy()
        kind = kinds.get(key, "tensor")
        if kind == "binary":
            arrays[f"bits/{key}"] = np.packbits(a.ravel() >= 0)
        elif kind == "ternary":
            q = np.clip(np.round(a.ravel()), -1, 1)  # what the ternary quantizer (scale 1, threshold 0.5) gives
            arrays[f"nonzero/{key}"], arrays[f"negative/{key}"] = np.packbits(q != 0), np.packbits(q < 0)
        else:
            kind = "tensor"
            arrays[f"tensor/{key}"] = a
        layout[key] = {"kind": kind, "shape": list(a.shape), "dtype": str(a.dtype)}
    meta = {"format": FORMAT, "config": ck["config"], "layout": layout,
            **{k: ck[k] for k in META_KEYS if k in ck}}
    arrays["__meta__"] = np.array(json.dumps(meta))
    from .data import save_arrays  # atomic: a kill never leaves a torn archive
    save_arrays(arrays, Path(path))
    return path


def load_compact(path: Path) -> dict:
    """The checkpoint dict ({"model", "config", ...}) of a compact archive; ValueError if it is not one."""
    with np.load(path, allow_pickle=False) as z:
        if "__meta__" not in z.files:
            raise ValueError("no __meta__ entry: not a compact checkpoint of this project")
        meta = json.loads(str(z["__meta__"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        state = {}
        for key, spec in meta["layout"].items():
            shape, n = tuple(spec["shape"]), int(np.prod(spec["shape"], dtype=np.int64))
            if spec["kind"] == "binary":
                bits = np.unpackbits(z[f"bits/{key}"], count=n)
                a = np.where(bits == 1, 1.0, -1.0).astype(np.float32)
            elif spec["kind"] == "ternary":
                nz = np.unpackbits(z[f"nonzero/{key}"], count=n)
                neg = np.unpackbits(z[f"negative/{key}"], count=n)
                a = (nz * np.where(neg == 1, -1.0, 1.0)).astype(np.float32)
            else:
                a = z[f"tensor/{key}"]
            state[key] = torch.from_numpy(np.array(a, dtype=spec["dtype"]).reshape(shape))  # 0-d stays 0-d
    return {"model": state, "config": meta["config"], **{k: meta[k] for k in META_KEYS if k in meta}}
