"""Constant folding: a node whose inputs are all constants becomes an initializer.

`y = Op(c1, c2)  =>  y = <evaluated tensor>` (onnxruntime evaluates, onnx's reference evaluator as
fallback). Never folds across a graph input (initializer-inputs included), random ops, ops with
subgraphs, custom domains, or Quantize/DequantizeLinear (the runtime needs QDQ pairs to run int8
kernels). A fold whose outputs exceed `fold_max_bytes` and grow past `fold_max_growth` times its
inputs is refused, so models never balloon (Expand, Tile, ConstantOfShape, Range...).
"""

from __future__ import annotations

import collections
import logging

import numpy as np
import onnx_ir as ir

from optimizer.pipeline import OptimizationPass
from passes.folding.evaluator import evaluate_node
from optimizer.graph.editing import replace_with_constant
from optimizer.graph.matching import is_default_domain
from optimizer.graph.values import constant_array, constant_tensor

__all__ = ["FoldConstantsPass"]

logger = logging.getLogger(__name__)

NEVER_FOLDED = frozenset(
    {
        "Constant",
        "RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli",
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
        "If", "Loop", "Scan",
        "SequenceConstruct", "SequenceEmpty", "SequenceInsert", "SequenceAt", "SequenceErase",
        "SequenceLength", "SplitToSequence", "ConcatFromSequence", "SequenceMap",
        "Optional", "OptionalGetElement", "OptionalHasElement",
    }
)


BROADCASTING = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "BitShift", "And", "Or", "Xor", "Equal", "Greater", "GreaterOrEqual",
    "Less", "LessOrEqual", "Max", "Min", "Mean", "Sum", "Where", "PRelu", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
})
"""Ops whose output is the broadcast of their inputs' shapes: `[40000, 1] + [1, 40000]` is 1.6e9 elements."""


def _static_elements(node: ir.Node) -> int | None:
    """The outputs' element count when shape inference made every output's shape static."""
    total = 0
    for output in node.outputs:
        shape = output.shape
        if shape is None or not all(isinstance(d, int) for d in shape):
            return None
        total += int(np.prod([int(d) for d in shape], dtype=np.int64))
    return total


def _estimated_output_elements(node: ir.Node, arrays: list[np.ndarray | None]) -> int | None:
    """Output element count computed from shapes before the node is evaluated (None: unknown).

    Inferred static output shapes first; else the broadcast of the inputs for elementwise ops, the
    batch dims times M x N for MatMul, indices times depth for OneHot, and the expanding ops' own
    arguments (ConstantOfShape, Expand, Tile, Range, Resize sizes or scales)."""
    static = _static_elements(node)
    if static is not None:
        return static
    try:
        op = node.op_type
        if op in BROADCASTING:
            return int(np.prod(np.broadcast_shapes(*(a.shape for a in arrays if a is not None)), dtype=np.int64))
        if op == "MatMul":
            a, b = arrays[0].shape, arrays[1].shape
            if len(a) >= 2 and len(b) >= 2:
                return int(np.prod(np.broadcast_shapes(a[:-2], b[:-2]), dtype=np.int64)) * a[-2] * b[-1]
        if op == "OneHot":
            return int(arrays[0].size * int(np.asarray(arrays[1]).reshape(-1)[0]))
        if op == "Resize" and len(arrays) > 3 and arrays[3] is not None and arrays[3].size:
            return int(np.prod(arrays[3], dtype=np.int64))
        if op == "Resize" and len(arrays) > 2 and arrays[2] is not None and arrays[2].size:
            return int(np.prod([np.floor(d * s) for d, s in zip(arrays[0].shape, arrays[2])]))
        if op == "ConstantOfShape":
            return int(np.prod(arrays[0]))
        if op == "Expand":
            return int(np.prod(np.broadcast_shapes(arrays[0].shape, tuple(int(d) for d in arrays[1]))))
        if op == "Tile":
            return int(arrays[0].size * np.prod(arrays[1]))
        if op == "Range":
            start, limit, delta = (float(a) for a in arrays[:3])
            return max(int(np.ceil((limit - start) / delta)), 0)
    except Exception:  # noqa: BLE001 - malformed inputs: let the evaluator decide
        return None
    return None


EXPANDING = frozenset({"ConstantOfShape", "Expand", "Tile", "Range"})


def _output_itemsize(node: ir.Node, arrays: list[np.ndarray | None]) -> int:
    """Bytes per output element for the estimate: 8 for the expanding ops (their guard since the start), else the
    inferred output dtype's, else the widest input's."""
    if node.op_type in EXPANDING:
        return 8
    dtype = node.outputs[0].dtype if node.outputs else None
    if dtype is not None:
        try:
            return max(1, int(dtype.itemsize))
        except (AttributeError, TypeError, ValueError):
            pass
    return max((a.itemsize for a in arrays if a is not None), default=8)


class FoldConstantsPass(OptimizationPass, name="fold-constants", level="O1"):
    """Evaluate nodes whose inputs are all constants, with a size guard against model bloat."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        opsets = dict(model.opset_imports)
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            if node.graph is None or not self._foldable(node):
                continue
            arrays = [None if v is None else constant_array(v) for v in node.inputs]
            if any(a is None and v is not None for a, v in zip(arrays, node.inputs)):
                continue
            input_bytes = sum(a.nbytes for a in arrays if a is not None)
            estimate = _estimated_output_elements(node, arrays)
            itemsize = _output_itemsize(node, arrays)
            if estimate is not None and self._too_big(estimate * itemsize, input_bytes):
                self.decline("output too large")
                continue
            results = evaluate_node(node, arrays, opsets)
            if results is None:
                self.decline("could not evaluate")
                continue
            if self._too_big(sum(r.nbytes for r in results), input_bytes):
                self.decline("output too large")
                continue
            for output, array in zip(node.outputs, results):
                if output.uses() or output.is_graph_output():
                    replace_with_constant(output, array, anchor=node)
            node.graph.remove(node, safe=True)
            counts[node.op_type] += 1
        return counts

    def _foldable(self, node: ir.Node) -> bool:
        if not is_default_domain(node) or node.op_type in NEVER_FOLDED:
            return False
        if not any(v is not None for v in node.inputs):
            return False
        if any(a.is_ref() or a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
            return False
        return all(v is None or constant_tensor(v) is not None for v in node.inputs)

    def _too_big(self, output_bytes: int, input_bytes: int) -> bool:
        return output_bytes > self.options.fold_max_bytes and output_bytes > self.options.fold_max_growth * max(input_bytes, 1)
