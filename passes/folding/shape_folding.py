"""Shape-subgraph folding: shape queries whose answer is static become constants.

`Shape(x)` with every dim of x known  =>  constant;  `Size(x)` likewise;
`Gather(Shape(x), i)` / `Slice(Shape(x), ...)` where just the selected dims are known  =>  constant.
Symbolic (dynamic) dims are never baked in: such a query stays, so dynamic dims stay dynamic.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx_ir as ir

from optimizer.pipeline import NEEDS_SHAPES, OptimizationPass
from optimizer.graph.editing import replace_with_constant
from optimizer.graph.matching import is_op, is_default_domain
from optimizer.graph.values import constant_array

__all__ = ["FoldShapesPass"]


def _dims(value: ir.Value) -> list[int | None] | None:
    """The value's dims, None for each unknown one; None when the rank is unknown."""
    if value.shape is None:
        return None
    return [d if isinstance(d, int) else None for d in value.shape]


def _shape_query(node: ir.Node) -> list[int | None] | None:
    """The (possibly partial) result of a Shape node, honouring its start/end attributes."""
    dims = _dims(node.inputs[0])
    if dims is None:
        return None
    rank = len(dims)
    start_attr, end_attr = node.attributes.get("start"), node.attributes.get("end")
    start = start_attr.as_int() if start_attr is not None and not start_attr.is_ref() else 0
    end = end_attr.as_int() if end_attr is not None and not end_attr.is_ref() else rank
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return dims[start:end]


def _select(dims: list[int | None], node: ir.Node) -> np.ndarray | None:
    """What a Gather or Slice over a shape vector picks, when all the picked dims are known."""
    try:
        positions = np.arange(len(dims))
        if node.op_type == "Gather":
            indices = constant_array(node.inputs[1])
            axis = node.attributes.get("axis")
            if indices is None or (axis is not None and axis.as_int() != 0):
                return None
            picked = positions[indices.astype(np.int64)]
        else:  # Slice (opset >= 10: inputs carry starts/ends/axes/steps)
            arrays = [constant_array(v) if v is not None else None for v in node.inputs[1:5]]
            if len(node.inputs) < 3 or arrays[0] is None or arrays[1] is None:
                return None
            if any(v is not None and a is None for v, a in zip(node.inputs[1:5], arrays)):
                return None
            if arrays[2] is not None and int(arrays[2].reshape(-1)[0]) not in (0, -1):
                return None
            step = int(arrays[3].reshape(-1)[0]) if len(arrays) > 3 and arrays[3] is not None else 1
            picked = positions[slice(int(arrays[0].reshape(-1)[0]), int(arrays[1].reshape(-1)[0]), step)]
    except (IndexError, ValueError, TypeError):
        return None
    values = [dims[int(i)] for i in np.asarray(picked).reshape(-1)]
    if any(v is None for v in values):
        return None
    return np.array(values, dtype=np.int64).reshape(np.asarray(picked).shape)


class FoldShapesPass(OptimizationPass, name="fold-shapes", level="O1", preconditions={NEEDS_SHAPES}):
    """Replace Shape/Size (and Gather/Slice of a Shape) by constants where those dims are static."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        opset = model.opset_imports.get("", 1)
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            if not is_default_domain(node) or node.graph is None:
                continue
            result = None
            if node.op_type == "Shape":
                dims = _shape_query(node)
                if dims is not None and all(d is not None for d in dims):
                    result = np.array(dims, dtype=np.int64)
            elif node.op_type == "Size":
                dims = _dims(node.inputs[0])
                if dims is not None and all(d is not None for d in dims):
                    result = np.array(int(np.prod(dims)), dtype=np.int64)
            elif node.op_type in ("Gather", "Slice") and (node.op_type == "Gather" or opset >= 10):
                producer = node.inputs[0].producer() if node.inputs and node.inputs[0] is not None else None
                if is_op(producer, "Shape"):
                    dims = _shape_query(producer)
                    if dims is not None:
                        result = _select(dims, node)
            if result is None:
                continue
            replace_with_constant(node.outputs[0], result, anchor=node)
            node.graph.remove(node, safe=True)
            counts[node.op_type] += 1
        return counts
