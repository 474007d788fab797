"""Batched exact execution of the graphs the flow verifies: exported QONNX through the folded HW graph.

FINN executes a graph image by image, node by node, in Python (`execute_onnx`); its HW nodes only take a
batch of one. Here every node runs on a whole batch at once, computing what FINN's own Python execution of
that node computes, bit for bit:
- integer layers (MVAU in XNOR, binary, ternary and 8-bit forms, XnorPopcountMatMul) multiply in float32
  where every partial sum provably fits its 24-bit mantissa, else in float64 (53 bits), else in int64; the
  bound (input range x largest weight column sum) is checked per layer when the kernel is made;
- thresholds count `x >= t` exactly as qonnx's multithreshold does (searchsorted for long sorted rows);
- window, padding, pooling, top-1 and stream nodes rearrange values, which is exact;
- standard ONNX nodes (the float stages before streamlining) run in onnxruntime, as FINN runs them, with
  the batch dimension left free: integer results are identical, float ones equal within float32 rounding
  (a batch is summed in another order), which the verifier's float-logit tolerance allows for.
A node type with no kernel here runs image by image through FINN's own execution (exact, slow; named in
`BatchedGraph.fallbacks`). tests/test_batched.py compares every node of both networks with FINN's.
"""
from __future__ import annotations

import copy

import numpy as np

FPGADATAFLOW = "finn.custom_op.fpgadataflow"
KERNELS = {}


def kernel(*op_types):
    def register(factory):
        for op in op_types:
            KERNELS[op] = factory
        return factory
    return register


def base_op(node) -> str:
    """MVAU_hls, MVAU_rtl -> MVAU: the specialized variants compute their base op's function."""
    if node.domain.startswith(FPGADATAFLOW) and node.op_type.endswith(("_hls", "_rtl")):
        return node.op_type.rsplit("_", 1)[0]
    return node.op_type


def _batch_shape(model, name) -> tuple:
    return (-1,) + tuple(model.get_tensor_shape(name)[1:])


# --- exact integer arithmetic ------------------------------------------------------------------------

class ExactMatMul:
    """(a @ w + offset) * scale for integer a in [lo, hi] and integer w, in the cheapest dtype that holds every
    partial sum exactly: float32 below 2^24, float64 below 2^53, else int64."""

    def __init__(self, w: np.ndarray, lo: float, hi: float, offset=0.0, scale: float = 1.0):
        w = np.asarray(w, np.float64)
        if not np.array_equal(w, np.round(w)) or lo != round(lo) or hi != round(hi):
            self.dtype, self.bound = np.float32, None  # not integer: FINN's own float32 arithmetic
        else:
            self.bound = max(abs(lo), abs(hi)) * float(np.abs(w).sum(0).max(initial=0))
            self.dtype = np.float32 if self.bound < 2 ** 24 else np.float64 if self.bound < 2 ** 53 else np.int64
        self.w = w.astype(self.dtype)
        self.offset, self.scale = np.asarray(offset, self.dtype), scale

    def _finish(self, acc):
        if self.offset.any():
            acc += self.offset
        return acc * self.scale if self.scale != 1.0 else acc

    def __call__(self, a: np.ndarray) -> np.ndarray:
        return self._finish(a.astype(self.dtype, copy=False) @ self.w)

    def conv(self, x: np.ndarray, k, stride, dilation) -> np.ndarray:
        """The same product over every window of x (N, H, W, C) ordered as im2col_nhwc orders it, without
        materialising the windows: a float32 convolution in torch (exact below the 2^24 bound)."""
        import torch
        import torch.nn.functional as F
        c, mh = x.shape[-1], self.w.shape[1]
        if not hasattr(self, "_wt"):
            self._wt = torch.from_numpy(np.ascontiguousarray(
                self.w.reshape(k[0], k[1], c, mh).transpose(3, 2, 0, 1))).contiguous(memory_format=torch.channels_last)
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(0, 3, 1, 2)  # NHWC memory: channels_last
        y = F.conv2d(xt, self._wt, stride=tuple(stride), dilation=tuple(dilation))
        return self._finish(y.permute(0, 2, 3, 1).contiguous().numpy().reshape(-1, mh))


