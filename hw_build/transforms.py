"""The project's own graph transformations, where FINN needs help (qonnx Transformation style)."""
from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation


class RoundAndClipXnorThresholds(Transformation):
    """Rounds the thresholds of binary (XNOR-popcount) MVAUs up to integers in [0, MW + 1].

    A popcount over MW inputs is an integer in [0, MW]. Streamlined BN + sign gives fractional
    thresholds, and below 0 or above MW for channels that are always on or off; FINN's threshold
    packing asserts integer thresholds >= 0 for XNOR MVAUs. Neither change alters the function:
    for integer acc, acc >= t equals acc >= ceil(t); acc >= t for t < 0 is as true as acc >= 0,
    and for t > MW as false as acc >= MW + 1.
    """

    def apply(self, model):
        changed = False
        for node in model.graph.node:
            if not node.op_type.startswith("MVAU") or len(node.input) < 3:
                continue
            inst = getCustomOp(node)
            if inst.get_nodeattr("binaryXnorMode") != 1 or inst.get_nodeattr("noActivation") == 1:
                continue
            t = model.get_initializer(node.input[2])
            mw = inst.get_nodeattr("MW")
            clipped = np.clip(np.ceil(t), 0, mw + 1)
            if not np.array_equal(clipped, t):
                model.set_initializer(node.input[2], clipped.astype(np.float32))
                model.set_tensor_datatype(node.input[2], DataType.get_smallest_possible(mw + 1))
                changed = True
        return model, False  # one pass clips every node
