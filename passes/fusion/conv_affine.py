"""A per-output-channel constant Mul or Add after Conv/ConvTranspose folds into its weight and bias.

`Mul(Conv(x, W, B), s)  =>  Conv(x, W * s, B * s)` and `Add(Conv(x, W, B), t)  =>  Conv(x, W, B + t)`
(the bias is created when the Conv has none), either operand order. tf2onnx and Keras exports write
BatchNormalization and bias terms this way, as Mul/Add of `[1, C, 1, 1]` or `[C, 1, 1]` constants.

The constant must broadcast over the Conv output `[N, C, D1, ...]` per output channel only: after
right-aligning it to the output's rank, every dim is 1 except possibly axis 1, which is 1 or C. So
`[C]` against a 4-D output is refused (it runs along the width, not the channels), as is a constant
with more dims than the output (the broadcast would grow the result). For ConvTranspose, output
channel `g * C_out/group + j` is scaled through column `j` of group `g`'s weight rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from optimizer.pipeline import Decline
from optimizer.rewriter import Replacement, RewritePass, Rule
from passes.fusion.conv_bn import conv_output_channels, scale_output_channels
from optimizer.graph.matching import is_op, single_use
from optimizer.graph.values import constant_array

__all__ = ["FuseConvAffinePass"]

_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16)


def _data_type(dtype: np.dtype) -> ir.DataType | None:
    try:
        return ir.DataType.from_numpy(dtype)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass
class _Match:
    conv: ir.Node
    node: ir.Node
    weight: np.ndarray | None
    bias: np.ndarray | None


def _conv_operand(node: ir.Node) -> tuple[ir.Node, ir.Value]:
    """The Conv/ConvTranspose producing one operand of the binary `node`, and the other operand."""
    found = None
    for index in (0, 1):
        value = node.inputs[index] if index < len(node.inputs) else None
        producer = value.producer() if value is not None else None
        if is_op(producer, "Conv", "ConvTranspose"):
            found = found or (producer, node.inputs[1 - index])
            if constant_array(node.inputs[1 - index]) is not None:
                return producer, node.inputs[1 - index]
    if found is None:
        raise Decline("input is not produced by Conv")
    return found


def _per_channel(constant: np.ndarray, rank: int, channels: int) -> np.ndarray:
    """`constant` as one float64 value per output channel, when it broadcasts over a `rank`-D Conv
    output with `channels` channels along axis 1 only."""
    if constant.ndim > rank:
        raise Decline("constant has more dims than the Conv output (the broadcast would change its shape)")
    aligned = (1,) * (rank - constant.ndim) + constant.shape
    if any(dim != 1 for axis, dim in enumerate(aligned) if axis != 1):
        raise Decline("constant varies over batch or spatial dims")
    if aligned[1] not in (1, channels):
        raise Decline("constant's channel dim is not the Conv's output channels")
    return np.broadcast_to(constant.astype(np.float64).reshape(-1), (channels,))


class _ConvAffine(Rule):
    """Shared matching; subclasses fold the per-channel vector into the weight and/or bias."""

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        conv, operand = _conv_operand(node)
        conv_out = conv.outputs[0]
        if not single_use(conv_out):
            raise Decline("Conv output is also used elsewhere")
        if conv.graph is not node.graph:
            raise Decline(f"Conv and {node.op_type} live in different graphs")
        constant = constant_array(operand)
        if constant is None:
            raise Decline("other operand is not a constant")
        weight = constant_array(conv.inputs[1]) if len(conv.inputs) > 1 else None
        if weight is None:
            raise Decline("Conv weight is not a constant")
        if constant.dtype != weight.dtype or _data_type(weight.dtype) not in _FLOATS:
            raise Decline("not floating point of one type")
        has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
        bias = constant_array(conv.inputs[2]) if has_bias else None
        if has_bias and bias is None:
            raise Decline("Conv bias is not a constant")
        channels = conv_output_channels(conv, weight)
        if bias is not None and bias.size != channels:
            raise Decline("Conv bias length differs from its output channels")
        vector = _per_channel(constant, weight.ndim, channels)
        return self.fold(conv, node, weight, bias, vector)

    def fold(self, conv: ir.Node, node: ir.Node, weight: np.ndarray, bias: np.ndarray | None, vector: np.ndarray) -> Replacement:
        raise NotImplementedError

    @staticmethod
    def _replacement(match: _Match) -> Replacement:
        """The Conv takes the new weight and/or bias; the Mul or Add goes."""
        conv = match.conv
        replacement = Replacement(removed=[match.node])
        if match.weight is not None:
            replacement.set_input(conv, 1, replacement.initializer(f"{conv.inputs[1].name}_scaled", match.weight))
        if match.bias is not None:
            replacement.set_input(conv, 2, replacement.initializer(f"{conv.outputs[0].name}_bias", match.bias))
        replacement.reroute(match.node.outputs[0], conv.outputs[0])
        return replacement


class _ConvMul(_ConvAffine):
    name = "conv+mul"
    anchors = ("Mul",)

    def fold(self, conv, node, weight, bias, vector):
        if not np.all(np.isfinite(vector)):
            raise Decline("scale is not finite")
        new_weight = scale_output_channels(conv, weight, vector).astype(weight.dtype)
        new_bias = None if bias is None else (bias.astype(np.float64).reshape(-1) * vector).astype(bias.dtype)
        return self._replacement(_Match(conv, node, new_weight, new_bias))


class _ConvAdd(_ConvAffine):
    name = "conv+add"
    anchors = ("Add",)

    def fold(self, conv, node, weight, bias, vector):
        base = np.zeros(vector.shape) if bias is None else bias.astype(np.float64).reshape(-1)
        return self._replacement(_Match(conv, node, None, (base + vector).astype(weight.dtype)))


class FuseConvAffinePass(RewritePass, name="fuse-conv-affine", level="O2"):
    """Fold a per-output-channel constant Mul into the preceding Conv/ConvTranspose's weight and bias, and such an Add into its bias."""

    rules = (_ConvMul, _ConvAdd)