def xnor_popcount(w: np.ndarray, bipolar_input: bool = False) -> ExactMatMul:
    """FINN's XNOR-popcount of {0, 1}-encoded a and w (the number of equal bits) without re-encoding a:
    popcount(a XNOR w) = a . (2w - 1) + (zero bits in w's column); |a . (2w - 1)| <= K.
    bipolar_input: a is +-1 (FINN's MVAU on BIPOLAR inputs and weights): (a . (2w - 1) + K) / 2."""
    w = np.asarray(w, np.float64)
    if bipolar_input:
        return ExactMatMul(2 * w - 1, -1, 1, offset=w.shape[0], scale=0.5)
    return ExactMatMul(2 * w - 1, 0, 1, offset=(w == 0).sum(0))


def count_thresholds(v: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Per element of v (channels last), how many thresholds of its channel it reaches (v >= t), as qonnx's
    multithreshold counts; thr is (C, T) or (1, T). One threshold: a bool array."""
    thr = np.asarray(thr)
    if thr.shape[1] == 1:
        return v >= thr[:, 0]
    if thr.shape[1] <= 8:  # few thresholds: compare with each
        out = np.zeros(v.shape, np.int16)
        for t in range(thr.shape[1]):
            out += v >= thr[:, t]
        return out
    flat = v.reshape(-1, v.shape[-1])
    out = np.empty(flat.shape, np.int32)
    rows = thr if thr.shape[0] == flat.shape[1] else np.repeat(thr, flat.shape[1], 0)
    for c, row in enumerate(rows):
        if np.all(row[1:] >= row[:-1]):  # sorted: count of t <= v
            out[:, c] = np.searchsorted(row, flat[:, c], side="right")
        else:
            out[:, c] = (flat[:, c, None] >= row).sum(1)
    return out.reshape(v.shape)


def threshold_activation(v: np.ndarray, thr: np.ndarray, scale: float = 1.0, bias: float = 0.0) -> np.ndarray:
    """scale * count_thresholds(v, thr) + bias in float32 (FINN's carrier type); every value a small integer."""
    y = count_thresholds(v, thr).astype(np.float32)
    if scale != 1:
        y *= scale
    if bias:
        y += bias
    return y


def fold_offset(thr: np.ndarray, offset: np.ndarray) -> np.ndarray | None:
    """Thresholds t' = t - offset per channel, so that acc + offset >= t is tested as acc >= t' without
    adding the offset to every accumulator; None where t' is not exact in float32."""
    t = np.asarray(thr, np.float64) - np.asarray(offset, np.float64)[:, None]
    return t.astype(np.float32) if np.array_equal(t.astype(np.float32), t) else None


def _datatype_range(model, name, attr_dt=None):
    from qonnx.core.datatype import DataType
    dt = DataType[attr_dt] if attr_dt else model.get_tensor_datatype(name)
    return dt, float(dt.min()), float(dt.max())


# --- HW layers (finn.custom_op.fpgadataflow) ---------------------------------------------------------

@kernel("MVAU", "MatrixVectorActivation")
def _mvau(node, model, inst):
    from qonnx.core.datatype import DataType
    idt, lo, hi = _datatype_range(model, node.input[0], inst.get_nodeattr("inputDataType"))
    w = model.get_initializer(node.input[1]).astype(np.float64)
    mw, oshape = w.shape[0], _batch_shape(model, node.output[0])
    bipolar = idt == DataType["BIPOLAR"] and DataType[inst.get_nodeattr("weightDataType")] == DataType["BIPOLAR"]
    xnor = bool(inst.get_nodeattr("binaryXnorMode"))
    if xnor:
        mm = xnor_popcount(w)
    elif bipolar:  # FINN: xnorpopcount((a + 1) / 2, (w + 1) / 2)
        mm = xnor_popcount((w + 1) / 2, bipolar_input=True)
    else:
        mm = ExactMatMul(w, lo, hi)
    act = None
    if not inst.get_nodeattr("noActivation"):
        thr = model.get_initializer(node.input[2])
        if thr.shape[0] == mm.w.shape[1] and mm.scale == 1.0 and mm.offset.any():
            folded = fold_offset(thr, mm.offset)
            if folded is not None:  # the XNOR popcount's offset moves into the thresholds
                thr, mm.offset = folded, np.zeros((), mm.dtype)
        odt_bipolar = inst.get_nodeattr("outputDataType") == "BIPOLAR"
        act = (thr, 2 if odt_bipolar else 1, -1 if odt_bipolar else inst.get_nodeattr("ActVal"))

    def finish(acc):
        if act is not None:
            return [threshold_activation(acc, *act).reshape(oshape)]
        return [acc.astype(np.float32, copy=False).reshape(oshape)]

    def run(x):
        return finish(mm(x.reshape(-1, mw)))
    run.mm, run.finish = mm, finish
    return run


@kernel("Thresholding")
def _thresholding(node, model, inst):
    thr = model.get_initializer(node.input[1])
    bias, bipolar = inst.get_nodeattr("ActVal"), inst.get_nodeattr("outputDataType") == "BIPOLAR"

    def run(x):  # FINN: y = count + ActVal, then 2y - 1 for BIPOLAR
        return [threshold_activation(x, thr, 2, 2 * bias - 1) if bipolar else threshold_activation(x, thr, 1, bias)]
    return run


def im2col_nhwc(x, k, stride, dilation, pad=(0, 0, 0, 0), pad_value=0.0):
    """(N, H, W, C) -> (N, OH, OW, kh * kw * C), window elements ordered (kh, kw, C) as qonnx's Im2Col."""
    if any(pad):
        x = np.pad(x, ((0, 0), (pad[0], pad[2]), (pad[1], pad[3]), (0, 0)), constant_values=pad_value)
    n, h, w, c = x.shape
    oh = (h - dilation[0] * (k[0] - 1) - 1) // stride[0] + 1
    ow = (w - dilation[1] * (k[1] - 1) - 1) // stride[1] + 1
    cols = np.empty((n, oh, ow, k[0], k[1], c), x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            r, s = i * dilation[0], j * dilation[1]
            rows = slice(r, r + stride[0] * (oh - 1) + 1, stride[0])
            cols[:, :, :, i, j, :] = x[:, rows, s:s + stride[1] * (ow - 1) + 1:stride[1]]
    return cols.reshape(n, oh, ow, k[0] * k[1] * c)


@kernel("ConvolutionInputGenerator")
def _swg(node, model, inst):
    h, w = inst.get_nodeattr("IFMDim")
    c = inst.get_nodeattr("IFMChannels")
    k, s, d = inst.get_nodeattr("ConvKernelDim"), inst.get_nodeattr("Stride"), inst.get_nodeattr("Dilation")
    oshape = _batch_shape(model, node.output[0])

    def run(x):
        return [im2col_nhwc(x.reshape(-1, h, w, c), k, s, d).reshape(oshape)]
    run.window = (h, w, c, k, s, d)  # lets the consumer take the image instead of the windows (_fused)
    return run


@kernel("FMPadding")
def _fmpadding(node, model, inst):
    p = inst.get_nodeattr("Padding")
    oshape = _batch_shape(model, node.output[0])
    widths = ((0, 0), (p[0], p[2]), (p[1], p[3]), (0, 0))
    return lambda x: [np.pad(x, widths).astype(np.float32, copy=False).reshape(oshape)]


@kernel("Pool")
def _pool(node, model, inst):
    fn, k, ch = inst.get_nodeattr("Function"), inst.get_nodeattr("KernelSize"), inst.get_nodeattr("Channels")
    k2, oshape = k[0] * k[1], _batch_shape(model, node.output[0])
    if fn == "QuantAvgPool":
        ibits, obits = inst.get_input_datatype().bitwidth(), inst.get_output_datatype().bitwidth()
        shift = max(int((2 ** ibits - 1) * k2).bit_length() - obits, 0)
    reduce = {"MaxPool": lambda t: np.max(t, axis=-2), "AccPool": lambda t: np.sum(t, axis=-2),
              "AvgPool": lambda t: np.mean(t, axis=-2),
              "QuantAvgPool": lambda t: np.right_shift(np.sum(t, axis=-2).astype(int), shift)}[fn]
    def run(x):
        return [np.asarray(reduce(x.reshape(x.shape[:-1] + (k2, ch))), np.float32).reshape(oshape)]
    run.function, run.oshape = fn, oshape
    return run


def _fused(window, consumer):
    """A sliding-window node and its only consumer as one kernel on the window node's input: the MVAU as a
    convolution, MaxPool as max_pool2d (both in torch, exact: integer sums below 2^24, maxima). None when the
    pair has no such form."""
    import torch
    import torch.nn.functional as F
    h, w, c, k, s, d = window
    mm = getattr(consumer, "mm", None)
    if mm is not None and mm.dtype == np.float32:
        return lambda x: consumer.finish(mm.conv(x.reshape(-1, h, w, c), k, s, d))
    if getattr(consumer, "function", None) == "MaxPool":
        def pool(x):
            xt = torch.from_numpy(np.ascontiguousarray(x, np.float32).reshape(-1, h, w, c)).permute(0, 3, 1, 2)
            y = F.max_pool2d(xt, tuple(k), tuple(s), dilation=tuple(d))
            return [y.permute(0, 2, 3, 1).contiguous().numpy().reshape(consumer.oshape)]
        return pool
    return None


@kernel("LabelSelect")
def _labelselect(node, model, inst):
    k, oshape = inst.get_nodeattr("K"), _batch_shape(model, node.output[0])
    return lambda x: [_topk_indices(x.reshape(x.shape[0], -1), k).astype(np.float32).reshape(oshape)]


def _topk_indices(v, k):
    """Largest k per row, ties to the lower index (onnxruntime's TopK, which FINN's LabelSelect runs)."""
    return np.argsort(-v.astype(np.float64), axis=1, kind="stable")[:, :k]


@kernel("StreamingDataWidthConverter")
def _dwc(node, model, inst):
    shape = (-1,) + tuple(inst.get_normal_input_shape()[1:])  # FINN's output keeps the input's shape
    return lambda x: [x.reshape(shape)]


@kernel("StreamingFIFO")
def _fifo(node, model, inst):
    return lambda x: [x]


# --- graph-level custom ops (qonnx) and layout ops ---------------------------------------------------

@kernel("MultiThreshold")
def _multithreshold(node, model, inst):
    thr = model.get_initializer(node.input[1])
    scale, bias = inst.get_nodeattr("out_scale"), inst.get_nodeattr("out_bias")
    layout = inst.get_nodeattr("data_layout")

    def run(x):
        lay = layout or {2: "NC", 3: "NWC", 4: "NCHW"}.get(x.ndim)
        cdim = lay.index("C") if lay and "C" in lay else 1
        y = threshold_activation(np.moveaxis(x, cdim, -1), thr, scale, bias)
        return [np.moveaxis(y, -1, cdim).astype(x.dtype, copy=False)]
    return run


@kernel("XnorPopcountMatMul")
def _xnor_matmul(node, model, inst):
    mm = xnor_popcount(model.get_initializer(node.input[1]))
    return lambda x: [mm(x).astype(np.float32)]


@kernel("Im2Col")
def _im2col(node, model, inst):
    pad, pad_value = inst.get_nodeattr("pad_amount"), inst.get_nodeattr("pad_value")
    k, s, d = inst.get_nodeattr("kernel_size"), inst.get_nodeattr("stride"), inst.get_nodeattr("dilations")
    return lambda x: [im2col_nhwc(x, k, s, d, pad, pad_value)]


@kernel("MaxPoolNHWC")
def _maxpool_nhwc(node, model, inst):
    if inst.get_nodeattr("ceil_mode"):
        return None
    k, s, p = inst.get_nodeattr("kernel_shape"), inst.get_nodeattr("strides"), inst.get_nodeattr("pads")

    def run(x):
        c = x.shape[-1]
        cols = im2col_nhwc(x, k, s, (1, 1), p, -np.inf)
        return [cols.reshape(cols.shape[:-1] + (k[0] * k[1], c)).max(axis=-2).astype(x.dtype)]
    return run


@kernel("Transpose")
def _transpose(node, model, inst):
    from qonnx.util.basic import get_by_name
    perm = get_by_name(node.attribute, "perm")
    perm = list(perm.ints) if perm is not None else None
    return lambda x: [np.ascontiguousarray(np.transpose(x, perm))]


@kernel("Reshape", "Flatten")
def _reshape(node, model, inst):
    oshape = _batch_shape(model, node.output[0])
    return lambda x, *_: [x.reshape(oshape)]


@kernel("BipolarQuant", "Quant", "Trunc")
def _elementwise_custom(node, model, inst):
    """qonnx's own execution: these are elementwise, so a batch passes through unchanged."""
    consts = {n: model.get_initializer(n) for n in node.input[1:] if model.get_initializer(n) is not None}

    def run(x, *_):
        ctx = dict(consts)
        ctx[node.input[0]] = x
        inst.execute_node(ctx, model.graph)
        return [ctx[o] for o in node.output]
    return run


# --- standard ONNX nodes: onnxruntime with a free batch dimension ------------------------------------

def _ort_kernel(node, model):
    import onnxruntime as rt
    from onnx import helper
    from qonnx.util.basic import qonnx_make_model
    vis = {v.name: v for v in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)}
    consts = {n: model.get_initializer(n) for n in node.input if n and model.get_initializer(n) is not None}

    def info(name, batched):
        vi = type(vis[name])()
        vi.CopyFrom(vis[name])
        dims = vi.type.tensor_type.shape.dim
        if batched and len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
        return vi
    inputs = [info(n, n not in consts) for n in node.input if n]
    outputs = [info(o, True) for o in node.output if o]
    graph = helper.make_graph([node], "batched_node", inputs, outputs)
    m = qonnx_make_model(graph, opset_imports=list(model.model.opset_import))
    opts = rt.SessionOptions()
    opts.log_severity_level = 3
    sess = rt.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    dyn = [n for n in node.input if n and n not in consts]

    def run(*xs):
        feed = dict(consts)
        feed.update(zip(dyn, xs))
        return sess.run(None, feed)
    return run


# --- the graph -----------------------------------------------------------------------------------------

def _has_constant_nodes(model) -> bool:
    return any(all(model.get_initializer(n) is not None for n in node.input if n) for node in model.graph.node)


class BatchedGraph:
    """A FINN/QONNX model as a list of batched kernels; `run(x)` takes a batch along the first axis."""

    def __init__(self, model, nodes=None, outputs=None, fuse: bool = True):
        """nodes: a leading part of the graph to run (default all); outputs: what it returns (default the
        graph's outputs); fuse: a sliding window and its only consumer run as one kernel (the windows are
        then never materialised; run(keep=...) cannot return them)."""
        if nodes is None and _has_constant_nodes(model):  # e.g. BipolarQuant of weights: computed once
            from qonnx.transformation.fold_constants import FoldConstants
            model = copy.deepcopy(model).transform(FoldConstants(exclude_op_types=[]))
        self.model = model
        self.input = model.graph.input[0].name
        self.outputs = outputs or [o.name for o in model.graph.output]
        self.fallbacks = []
        self.plan = []
        for node in (model.graph.node if nodes is None else nodes):
            fn = self._kernel(node)
            if fn is None:
                fn = self._per_image(node)
                self.fallbacks.append(node.name)
            dyn = [n for n in node.input if n and model.get_initializer(n) is None]
            self.plan.append((node, fn, dyn))
        self.fused = self._fuse() if fuse else []
        self.plan_outputs = {node.name: node.output[0] for node, _, _ in self.plan}
        self._last_use = {n: i for i, (_, fn, dyn) in enumerate(self.plan) if fn is not None for n in dyn}

    def _fuse(self) -> list:
        users = {}
        for i, (_, _, dyn) in enumerate(self.plan):
            for n in dyn:
                users.setdefault(n, []).append(i)
        pairs = []
        for i, (node, fn, dyn) in enumerate(self.plan):
            out = node.output[0]
            window = getattr(fn, "window", None)
            if window is None or out in self.outputs or len(users.get(out, [])) != 1:
                continue
            j = users[out][0]
            fused = _fused(window, self.plan[j][1])
            if fused is not None:
                self.plan[i] = (node, None, dyn)  # never run: its consumer reads its input
                self.plan[j] = (self.plan[j][0], fused, dyn)
                pairs.append((node.name, self.plan[j][0].name))
        return pairs

    def _kernel(self, node):
        from qonnx.custom_op.registry import getCustomOp
        op, custom = base_op(node), node.domain not in ("", "ai.onnx")
        if op in KERNELS:
            return KERNELS[op](node, self.model, getCustomOp(node) if custom else None)
        if not custom:
            try:
                return _ort_kernel(node, self.model)
            except KeyError:  # a tensor without shape information: FINN's own execution knows it
                return None
        return None

    def _per_image(self, node):
        """FINN's own execution of a node it has no batched kernel for, one image at a time."""
        from .nodes import node_executor, python_copy
        py = python_copy(self.model)
        run_one = node_executor(py, next(n for n in py.graph.node if n.name == node.name))
        return lambda x, *_: [np.concatenate([run_one(x[i:i + 1]) for i in range(len(x))])]

    def run(self, x: np.ndarray, keep=()) -> dict:
        """Graph outputs (and the tensors named in keep, or every tensor for keep='all') for the batch x."""
        ctx = {self.input: x}
        keep_all = keep == "all"
        if self.fused and (keep_all or set(keep) & {self.plan_outputs[a] for a, _ in self.fused}):
            raise ValueError(f"{[a for a, _ in self.fused]} run fused: build BatchedGraph(fuse=False) to keep "
                             f"their outputs")
        keep = set(self.outputs) | (set() if keep_all else set(keep))
        for i, (node, fn, dyn) in enumerate(self.plan):
            if fn is None:
                continue
            outs = fn(*[ctx[n] for n in dyn])
            ctx.update(zip(node.output, outs))
            if not keep_all:
                for n in dyn:
                    if self._last_use.get(n) == i and n not in keep:
                        del ctx[n]
        return ctx

    def peak_bytes_per_image(self) -> int:
        """The largest set of live tensors (float32 equivalents) while running one image: sizes a batch."""
        live, peak = {}, 0
        size = lambda n: 4 * int(np.prod(self.model.get_tensor_shape(n)))  # noqa: E731
        live[self.input] = size(self.input)
        for i, (node, fn, dyn) in enumerate(self.plan):
            if fn is None:
                continue
            for o in node.output:
                live[o] = size(o) * (2 if node.op_type.startswith(("MVAU", "XnorPopcount")) else 1)
            peak = max(peak, sum(live.values()))
            for n in dyn:
                if self._last_use.get(n) == i:
                    live.pop(n, None)
        return peak
