"""Zero-channel removal: output channels that are provably zero leave the producer and its consumers.

A producer channel is zero when its weights (and bias, if any) are all zero:

- `Conv(x, W, B)` (group 1): channel `c` when `W[c]` and `B[c]` are zero;
- `Gemm(a, B, C)`: column `n` when column `n` of `op(B)` is zero and `beta * C` is zero at `n`;
- `MatMul(a, W)` with a constant 2-D `W`: column `n` when `W[:, n]` is zero.

Removing channel `c` drops it from the producer's weight and bias and drops input channel `c` from
every consumer's weight, which only ever multiplied zeros:

    Conv(Relu(Conv(x, W1, B1)), W2)  =>  Conv(Relu(Conv(x, W1[k], B1[k])), W2[:, k])   (k: kept channels)
    MatMul(MatMul(a, W1), W2)        =>  MatMul(MatMul(a, W1[:, k]), W2[k])

Between producer and consumers may sit unary elementwise ops that map zero to zero (Relu,
LeakyRelu, Clip with 0 in [min, max], ...); their output shapes shrink too. Consumers are Conv
(group 1) after a Conv, Gemm (transA 0) or MatMul (constant 2-D weight) after a Gemm or MatMul.
The pass declines, changing nothing and counting why, when a weight or bias is not a private float
constant, a value on the way is a graph output or has another reader, a Conv is grouped, or every
channel is zero. The model's interface never changes. Exact, except that inputs holding inf or NaN
would have made the removed channels NaN.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np
import onnx_ir as ir

from optimizer.pipeline import Decline, OptimizationPass
from optimizer.graph.matching import attribute, is_default_domain, is_op
from optimizer.graph.constants import write_constant
from optimizer.graph.values import constant_array

__all__ = ["PruneZeroChannelsPass", "ZERO_PRESERVING_OPS"]

ZERO_PRESERVING_OPS = frozenset(
    {"Identity", "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "HardSwish", "Tanh", "Softsign", "Neg", "Abs", "Clip"}
)
"""Unary elementwise ops with f(0) == 0 that may sit between a producer and its consumers (Clip is checked)."""

_PRODUCERS = ("Conv", "Gemm", "MatMul")


@dataclasses.dataclass
class _Edit:
    """Write `array` into input `index` of `node` (a constant read by that node alone)."""

    node: ir.Node
    index: int
    array: np.ndarray


@dataclasses.dataclass
class _Producer:
    zero: np.ndarray
    """Per output channel: provably zero."""
    axis: int
    """The channel axis of the output: 1 (Conv, NCHW) or -1 (Gemm, MatMul)."""
    edits: list[_Edit]


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _constant(node: ir.Node, index: int, role: str) -> np.ndarray:
    """The constant at input `index` of `node`; declines when it is not one."""
    array = constant_array(_input(node, index))
    if array is None:
        raise Decline(f"{role} is not a constant")
    return array


def _float_constant(node: ir.Node, index: int, role: str) -> np.ndarray:
    """The float constant at input `index` of `node`; declines when it is not one."""
    array = _constant(node, index, role)
    if array.dtype.kind != "f":
        raise Decline(f"{role} is not float")
    return array


def _is_private(value: ir.Value) -> bool:
    """Only one node reads `value`, once, and it is not a graph output: rewriting it affects that node alone."""
    return len(value.uses()) == 1 and not value.is_graph_output()


def _conv(node: ir.Node) -> _Producer | None:
    weight = _constant(node, 1, "weight")
    if weight.ndim < 3:
        raise Decline("weight has fewer than 3 dims")
    channels = weight.shape[0]
    zero = ~weight.reshape(channels, -1).any(axis=1)
    if not zero.any():
        return None
    if weight.dtype.kind != "f":
        raise Decline("weight is not float")
    bias = None
    if _input(node, 2) is not None:
        bias = _float_constant(node, 2, "bias")
        if bias.size != channels:
            raise Decline("bias length differs from the output channels")
        zero &= bias.reshape(-1) == 0
        if not zero.any():
            raise Decline("zero-weight channels have a nonzero bias")
    if attribute(node, "group", 1) != 1:
        raise Decline("grouped Conv producer")
    keep = ~zero
    edits = [_Edit(node, 1, weight[keep])]
    if bias is not None:
        edits.append(_Edit(node, 2, bias.reshape(-1)[keep]))
    return _Producer(zero, 1, edits)


def _gemm(node: ir.Node) -> _Producer | None:
    weight = _constant(node, 1, "B")
    if weight.ndim != 2:
        raise Decline("B is not 2-D")
    trans_b = bool(attribute(node, "transB", 0))
    columns = weight.T if trans_b else weight
    channels = columns.shape[1]
    zero = ~columns.any(axis=0)
    if not zero.any():
        return None
    if weight.dtype.kind != "f":
        raise Decline("B is not float")
    if not math.isfinite(float(attribute(node, "alpha", 1.0))):
        raise Decline("alpha is not finite")
    bias = None
    if _input(node, 2) is not None:
        bias = _float_constant(node, 2, "C")
        width = bias.shape[-1] if bias.ndim else 1
        if bias.ndim > 2 or width not in (1, channels):
            raise Decline("C does not broadcast to the output")
        scaled = float(attribute(node, "beta", 1.0)) * bias.reshape(-1, width)
        zero &= ~scaled.any(axis=0) if width == channels else np.full(channels, not scaled.any())
        if not zero.any():
            raise Decline("zero-weight columns have a nonzero C")
        if width != channels or bias.ndim == 0:
            bias = None  # C broadcasts along the columns (a scalar C too, with one column): nothing to slice
    keep = ~zero
    edits = [_Edit(node, 1, weight[keep] if trans_b else weight[:, keep])]
    if bias is not None:
        edits.append(_Edit(node, 2, bias[..., keep]))
    return _Producer(zero, -1, edits)


def _matmul(node: ir.Node) -> _Producer | None:
    weight = _constant(node, 1, "weight")
    if weight.ndim != 2:
        raise Decline("weight is not 2-D")
    zero = ~weight.any(axis=0)
    if not zero.any():
        return None
    if weight.dtype.kind != "f":
        raise Decline("weight is not float")
    return _Producer(zero, -1, [_Edit(node, 1, weight[:, ~zero])])


def _check_clip(node: ir.Node) -> None:
    """Declines when the Clip `node` may not map zero to zero."""
    low, high = float(attribute(node, "min", -math.inf)), float(attribute(node, "max", math.inf))
    for index in (1, 2):
        if _input(node, index) is None:
            continue
        bound = constant_array(node.inputs[index])
        if bound is None or bound.size != 1:
            raise Decline("Clip bounds are not constant scalars")
        if index == 1:
            low = float(bound.reshape(-1)[0])
        else:
            high = float(bound.reshape(-1)[0])
    if not low <= 0.0 <= high:
        raise Decline("Clip does not keep zero")


def _consumer_edit(node: ir.Node, axis: int, keep: np.ndarray) -> _Edit:
    """The weight edit that drops the removed input channels of a consumer reading the channels at input 0."""
    channels = keep.size
    if node.op_type == "Conv":
        if axis != 1:
            raise Decline("Conv reads a Gemm/MatMul output")
        if attribute(node, "group", 1) != 1:
            raise Decline("consumer Conv is grouped")
        weight = _float_constant(node, 1, "consumer Conv weight")
        if weight.ndim < 3 or weight.shape[1] != channels:
            raise Decline("consumer Conv weight does not match the channels")
        return _Edit(node, 1, weight[:, keep])
    if axis != -1:
        raise Decline(f"{node.op_type} reads a Conv output")
    if node.op_type == "Gemm":
        if attribute(node, "transA", 0):
            raise Decline("consumer Gemm has transA")
        weight = _float_constant(node, 1, "consumer Gemm B")
        trans_b = bool(attribute(node, "transB", 0))
        if weight.ndim != 2 or weight.shape[1 if trans_b else 0] != channels:
            raise Decline("consumer Gemm B does not match the channels")
        return _Edit(node, 1, weight[:, keep] if trans_b else weight[keep])
    weight = _float_constant(node, 1, "consumer MatMul weight")
    if weight.ndim != 2 or weight.shape[0] != channels:
        raise Decline("consumer MatMul weight is not a 2-D matrix matching the channels")
    return _Edit(node, 1, weight[keep])


def _follow(output: ir.Value, axis: int, keep: np.ndarray) -> tuple[list[ir.Value], list[_Edit]]:
    """The values carrying the channels (output, then chain outputs) and the consumers' edits; declines when they cannot be followed."""
    graph = output.producer().graph
    values: list[ir.Value] = []
    edits: list[_Edit] = []
    pending = [output]
    while pending:
        value = pending.pop(0)
        if value.is_graph_output():
            raise Decline("output is a graph output" if value is output else f"{value.producer().op_type} output is a graph output")
        values.append(value)
        for use in value.uses():
            node = use.node
            if node.graph is not graph:
                raise Decline("output is read in another graph")
            if not is_default_domain(node):
                raise Decline(f"output is read by {node.domain}.{node.op_type}")
            if use.idx != 0 or (node.op_type not in ZERO_PRESERVING_OPS and node.op_type not in _PRODUCERS):
                raise Decline(f"output is read by {node.op_type}" + ("" if use.idx == 0 else f" (input {use.idx})"))
            if node.op_type in ZERO_PRESERVING_OPS:
                if node.op_type == "Clip":
                    _check_clip(node)
                pending.append(node.outputs[0])
                continue
            edit = _consumer_edit(node, axis, keep)
            edits.append(edit)
    return values, edits


