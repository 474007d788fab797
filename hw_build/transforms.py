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
        return model, False  # one pass handles every node


class BinaryPadToNHWC(Transformation):
    """Turns the model's -1 padding into a Pad that FINN's InferFMPadding maps to FMPadding.

    The model pads binary activations with -1 (nn.ConstantPad2d, NCHW). After streamlining, FINN
    has converted those activations to the {0, 1} encoding of XNOR-popcount layers but leaves the Pad
    writing -1, and in NCHW between two Transposes. In the encoding, -1 is 0: the Pad becomes an
    NHWC Pad with constant 0 on axes (1, 2), the form InferFMPadding takes, and the Transposes go.
    """

    def apply(self, model):
        from onnx import helper
        for node in model.graph.node:
            if node.op_type != "Pad" or len(node.input) < 3:
                continue
            pre, post = model.find_producer(node.input[0]), model.find_consumers(node.output[0])
            if (pre is None or pre.op_type != "Transpose" or not post or len(post) != 1
                    or post[0].op_type != "Transpose" or _perm(pre) != [0, 3, 1, 2] or _perm(post[0]) != [0, 2, 3, 1]):
                continue
            dt, value = model.get_tensor_datatype(node.input[0]), float(model.get_initializer(node.input[2]))
            if not ((dt == DataType["BINARY"] and value == -1.0) or (dt != DataType["BINARY"] and value == 0.0)):
                continue
            pads = [int(p) for p in model.get_initializer(node.input[1])]  # NCHW begins then ends
            if pads[0] or pads[1] or pads[4] or pads[5]:
                continue
            nhwc_pads = [pads[2], pads[3], pads[6], pads[7]]
            names = [model.make_new_valueinfo_name() for _ in range(3)]
            model.set_initializer(names[0], np.array(nhwc_pads, dtype=np.int64))
            model.set_initializer(names[1], np.array(0.0, dtype=np.float32))
            model.set_initializer(names[2], np.array([1, 2], dtype=np.int64))
            new = helper.make_node("Pad", [pre.input[0], *names], [post[0].output[0]], mode="constant",
                                   name=node.name + "_nhwc")
            idx = list(model.graph.node).index(pre)
            for n in (post[0], node, pre):
                model.graph.node.remove(n)
            model.graph.node.insert(idx, new)
            from qonnx.transformation.infer_shapes import InferShapes
            from qonnx.transformation.infer_datatypes import InferDataTypes
            return model.transform(InferShapes()).transform(InferDataTypes()), True
        return model, False


def _perm(node):
    from qonnx.util.basic import get_by_name
    attr = get_by_name(node.attribute, "perm")
    return list(attr.ints) if attr is not None else None
