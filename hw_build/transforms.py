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
    writing -1, in NCHW before a Transpose to NHWC (and after one from NHWC, except where it pads the
    binarized input image). In the encoding, -1 is 0: the Pad becomes an NHWC Pad with constant 0 on
    axes (1, 2), the form InferFMPadding takes; the Transposes around it go, or, with none before it,
    one moves in front of it.
    """

    def apply(self, model):
        for node in model.graph.node:
            if node.op_type != "Pad" or len(node.input) < 3:
                continue
            pre, post = model.find_producer(node.input[0]), model.find_consumers(node.output[0])
            if not post or len(post) != 1 or post[0].op_type != "Transpose" or _perm(post[0]) != [0, 2, 3, 1]:
                continue
            dt, value = model.get_tensor_datatype(node.input[0]), float(model.get_initializer(node.input[2]))
            if not ((dt == DataType["BINARY"] and value == -1.0) or (dt != DataType["BINARY"] and value == 0.0)):
                continue
            pads = [int(p) for p in model.get_initializer(node.input[1])]  # NCHW begins then ends
            if pads[0] or pads[1] or pads[4] or pads[5]:
                continue
            _replace_with_nhwc_pad(model, node, pre, post[0], [pads[2], pads[3], pads[6], pads[7]])
            from qonnx.transformation.infer_datatypes import InferDataTypes
            from qonnx.transformation.infer_shapes import InferShapes
            return model.transform(InferShapes()).transform(InferDataTypes()), True
        return model, False


def _replace_with_nhwc_pad(model, pad, pre, post, nhwc_pads):
    from onnx import helper
    names = [model.make_new_valueinfo_name() for _ in range(3)]
    model.set_initializer(names[0], np.array(nhwc_pads, dtype=np.int64))
    model.set_initializer(names[1], np.array(0.0, dtype=np.float32))
    model.set_initializer(names[2], np.array([1, 2], dtype=np.int64))
    idx = list(model.graph.node).index(pad)
    if pre is not None and pre.op_type == "Transpose" and _perm(pre) == [0, 3, 1, 2] \
            and len(model.find_consumers(pre.output[0])) == 1:
        nodes = [helper.make_node("Pad", [pre.input[0], *names], [post.output[0]], mode="constant",
                                  name=pad.name + "_nhwc")]
        idx, gone = list(model.graph.node).index(pre), (post, pad, pre)
    else:  # NCHW data (the binarized input image): transpose first, then pad
        nhwc = model.make_new_valueinfo_name()
        nodes = [helper.make_node("Transpose", [pad.input[0]], [nhwc], perm=[0, 2, 3, 1], name=pad.name + "_to_nhwc"),
                 helper.make_node("Pad", [nhwc, *names], [post.output[0]], mode="constant", name=pad.name + "_nhwc")]
        model.set_tensor_datatype(nhwc, model.get_tensor_datatype(pad.input[0]))
        gone = (post, pad)
    for n in gone:
        model.graph.node.remove(n)
    for n in reversed(nodes):
        model.graph.node.insert(idx, n)


def _perm(node):
    from qonnx.util.basic import get_by_name
    attr = get_by_name(node.attribute, "perm")
    return list(attr.ints) if attr is not None else None


class SplitThresholdsForRtlMVAU(Transformation):
    """Lets FINN's DSP-based MVAU_rtl take an integer-input layer with bipolar weights (the 8-bit first layer).

    MVAU_rtl computes the dot product only (no fused thresholds) and wants signed weights of >= 2 bits. For
    each MVAU named in `names`: the weights {-1, +1} are retyped INT2 (same values, narrow range), the fused
    thresholds move into a standalone Thresholding layer after it, and both prefer the RTL implementation;
    FINN's SpecializeLayers then maps the MVAU to DSPs where its checks allow. The accumulator is an integer,
    so acc >= t equals acc >= ceil(t): thresholds are rounded up, which keeps the function.
    """

    def __init__(self, names):
        super().__init__()
        self.names = set(names)

    def apply(self, model):
        from onnx import helper
        for node in list(model.graph.node):
            if node.op_type != "MVAU" or node.name not in self.names or len(node.input) < 3:
                continue
            inst = getCustomOp(node)
            if inst.get_nodeattr("binaryXnorMode") or inst.get_input_datatype(0).bitwidth() < 2:
                continue
            if model.get_tensor_datatype(node.input[1]) == DataType["BIPOLAR"]:
                model.set_tensor_datatype(node.input[1], DataType["INT2"])
                inst.set_nodeattr("weightDataType", "INT2")
            w = model.get_initializer(node.input[1])
            idt = inst.get_input_datatype(0)
            bound = float(np.abs(w).sum(axis=0).max()) * max(abs(idt.min()), abs(idt.max()))
            acc_dt = DataType.get_smallest_possible(-bound - 1)
            thr = np.ceil(model.get_initializer(node.input[2])).astype(np.float32)
            thr_name, acc = node.input[2], model.make_new_valueinfo_name()
            model.set_initializer(thr_name, thr)
            span = max(abs(float(thr.min())), abs(float(thr.max())))
            model.set_tensor_datatype(thr_name, DataType.get_smallest_possible(-span - 1))  # signed, both ends
            out = node.output[0]
            model.set_tensor_shape(acc, model.get_tensor_shape(out))
            model.set_tensor_datatype(acc, acc_dt)
            th = helper.make_node(
                "Thresholding", [acc, thr_name], [out], domain="finn.custom_op.fpgadataflow",
                backend="fpgadataflow", NumChannels=inst.get_nodeattr("MH"), PE=1, numSteps=thr.shape[1],
                inputDataType=acc_dt.name, weightDataType=model.get_tensor_datatype(thr_name).name,
                outputDataType=inst.get_nodeattr("outputDataType"), ActVal=inst.get_nodeattr("ActVal"),
                numInputVectors=list(inst.get_nodeattr("numInputVectors")), preferred_impl_style="rtl",
                name="Thresholding_" + node.name)
            del node.input[2]
            node.output[0] = acc
            inst.set_nodeattr("noActivation", 1)
            inst.set_nodeattr("ActVal", 0)
            inst.set_nodeattr("outputDataType", acc_dt.name)
            inst.set_nodeattr("accDataType", acc_dt.name)
            inst.set_nodeattr("preferred_impl_style", "rtl")
            model.graph.node.insert(list(model.graph.node).index(node) + 1, th)
        return model, False


class InsertMinimalFIFOs(Transformation):
    """Data-width converters and FIFOs at FINN's minimal depth, as FINN's step_set_fifo_depths inserts them
    (force_minimal_fifos; its sizing strategies insert the same nodes, then change depths): the stitched
    graph's structure, which the partitions and so the driver's runtime-weight files follow."""

    def __init__(self, part: str):
        super().__init__()
        self.part = part

    def apply(self, model):
        from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
        from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
        from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
        from finn.transformation.qonnx.give_unique_node_names_recursive import GiveUniqueNodeNamesRecursive
        from qonnx.transformation.general import GiveReadableTensorNames
        for t in (InsertDWC(), InsertFIFO(create_shallow_fifos=True), SpecializeLayers(self.part),
                  GiveUniqueNodeNamesRecursive(), GiveReadableTensorNames()):
            model = model.transform(t)
        return model, False


class WrapWithIODMAs(Transformation):
    """The dataflow graph wrapped as FINN's ZynqBuild wraps it in Vivado: IODMAs at the board's native port
    width (InsertIODMA), data-width converters (InsertDWC), SpecializeLayers, Floorplan and one partition
    per IODMA and per weight-writable layer, the partitions' instance names as MakeZYNQProject gives them in
    the block design (idma0, odma0, ...). FINN's MakePYNQDriver reads this graph for settings.json."""

    def __init__(self, board, partition_dir):
        super().__init__()
        self.board, self.partition_dir = board, str(partition_dir)

    def apply(self, model):
        from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
        from finn.transformation.fpgadataflow.floorplan import Floorplan
        from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
        from finn.transformation.fpgadataflow.insert_iodma import InsertIODMA
        from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
        from finn.util.basic import pynq_native_port_width
        from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
        from qonnx.transformation.infer_data_layouts import InferDataLayouts
        model = model.transform(InferDataLayouts())
        for t in (InsertIODMA(pynq_native_port_width[self.board.finn_board]), InsertDWC(),
                  SpecializeLayers(self.board.part), Floorplan(),
                  CreateDataflowPartition(partition_model_dir=self.partition_dir)):
            model = model.transform(t).transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())
        counts = {"idma": 0, "odma": 0}
        for node in model.get_nodes_by_op_type("StreamingDataflowPartition"):
            kind = ("idma" if model.find_producer(node.input[0]) is None else
                    "odma" if not model.find_consumers(node.output[0]) else None)
            name = node.name
            if kind:
                name, counts[kind] = f"{kind}{counts[kind]}", counts[kind] + 1
            getCustomOp(node).set_nodeattr("instance_name", name)
        return model, False


