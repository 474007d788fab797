"""Running intermediate FINN models on real images: the batched exact kernels (batched.py) by default,
FINN's own Python execution (nodes.py) as the reference.

A stage's model is either a whole graph (before the dataflow partition) or a dataflow child with its parent.
"""
from __future__ import annotations

import numpy as np

from .nodes import FPGADATAFLOW, node_executor, python_copy  # noqa: F401  (re-exported)


def _score_tensor(model) -> str | None:
    """The input of the top-1 node: integer class scores once streamlined."""
    for node in model.graph.node:
        if node.op_type.startswith(("TopK", "LabelSelect")):
            return node.input[0]
    return None


class StageRunner:
    """Executes one stage's model on batches of images; returns (top1, scores-or-logits) per image.

    batched (default): the batched exact kernels of batched.py; finn: FINN's own execute_onnx, image by
    image (the reference the batched kernels are tested against)."""

    def __init__(self, model, parent=None, engine: str = "batched", batch_size: int | None = None):
        self.model, self.parent, self.engine = model, parent, engine
        self.iname = model.graph.input[0].name
        self.oname = model.graph.output[0].name
        self.score = _score_tensor(model)
        self.pre = None
        if parent is not None:
            sdp = [n for n in parent.graph.node if n.op_type == "StreamingDataflowPartition"]
            idx = list(parent.graph.node).index(sdp[0])
            if idx != len(parent.graph.node) - 1:
                raise RuntimeError("nodes after the dataflow partition are not supported: the accelerator "
                                   "must end in the top-1 layer")
            self.pre = list(parent.graph.node)[:idx]
            self.sdp_in = sdp[0].input[0]
        if engine == "batched":
            from .batched import BatchedGraph
            self.graph = BatchedGraph(model)
            self.pre_graph = BatchedGraph(parent, self.pre, [self.sdp_in]) if self.pre else None
            self.batch_size = batch_size or default_batch_size(self.graph)
        else:
            from finn.core.onnx_exec import execute_onnx
            self._exec = execute_onnx
            self.py = python_copy(model)
            self.batch_size = 1

    def input_shape(self):
        m = self.parent if self.parent is not None else self.model
        return tuple(m.get_tensor_shape(m.graph.input[0].name))

    def _pre(self, x: np.ndarray) -> np.ndarray:
        if not self.pre:
            return x
        if self.engine == "batched":
            return self.pre_graph.run(x)[self.sdp_in]
        ctx = self._exec(self.parent, {self.parent.graph.input[0].name: x}, return_full_exec_context=True,
                         start_node=self.pre[0], end_node=self.pre[-1])
        return ctx[self.sdp_in]

    def to_graph_layout(self, x_nchw: np.ndarray) -> np.ndarray:
        """(N, C, H, W) pixels as the graph's input takes them (NHWC after FINN's layout changes)."""
        x = x_nchw.astype(np.float32)
        shape = self.input_shape()[1:]
        return x if x.shape[1:] == shape else x.transpose(0, 2, 3, 1).reshape((len(x),) + shape)

    def run_batch(self, x_nchw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x_nchw: (N, C, H, W) float pixels 0..255 -> top-1 (N,) and scores (N, classes)."""
        x = self._pre(self.to_graph_layout(x_nchw))
        if self.engine == "batched":
            ctx = self.graph.run(x, keep=[self.score] if self.score else ())
        else:
            ctx = self._exec(self.py, {self.iname: x}, return_full_exec_context=self.score is not None)
        out = np.asarray(ctx[self.oname])
        scores = np.asarray(ctx[self.score] if self.score else out, dtype=np.float64).reshape(len(x), -1)
        top1 = out.reshape(len(x), -1)[:, 0].astype(np.int64) if self.score else scores.argmax(1)
        return top1, scores

    def run(self, images: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
        tops, scores = [], []
        for i in range(0, len(images), self.batch_size):
            t, s = self.run_batch(images[i:i + self.batch_size])
            tops.append(t)
            scores.append(s)
            if progress:
                progress(len(t))
        return np.concatenate(tops), np.concatenate(scores)


# Working memory a batch may take by default (the largest live tensors of one image times the batch).
BATCH_MEMORY = 512 * 2 ** 20


def default_batch_size(graph, budget: int = BATCH_MEMORY) -> int:
    return int(max(1, min(1000, budget // max(graph.peak_bytes_per_image(), 1))))
