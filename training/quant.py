"""Quantizers, named once and reused by every model (as in Brevitas's bnn_pynq examples).

Constant scale 1 everywhere, so exported tensors are exactly {-1, +1} / {-1, 0, +1} and
FINN sees BIPOLAR / ternary data types. The weight quantizers clamp the latent weights to
[-1, 1] in place on every forward: the study's clipping after each optimizer step.
"""
from brevitas.core.function_wrapper import InplaceTensorClampSte
from brevitas.quant import Int8WeightPerTensorFloat
from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from brevitas.quant.ternary import SignedTernaryActPerTensorConst, SignedTernaryWeightPerTensorConst


class BinaryWeight(SignedBinaryWeightPerTensorConst):
    scaling_const = 1.0


class TernaryWeight(SignedTernaryWeightPerTensorConst):
    scaling_const = 1.0


class Int8Weight(Int8WeightPerTensorFloat):
    """'Full precision' first/last layer: 8-bit weights with a float scale that FINN factors out."""


class BinaryAct(SignedBinaryActPerTensorConst):
    """sign() with the 'bnn' estimator: hardtanh straight-through (gradient 0 outside [-1, 1])."""


class BinaryActVanilla(SignedBinaryActPerTensorConst):
    """sign() with the 'vanilla' estimator: identity gradient everywhere."""
    tensor_clamp_impl = InplaceTensorClampSte


class TernaryAct(SignedTernaryActPerTensorConst):
    """{-1, 0, +1} with thresholds at +-0.5 and a hardtanh straight-through estimator."""


def weight_quant(kind: str):
    return {"binary": BinaryWeight, "ternary": TernaryWeight, "int8": Int8Weight}[kind]


def act_quant(kind: str, ste: str = "bnn"):
    if kind == "ternary":
        return TernaryAct
    return {"bnn": BinaryAct, "vanilla": BinaryActVanilla}[ste]
