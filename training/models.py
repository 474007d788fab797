"""LeNet5 and VGGNet7 of the study, declared as layer lists and built as float or Brevitas nets.

Every net takes uint8 pixels (as float, NCHW) and scales them by 1/255 itself, so the
accelerator takes raw pixels. Quantized nets end in a scalar, affine-free norm (positive
scale): argmax is unchanged by it, so the hardware's top-1 equals the model's.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from brevitas import nn as qnn  # noqa: E402
from torch import nn

from common import compat  # noqa: F401  (Tensor.rename shim before Brevitas layers run)
from common.registry import NETWORKS, Layer  # noqa: E402,F401  (Layer: the type of ARCHS entries)

from .quant import act_quant, weight_quant  # noqa: E402

ARCHS = {name: list(net.layers) for name, net in NETWORKS.items()}
INPUT_CHW = {name: net.input_chw for name, net in NETWORKS.items()}


class PixelScale(nn.Module):
    """uint8 pixels to [0, 1]: a positive scalar Mul that FINN streamlines into the first thresholds."""

    def forward(self, x):
        return x * (1.0 / 255.0)


class Shift(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x - self.value


class ScalarNorm(nn.Module):
    """Batch norm over all elements with one mean and variance and no affine: a positive scalar
    Mul/Add in eval mode, which FINN absorbs into the top-1 (LabelSelect) layer."""

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_var", torch.ones(()))

    def forward(self, x):
        if self.training:
            mean, var = x.mean(), x.var(unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().float(), self.momentum)
                self.running_var.lerp_(var.detach().float(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * torch.rsqrt(var + self.eps)


class Block(nn.Module):
    """One weight layer with its pad, pool, norm and activation, in CBAP or CPBA order."""

    def __init__(self, pad, layer, pool, norm, act, order):
        super().__init__()
        self.pad, self.layer, self.pool, self.norm, self.act = pad, layer, pool, norm, act
        self.order = order

    def forward(self, x):
        if self.pad is not None:
            x = self.pad(x)
        if x.dim() > 2 and isinstance(self.layer, (nn.Linear, qnn.QuantLinear)):
            x = x.flatten(1)
        x = self.layer(x)
        if self.order == "CPBA" and self.pool is not None:
            x = self.pool(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.act is not None:
            x = self.act(x)
        if self.order == "CBAP" and self.pool is not None:
            x = self.pool(x)
        return x


def layer_precisions(cfg, n: int) -> tuple[list, list]:
    """Per weight layer: weight kind and input kind ('pixels', 'binary', 'ternary' or 'float')."""
    if not cfg.binarize:
        return ["float"] * n, ["pixels"] + ["float"] * (n - 1)
    w = ["ternary" if cfg.tern_weights and cfg.tern_weights[i] == "1" else "binary" for i in range(n)]
    if cfg.first_layer_8bit:
        w[0] = "int8"
    if cfg.last_layer_8bit:
        w[-1] = "int8"
    a = ["ternary" if cfg.tern_acts and cfg.tern_acts[i] == "1" else "binary" for i in range(n)]
    if not cfg.binarize_input:
        a[0] = "pixels"
    return w, a


def _pad_module(cfg, spec: Layer, in_kind: str):
    if spec.kind != "conv" or spec.pad == 0 or in_kind == "pixels":
        return None  # pixel input: zero padding = black border, which FINN pads too
    if cfg.padding == "replicate":
        return nn.ReplicationPad2d(spec.pad)
    # what FINN's FMPadding writes: encoded 0, which is -1 for bipolar and 0 for ternary data
    return nn.ConstantPad2d(spec.pad, -1.0 if in_kind == "binary" else 0.0)


def build_model(cfg) -> nn.Sequential:
    specs = ARCHS[cfg.model]
    n = len(specs)
    wq, aq = layer_precisions(cfg, n)
    c_in, h, _ = INPUT_CHW[cfg.model]
    modules = [("input", PixelScale())]
    if cfg.binarize and aq[0] != "pixels":
        modules += [("input_shift", Shift(cfg.binarize_input_threshold)),
                    ("input_quant", qnn.QuantIdentity(act_quant=act_quant(aq[0], cfg.ste)))]
    for i, spec in enumerate(specs):
        last = i == n - 1
        out = spec.out if last else max(1, round(spec.out * cfg.width_scale))
        if spec.kind == "conv":
            own_pad = spec.pad if aq[i] == "pixels" or not cfg.binarize else 0
            if cfg.binarize:
                layer = qnn.QuantConv2d(c_in, out, spec.k, padding=own_pad, bias=False,
                                        weight_quant=weight_quant(wq[i]))
            else:
                layer = nn.Conv2d(c_in, out, spec.k, padding=spec.pad, bias=cfg.biases,
                                  padding_mode="replicate" if cfg.padding == "replicate" and i else "zeros")
            h = h + 2 * spec.pad - spec.k + 1
            features = out
        else:
            in_features = c_in * h * h if specs[i - 1].kind == "conv" else c_in
            layer = (qnn.QuantLinear(in_features, out, bias=False, weight_quant=weight_quant(wq[i]))
                     if cfg.binarize else nn.Linear(in_features, out, bias=cfg.biases))
            features, h = out, 1
        pool = nn.MaxPool2d(2) if spec.pool else None
        if spec.pool:
            h //= 2
        if last:
            norm = ScalarNorm() if cfg.binarize else nn.BatchNorm1d(out, affine=False)
            act = None
        else:
            bn_cls = nn.BatchNorm2d if spec.kind == "conv" else nn.BatchNorm1d
            norm = bn_cls(features) if cfg.batchnorm else None
            act = (qnn.QuantIdentity(act_quant=act_quant(aq[i + 1], cfg.ste)) if cfg.binarize
                   else nn.ReLU())
        pad = _pad_module(cfg, spec, aq[i]) if cfg.binarize else None
        modules.append((f"block{i + 1}", Block(pad, layer, pool, norm, act, cfg.layer_order)))
        c_in = out
    model = nn.Sequential(OrderedDict(modules))
    init_weights(model, wq)
    return model


def init_weights(model: nn.Module, kinds: list) -> None:
    """Xavier-normal (study); ternary latent weights uniform in [-1, 1] so rounding gives all three levels."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m, kind in zip(layers, kinds):
        if kind == "ternary":
            nn.init.uniform_(m.weight, -1.0, 1.0)
        else:
            nn.init.xavier_normal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def weight_layers(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
