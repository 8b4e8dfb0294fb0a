"""Reading what is statically known about values: constant contents and static shapes.

A value is constant when it is produced by a Constant node or is an initializer that is not also
a graph input (an initializer-input is an overridable default, never folded across).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

__all__ = ["constant_tensor", "constant_array", "static_shape"]


def _constant_node_tensor(node: ir.Node) -> ir.TensorProtocol | None:
    if len(node.attributes) != 1:
        return None
    attr = next(iter(node.attributes.values()))
    if attr.is_ref():
        return None
    if attr.name == "value" and attr.type == ir.AttributeType.TENSOR:
        return attr.as_tensor()
    scalar_dtypes = {"value_float": np.float32, "value_int": np.int64, "value_floats": np.float32, "value_ints": np.int64}
    if attr.name in scalar_dtypes:
        dtype = scalar_dtypes[attr.name]
        return ir.tensor(np.array(attr.value, dtype=dtype))
    return None


def constant_tensor(value: ir.Value | None) -> ir.TensorProtocol | None:
    """The tensor a value always holds, or None when it is not a compile-time constant."""
    if value is None:
        return None
    producer = value.producer()
    if producer is not None:
        if producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
            return _constant_node_tensor(producer)
        return None
    if value.is_initializer() and not value.is_graph_input():
        return value.const_value
    return None


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """`constant_tensor` as a numpy array (None when not constant or not convertible)."""
    tensor = constant_tensor(value)
    if tensor is None:
        return None
    try:
        return tensor.numpy()
    except Exception:  # noqa: BLE001 - exotic dtypes
        return None


def static_shape(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's shape when every dim is a known integer, else None."""
    if value is None or value.shape is None:
        return None
    dims = []
    for dim in value.shape:
        if not isinstance(dim, int):
            return None
        dims.append(dim)
    return tuple(dims)