def xnor_mvaus(model) -> list:
    """The binary (XNOR-popcount) MVAUs of a graph."""
    return [n for n in model.graph.node
            if n.op_type.startswith("MVAU") and getCustomOp(n).get_nodeattr("binaryXnorMode")]


def xnor_thresholds(model) -> dict:
    """The thresholds of each XNOR-popcount MVAU with an activation, by node name (XnorPopcountAccumulator's
    input: taken before FINN's step_minimize_bit_width, which may clip them)."""
    return {n.name: model.get_initializer(n.input[2]) for n in xnor_mvaus(model)
            if getCustomOp(n).get_nodeattr("noActivation") == 0 and len(n.input) > 2}


class XnorPopcountAccumulator(Transformation):
    """Sizes the accumulator of each binary (XNOR-popcount) MVAU for what finn-hlslib accumulates there: the
    popcount of matches, an integer in [0, MW].

    finn-plus 1.6.1's minimize_accumulator_width sizes it for the dot product of the weights as {-1, +1} with
    inputs as {0, 1}, [-#(-1 weights), #(+1 weights)] per row: INT8 for a row of MW = 128 or 200 with about as
    many of each, where a popcount >= 128 wraps to a negative number in the HLS code (cppsim, and the
    hardware) but not in FINN's python execution, and its RoundAndClipThresholds then clips thresholds to
    that range. Measured: a tiny LeNet5's last MVAU (MW 128, no activation) gave -128 for 128 in cppsim, its
    second (MW 200) 0 for 1 wherever a popcount reached 128. Where FINN's type cannot hold [0, MW], this
    gives the smallest UINT that holds the popcount and the thresholds (`thresholds`, from before FINN's
    step, restored), the type of the thresholds too, and, with no activation, of the output (a multiple of
    8 bits on the graph's last node, as FINN does)."""

    def __init__(self, thresholds: dict):
        super().__init__()
        self.thresholds = thresholds

    def apply(self, model):
        from qonnx.transformation.infer_datatypes import InferDataTypes
        from qonnx.util.basic import roundup_to_integer_multiple
        for node in xnor_mvaus(model):
            inst = getCustomOp(node)
            mw, acc = inst.get_nodeattr("MW"), DataType[inst.get_nodeattr("accDataType")]
            if acc.allowed(0) and acc.allowed(mw):  # then FINN clipped no threshold either (they are <= MW + 1)
                continue
            thr = self.thresholds.get(node.name)
            bits = int(np.ceil(np.log2(max(mw, 0 if thr is None else int(thr.max())) + 1)))
            if inst.get_nodeattr("noActivation"):
                if not model.find_direct_successors(node):
                    bits = roundup_to_integer_multiple(bits, 8)
                inst.set_nodeattr("outputDataType", f"UINT{bits}")
            inst.set_nodeattr("accDataType", f"UINT{bits}")
            if thr is not None:
                model.set_initializer(node.input[2], thr)
                model.set_tensor_datatype(node.input[2], DataType[f"UINT{bits}"])
        return model.transform(InferDataTypes()), False
