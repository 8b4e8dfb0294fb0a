"""No-op elimination: nodes whose output always equals their (first) input.

`y = Op(x)  =>  consumers of y read x`, for: Identity; Dropout at inference; Cast to the same type;
Reshape/Expand/Flatten to the same static shape; Transpose with the identity permutation; Pad of
zeros; Slice covering everything; Concat of one input; Split into one output; Mul/Div by one and
Add/Sub of zero where broadcasting leaves the shape unchanged. Declines (and counts why) when the
output is a graph output that cannot be renamed, or when a shape or constant it needs is unknown.
"""

from __future__ import annotations

import collections
import logging

import numpy as np
import onnx_ir as ir

from optimizer.pipeline import NEEDS_SHAPES, OptimizationPass
from optimizer.graph.editing import bypass_value
from optimizer.graph.matching import default_opset, is_default_domain
from optimizer.graph.values import constant_array, static_shape

__all__ = ["EliminateNoOpsPass"]

logger = logging.getLogger(__name__)

_INT64_MAX = np.iinfo(np.int64).max


def _attr_ints(node: ir.Node, name: str) -> list[int] | None:
    attr = node.attributes.get(name)
    if attr is None or attr.is_ref():
        return None
    return list(attr.as_ints())


def _attr_int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    if attr is None or attr.is_ref():
        return default
    return attr.as_int()


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _is_dropout_noop(node: ir.Node, opset: int) -> bool:
    if len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output()):
        return False
    if opset < 7:
        return _attr_int(node, "is_test", 0) == 1
    training = _input(node, 2)
    if training is None:
        return True
    value = constant_array(training)
    return value is not None and not bool(value)


def _is_cast_noop(node: ir.Node) -> bool:
    source = node.inputs[0].dtype
    target = _attr_int(node, "to", -1)
    return source is not None and target >= 0 and source.value == target


def _reshape_target(shape: tuple[int, ...], requested: np.ndarray, allowzero: int) -> tuple[int, ...] | None:
    dims = [int(d) for d in requested.reshape(-1)]
    out = []
    for i, d in enumerate(dims):
        if d == 0 and not allowzero:
            if i >= len(shape):
                return None
            out.append(shape[i])
        else:
            out.append(d)
    if out.count(-1) > 1:
        return None
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        total = int(np.prod(shape))
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    return tuple(out)


def _is_reshape_noop(node: ir.Node) -> bool:
    shape = static_shape(node.inputs[0])
    requested = constant_array(_input(node, 1))
    if shape is None or requested is None:
        return False
    return _reshape_target(shape, requested, _attr_int(node, "allowzero", 0)) == shape


def _is_expand_noop(node: ir.Node) -> bool:
    shape = static_shape(node.inputs[0])
    requested = constant_array(_input(node, 1))
    if shape is None or requested is None:
        return False
    try:
        return tuple(np.broadcast_shapes(shape, tuple(int(d) for d in requested.reshape(-1)))) == shape
    except ValueError:
        return False


def _is_flatten_noop(node: ir.Node) -> bool:
    shape = static_shape(node.inputs[0])
    if shape is None:
        return False
    axis = _attr_int(node, "axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    flat = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    return flat == shape


def _is_transpose_noop(node: ir.Node) -> bool:
    perm = _attr_ints(node, "perm")
    if perm is None:
        shape = node.inputs[0].shape
        return shape is not None and len(shape) <= 1
    return perm == list(range(len(perm)))


def _is_pad_noop(node: ir.Node, opset: int) -> bool:
    pads = _attr_ints(node, "pads") if opset < 11 else constant_array(_input(node, 1))
    if opset >= 11 and _input(node, 1) is None:
        return False
    return pads is not None and not np.any(np.asarray(pads))


def _is_slice_noop(node: ir.Node, opset: int) -> bool:
    shape = static_shape(node.inputs[0])
    if shape is None:
        return False
    if opset < 10:
        starts, ends, axes, steps = _attr_ints(node, "starts"), _attr_ints(node, "ends"), _attr_ints(node, "axes"), None
    else:
        arrays = [constant_array(_input(node, i)) if _input(node, i) is not None else None for i in range(1, 5)]
        if arrays[0] is None or arrays[1] is None:
            return False
        if (_input(node, 3) is not None and arrays[2] is None) or (_input(node, 4) is not None and arrays[3] is None):
            return False
        starts, ends, axes, steps = (None if a is None else [int(v) for v in a.reshape(-1)] for a in arrays)
    if starts is None or ends is None:
        return False
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        dim = shape[axis]
        if step != 1:
            return False
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if max(0, start) != 0 or min(end, dim) < dim:
            return False
    return True


def _neutral_operand(node: ir.Node) -> int | None:
    """Index of the operand that passes through unchanged in x*1, x/1, x+0, x-0; else None."""
    op = node.op_type
    candidates = {"Mul": (0, 1), "Add": (0, 1), "Sub": (0,), "Div": (0,)}[op]
    neutral = 1 if op in ("Mul", "Div") else 0
    for keep in candidates:
        other = constant_array(node.inputs[1 - keep])
        kept = node.inputs[keep]
        if other is None or kept.shape is None or kept.dtype is None:
            continue
        if other.dtype.kind not in "fiub" or other.size == 0 or not np.all(other == neutral):
            continue
        if other.ndim > len(kept.shape) or any(d != 1 for d in other.shape):
            if static_shape(kept) is None:
                continue
            try:
                if tuple(np.broadcast_shapes(static_shape(kept), other.shape)) != static_shape(kept):
                    continue
            except ValueError:
                continue
        if kept.dtype != ir.DataType.from_numpy(other.dtype):
            continue
        return keep
    return None


class EliminateNoOpsPass(OptimizationPass, name="eliminate-no-ops", level="O1", preconditions={NEEDS_SHAPES}):
    """Remove Identity and ops that provably pass their input through (Cast to same type, identity Transpose, x*1, ...)."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        opset = default_opset(model)
        counts: collections.Counter[str] = collections.Counter()
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            if not is_default_domain(node) or not node.inputs or node.inputs[0] is None:
                continue
            keep = self._passthrough_input(node, opset)
            if keep is None:
                continue
            output, kept = node.outputs[0], node.inputs[keep]
            if output.dtype is not None and kept.dtype is not None and output.dtype != kept.dtype:
                continue
            if not bypass_value(output, kept):
                logger.debug("%s: kept %s %r: its output is a graph output that cannot be renamed", self.name, node.op_type, node.name)
                continue
            node.graph.remove(node, safe=True)
            counts[node.op_type] += 1
        return counts

    def _passthrough_input(self, node: ir.Node, opset: int) -> int | None:
        op = node.op_type
        if op == "Identity":
            return 0
        checks = {
            "Dropout": lambda: _is_dropout_noop(node, opset),
            "Cast": lambda: _is_cast_noop(node),
            "Reshape": lambda: _is_reshape_noop(node),
            "Expand": lambda: _is_expand_noop(node),
            "Flatten": lambda: _is_flatten_noop(node),
            "Transpose": lambda: _is_transpose_noop(node),
            "Pad": lambda: _is_pad_noop(node, opset),
            "Slice": lambda: _is_slice_noop(node, opset),
            "Concat": lambda: len(node.inputs) == 1,
            "Split": lambda: len(node.outputs) == 1,
        }
        if op in checks:
            return 0 if checks[op]() else None
        if op in ("Mul", "Add", "Sub", "Div") and len(node.inputs) == 2 and None not in node.inputs:
            return _neutral_operand(node)
        return None
