"""FINN's own execution of single nodes: the reference both the batched executor and the stage runner use.

Specialized ``_hls`` / ``_rtl`` nodes have no Python execution of their own in FINN; a copy mapped back to the
base op type runs FINN's Python model of the same layer.
"""
from __future__ import annotations

import copy

import numpy as np

FPGADATAFLOW = "finn.custom_op.fpgadataflow"


def python_copy(model):
    """Copy with every specialized HW node mapped back to its base op (Python-executable)."""
    m = copy.deepcopy(model)
    for node in m.graph.node:
        if node.domain.startswith(FPGADATAFLOW) and node.op_type.endswith(("_hls", "_rtl")):
            node.op_type = node.op_type.rsplit("_", 1)[0]
            node.domain = FPGADATAFLOW
    return m


def node_executor(model, node):
    """x -> output of one node, as execute_onnx computes it (quantized tensors sanitized the same way), but
    without building the whole graph's empty context on every call (3-500x less time per call here)."""
    from qonnx.core.onnx_exec import execute_node
    from qonnx.util.basic import get_preferred_qonnx_opset, get_sanitize_quant_tensors, sanitize_quant_values
    opset = {o.domain: o.version for o in model.model.opset_import}.get(node.domain, get_preferred_qonnx_opset())
    fixed = {n: model.get_initializer(n) for n in node.input[1:] if model.get_initializer(n) is not None}
    sanitize = get_sanitize_quant_tensors() != 0

    def run(x):
        ctx = dict(fixed)
        ctx[node.input[0]] = x
        for o in node.output:
            ctx[o] = np.zeros(model.get_tensor_shape(o), np.float32)
        if sanitize:
            ctx = sanitize_quant_values(model, node.input, ctx)
        execute_node(node, ctx, model.graph, opset)
        if sanitize:
            ctx = sanitize_quant_values(model, node.output, ctx)
        return ctx[node.output[0]]
    return run
