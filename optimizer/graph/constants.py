"""Rewriting what a constant holds (an initializer, or a Constant node's output), for the pruning passes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

__all__ = ["write_constant"]


def write_constant(value: ir.Value, array: np.ndarray) -> None:
    """Make the constant `value` hold `array` (its name kept, its shape updated); every reader sees it.

    `value` must be constant in the sense of `optimizer.graph.values.constant_tensor`: an initializer that is
    not a graph input, or the output of a Constant node (whose attribute becomes a `value` tensor).
    """
    tensor = ir.tensor(np.ascontiguousarray(array), name=value.name)
    producer = value.producer()
    if producer is not None:
        producer.attributes.clear()
        producer.attributes["value"] = ir.AttrTensor("value", tensor)
        if value.const_value is not None:
            value.const_value = tensor
    else:
        value.const_value = tensor
    value.shape = ir.Shape(array.shape)
