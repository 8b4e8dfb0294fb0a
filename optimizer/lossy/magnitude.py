"""Magnitude pruning (lossy, opt-in): zero the smallest weights of Conv, Gemm and MatMul.

Per weight tensor, the `floor(ratio * n)` entries of smallest absolute value become zero (ties
broken by position, so the count is exact and the result deterministic). Only float constant
weights of at least `MIN_ELEMENTS` entries are touched: Conv's W, and the constant matrix operands
of Gemm and MatMul; biases never. A tensor read by several layers is pruned once.

Unstructured zeros make the file compress smaller (see `compressed_weight_bytes`) but dense kernels
run no faster: the shapes and the work stay the same. The outputs change: hold them to an error budget.
"""

from __future__ import annotations

import logging
import math
import numbers
import zlib

import numpy as np
import onnx_ir as ir

from optimizer.graph.constants import write_constant
from optimizer.graph.values import constant_array

__all__ = ["MIN_ELEMENTS", "compressed_weight_bytes", "prune_weights_by_magnitude"]

logger = logging.getLogger(__name__)

MIN_ELEMENTS = 256
"""Tensors with fewer entries are left alone (too small to matter)."""

_WEIGHT_INPUTS = {"Conv": (1,), "Gemm": (0, 1), "MatMul": (0, 1)}


def _weights(model: ir.Model) -> list[ir.Value]:
    """The distinct constant weight values of Conv/Gemm/MatMul nodes, in graph order."""
    found: dict[int, ir.Value] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.domain not in ("", "ai.onnx"):
            continue
        for index in _WEIGHT_INPUTS.get(node.op_type, ()):
            value = node.inputs[index] if index < len(node.inputs) else None
            if value is not None and id(value) not in found:
                found[id(value)] = value
    return list(found.values())


def prune_weights_by_magnitude(model: ir.Model, ratio: float) -> dict[str, int]:
    """Zero the `ratio` fraction of smallest-magnitude entries of each weight tensor, in place.

    Returns `tensors_pruned`, `elements` (entries in the pruned tensors), `zeros_before` and
    `zeros_after` (zero entries in those tensors). Raises ValueError unless 0 < ratio < 1.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 < ratio < 1.0:
        raise ValueError(f"pruning ratio must be a number strictly between 0 and 1, got {ratio!r}")
    stats = {"tensors_pruned": 0, "elements": 0, "zeros_before": 0, "zeros_after": 0}
    for value in _weights(model):
        array = constant_array(value)
        if array is None or array.dtype.kind != "f" or array.size < MIN_ELEMENTS:
            continue
        count = math.floor(round(ratio * array.size, 9))  # round: 0.29 * 100 is 28.999... in binary
        flat = array.reshape(-1).copy()
        flat[np.argsort(np.abs(flat), kind="stable")[:count]] = 0
        stats["tensors_pruned"] += 1
        stats["elements"] += array.size
        stats["zeros_before"] += int(np.count_nonzero(array == 0))
        stats["zeros_after"] += int(np.count_nonzero(flat == 0))
        write_constant(value, flat.reshape(array.shape))
    logger.info("magnitude pruning at %.2f: %s", ratio, stats)
    return stats


def compressed_weight_bytes(model: ir.Model) -> int:
    """Bytes of every initializer (all graphs) after zlib compression at level 6, summed."""
    total = 0
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                total += len(zlib.compress(value.const_value.tobytes(), 6))
    return total