def _shrunk_shape(value: ir.Value, axis: int, channels: int, kept: int) -> ir.Shape | None:
    """`value`'s shape with `kept` channels on `axis` (None when its shape is unknown), declines when it disagrees."""
    if value.shape is None:
        return None
    dims = list(value.shape)
    if len(dims) < (2 if axis == 1 else 1):
        raise Decline("output rank has no channel axis")
    index = axis % len(dims)
    if isinstance(dims[index], int) and dims[index] != channels:
        raise Decline("output shape disagrees with the weight")
    dims[index] = kept
    return ir.Shape(dims)


class PruneZeroChannelsPass(OptimizationPass, name="prune-zero-channels", level="O2"):
    """Remove Conv/Gemm/MatMul output channels whose weights and bias are all zero, and their consumers' matching input channels."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            if not is_op(node, *_PRODUCERS) or node.graph is None:
                continue
            try:
                removed = self._prune(node)
            except Decline as decline:
                self.decline(f"{node.op_type}: {decline}")
                continue
            if removed:
                counts["layers"] += 1
                counts["channels"] += removed
        return counts

    def _prune(self, node: ir.Node) -> int:
        """Remove the zero channels of `node`; returns how many, or declines (nothing changed then)."""
        producer = {"Conv": _conv, "Gemm": _gemm, "MatMul": _matmul}[node.op_type](node)
        if producer is None:
            return 0
        if producer.zero.all():
            raise Decline("every output channel is zero")
        keep = ~producer.zero
        followed = _follow(node.outputs[0], producer.axis, keep)
        values, consumer_edits = followed
        edits = producer.edits + consumer_edits
        if not all(_is_private(edit.node.inputs[edit.index]) for edit in edits):
            raise Decline("a weight or bias is shared with other nodes or is a graph output")
        shapes = [_shrunk_shape(value, producer.axis, keep.size, int(keep.sum())) for value in values]
        for edit in edits:
            write_constant(edit.node.inputs[edit.index], edit.array)
        for value, shape in zip(values, shapes):
            if shape is not None:
                value.shape = shape
        return int(producer.zero.sum())
