"""Small pattern-matching helpers shared by the fusion rules."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from optimizer.graph.values import constant_array, constant_tensor
from optimizer.pipeline import Decline

__all__ = ["MS_DOMAIN", "as_parameter", "attribute", "broadcasts_up", "chain_head", "default_opset", "is_default_domain", "is_op", "other_operand", "producer_of", "reduce_axes", "scalar", "single_use", "sole_consumer"]

MS_DOMAIN = "com.microsoft"
"""onnxruntime's contrib-op domain (O3 fusions)."""


def is_default_domain(node: ir.Node | str) -> bool:
    """Whether a node (or a domain name) is in the default ONNX domain ("" or its alias "ai.onnx")."""
    domain = node if isinstance(node, str) else node.domain
    return domain in ("", "ai.onnx")


def is_op(node: ir.Node | None, *op_types: str) -> bool:
    """Whether `node` is a default-domain node of one of `op_types`."""
    return node is not None and node.op_type in op_types and is_default_domain(node)


def default_opset(model: ir.Model) -> int:
    """The model's default-domain opset version (imported as "" or "ai.onnx"; 1 when absent)."""
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))


def chain_head(node: ir.Node, *ops: str, absent: str | None = None, shared: str | None = None) -> ir.Node:
    """The node of one of `ops` producing `node`'s first input and read by `node` alone (the first
    link of a chain `node` ends); declines otherwise, with the reason `absent` or `shared` when given."""
    first = next((found for op in ops if (found := producer_of(node.inputs[0], op)) is not None), None)
    if first is None:
        names = ops[0] if len(ops) == 1 else f"{', '.join(ops[:-1])} or {ops[-1]}"
        raise Decline(absent or f"input is not a {names}")
    if sole_consumer(first.outputs[0]) is None:
        raise Decline(shared or f"first {first.op_type} output is used elsewhere")
    return first


def producer_of(value: ir.Value | None, op: str) -> ir.Node | None:
    """The default-domain `op` node producing `value`, or None."""
    node = value.producer() if value is not None else None
    return node if is_op(node, op) else None


def single_use(value: ir.Value) -> bool:
    """`value` has exactly one reader and is not a graph output: a fusion may absorb it."""
    return len(value.uses()) == 1 and not value.is_graph_output()


def attribute(node: ir.Node, name: str, default=None):
    """The value of a node's attribute, or `default` when absent or a function-attribute reference."""
    attr = node.attributes.get(name)
    return default if attr is None or attr.is_ref() else attr.value


def sole_consumer(value: ir.Value, op: str | None = None) -> ir.Node | None:
    """The one node reading `value` (of type `op` when given); None if it has other readers or is a graph output."""
    if not single_use(value):
        return None
    node = value.uses()[0].node
    if op is not None and not is_op(node, op):
        return None
    return node


def other_operand(node: ir.Node, value: ir.Value) -> ir.Value | None:
    """The operand of a binary node that is not `value` (None when `value` is not an operand)."""
    a, b = node.inputs[0], node.inputs[1]
    return b if a is value else a if b is value else None


def scalar(value: ir.Value | None) -> float | None:
    """A one-element constant as a float, else None."""
    array = constant_array(value)
    if array is None or array.size != 1:
        return None
    return float(array.reshape(-1)[0])


_BROADCASTING_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Min", "Max"})


def broadcasts_up(nodes: list[ir.Node], x: ir.Value) -> bool:
    """Whether a constant operand of the broadcasting elementwise ops among `nodes` (Add, Sub, Mul, Div,
    Pow, Min, Max) has more dims than `x` (or any dims, when x's rank is unknown): then the pattern
    computes x broadcast to a higher rank, e.g. `Mul(x[4], 0.5[1, 1])` is [1, 4], and an op of x's
    shape fused in its place would change the output's shape."""
    rank = None if x.shape is None else len(x.shape)
    for node in nodes:
        if not is_op(node, *_BROADCASTING_OPS):
            continue
        for value in node.inputs:
            tensor = constant_tensor(value)
            if tensor is not None and len(tensor.shape) > 0 and (rank is None or len(tensor.shape) > rank):
                return True
    return False


def reduce_axes(node: ir.Node) -> list[int] | None:
    """The axes of a keepdims reduction (attribute before opset 18, input from 18); None when unknown."""
    attr = node.attributes.get("axes")
    if attr is not None and not attr.is_ref():
        axes = list(attr.as_ints())
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        array = constant_array(node.inputs[1])
        if array is None:
            return None
        axes = [int(a) for a in array.reshape(-1)]
    else:
        return None
    keepdims = node.attributes.get("keepdims")
    if keepdims is not None and not keepdims.is_ref() and keepdims.as_int() == 0:
        return None
    return axes


def as_parameter(array: np.ndarray | None, dims: tuple[int, ...]) -> np.ndarray | None:
    """`array` as a tensor of exactly the normalized dims, when it broadcasts to them; else None."""
    if array is None:
        return None
    shape = array.shape
    while len(shape) > len(dims) and shape[0] == 1:
        shape = shape[1:]
    try:
        if np.broadcast_shapes(shape, dims) != dims:
            return None
    except ValueError:
        return None
    return np.ascontiguousarray(np.broadcast_to(array.reshape(shape), dims))
