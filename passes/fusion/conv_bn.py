"""Inference BatchNormalization folds into the layer before it: Conv/ConvTranspose, Gemm, or MatMul.

With `s = scale / sqrt(var + eps)` per channel (axis 1 of the BatchNormalization input):

- `BatchNormalization(Conv(x, W, B), scale, bias, mean, var)  =>  Conv(x, W * s, (B - mean) * s + bias)`,
  `W` scaled per output channel (axis 0 for Conv; for ConvTranspose, `W` is `[C_in, C_out/group, ...]`
  and output channel `g * C_out/group + j` is column `j` of group `g`'s rows, so any group count works).
- `BatchNormalization(Gemm(a, B, C), ...)  =>  Gemm(a, B * s, (beta * C - mean) * s + bias)`, `B`
  scaled along the output columns (its last axis, or its first with transB), beta dropped (1).
- `BatchNormalization(MatMul(a, W), ...)  =>  Add(MatMul(a, W * s), bias - mean * s)` for a 2-D
  constant `W` and a 2-D `[N, C]` product only: BatchNormalization normalizes axis 1, which is the
  weight's last axis only then (for `[B, T, C]` it is T, which no weight column scaling can express).
  `fuse-matmul-add` then turns the MatMul + Add into a Gemm.

Two passes, because the MatMul case needs the product's rank from shape inference and the Conv case
does not: folding into Conv stays free of inference on large CNNs, and each BatchNormalization is
looked at by one rule per pass, so each declines for one reason.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import attribute, is_op, single_use
from optimizer.graph.values import constant_array

__all__ = ["FuseConvBatchNormPass", "FuseGemmBatchNormPass", "conv_output_channels", "scale_output_channels"]


def conv_output_channels(conv: ir.Node, weight: np.ndarray) -> int:
    """How many channels `conv` (Conv or ConvTranspose with constant `weight`) outputs."""
    group = attribute(conv, "group", 1)
    if weight.ndim < 3 or group < 1 or weight.shape[0] % group:
        raise Decline("Conv weight does not split into its groups")
    return weight.shape[1] * group if conv.op_type == "ConvTranspose" else weight.shape[0]


def scale_output_channels(conv: ir.Node, weight: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """`weight` (float64) with the filter of each output channel `c` multiplied by `factor[c]`.

    Conv's weight is `[C_out, C_in/group, k...]`: one row per output channel. ConvTranspose's is
    `[C_in, C_out/group, k...]`: output channel `g * C_out/group + j` reads column `j` of the rows of
    group `g`, so the factor is laid out as `[group, 1, C_out/group, 1...]` over the grouped weight.
    """
    weight = weight.astype(np.float64)
    ones = (1,) * (weight.ndim - 2)
    if conv.op_type != "ConvTranspose":
        return weight * factor.reshape((-1, 1) + ones)
    group = attribute(conv, "group", 1)
    per_group = weight.shape[1]
    grouped = weight.reshape((group, weight.shape[0] // group) + weight.shape[1:])
    return (grouped * factor.reshape((group, 1, per_group) + ones)).reshape(weight.shape)


def _batch_norm_factors(node: ir.Node) -> tuple[np.ndarray, np.ndarray]:
    """`(s, t)` such that the inference BatchNormalization `node` (its four parameters present)
    computes `x * s + t` per channel."""
    if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
        raise Decline("training-mode outputs are used")
    if attribute(node, "training_mode", 0):
        raise Decline("training mode")
    params = [constant_array(v) for v in node.inputs[1:5]]
    if any(p is None or p.dtype.kind != "f" for p in params):
        raise Decline("BatchNormalization parameters are not constants")
    scale, shift, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
    if not scale.size == shift.size == mean.size == var.size:
        raise Decline("BatchNormalization parameters differ in length")
    factor = scale / np.sqrt(var + float(attribute(node, "epsilon", 1e-5)))
    return factor, shift - mean * factor


class _BatchNormFold(Rule):
    """Checks the BatchNormalization's parameters and the layer before it (of `layers`, read by it
    alone, in its graph, with a float constant weight) once; subclasses fold into the layer."""

    anchors = ("BatchNormalization",)
    layers: ClassVar[tuple[str, ...]]
    layers_named: ClassVar[str]
    """How declines name `layers`."""

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        if len(node.inputs) < 5 or any(v is None for v in node.inputs[:5]):
            raise Decline("BatchNormalization without its four parameters")
        layer = node.inputs[0].producer()
        if not is_op(layer, *self.layers):
            raise Decline(f"input is not produced by {self.layers_named}")
        self.check_model(model)
        label = self.label(layer)
        if not single_use(layer.outputs[0]):
            raise Decline(f"{label} output is also used elsewhere")
        if layer.graph is not node.graph:
            raise Decline(f"{label} and BatchNormalization live in different graphs")
        weight = constant_array(layer.inputs[1]) if len(layer.inputs) > 1 else None
        if weight is None or weight.dtype.kind != "f":
            raise Decline(f"{label} weight is not a float constant")
        new_weight, new_bias = self.fold(node, layer, weight)
        return _replacement(layer, node, new_weight, new_bias)

    def check_model(self, model: ir.Model) -> None:
        """Raise `Decline` when the model's opset rules the fold out."""

    def label(self, layer: ir.Node) -> str:
        """How declines name `layer`."""
        return layer.op_type

    def fold(self, node: ir.Node, layer: ir.Node, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The layer's new weight and bias, the BatchNormalization `node` folded in."""
        raise NotImplementedError


def _replacement(layer: ir.Node, batch_norm: ir.Node, weight: np.ndarray, bias: np.ndarray) -> Replacement:
    """`layer` takes the new weight; Conv and Gemm the new bias too (Gemm's beta goes), a MatMul
    an Add of it; the BatchNormalization goes."""
    replacement = Replacement(removed=[batch_norm])
    weight_value = replacement.initializer(f"{layer.inputs[1].name}_bn", weight)
    bias_value = replacement.initializer(f"{layer.outputs[0].name}_bn_bias", bias)
    replacement.set_input(layer, 1, weight_value)
    if layer.op_type == "MatMul":
        replacement.nodes = [ir.Node("", "Add", [layer.outputs[0], bias_value], num_outputs=1)]
        replacement.reroute(batch_norm.outputs[0], replacement.nodes[0].outputs[0])
        return replacement
    replacement.set_input(layer, 2, bias_value)
    if layer.op_type == "Gemm":
        replacement.set_attribute(layer, "beta", None)
    replacement.reroute(batch_norm.outputs[0], layer.outputs[0])
    return replacement


class _ConvBatchNorm(_BatchNormFold):
    name = "conv+batchnorm"
    layers = ("Conv", "ConvTranspose")
    layers_named = "Conv"

    def label(self, layer: ir.Node) -> str:
        return "Conv"

    def fold(self, node: ir.Node, conv: ir.Node, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        channels = conv_output_channels(conv, weight)
        has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
        bias = constant_array(conv.inputs[2]) if has_bias else np.zeros(channels, weight.dtype)
        if bias is None:
            raise Decline("Conv bias is not a constant")
        factor, offset = _batch_norm_factors(node)
        if factor.size != channels or bias.size != channels:
            raise Decline("parameter length differs from the Conv's output channels")
        new_weight = scale_output_channels(conv, weight, factor).astype(weight.dtype)
        new_bias = (bias.astype(np.float64).reshape(-1) * factor + offset).astype(weight.dtype)
        return new_weight, new_bias


class FuseConvBatchNormPass(RewritePass, name="fuse-conv-batchnorm", level="O2"):
    """Fold inference BatchNormalization into the preceding Conv/ConvTranspose's weights and bias."""

    rules = (_ConvBatchNorm,)


class _GemmBatchNorm(_BatchNormFold):
    name = "gemm+batchnorm"
    layers = ("Gemm", "MatMul")
    layers_named = "Gemm or MatMul"

    def check_model(self, model: ir.Model) -> None:
        if model.opset_imports.get("", 1) < 7:
            raise Decline("opset below 7 (legacy broadcast attribute)")

    def fold(self, node: ir.Node, layer: ir.Node, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        output = layer.outputs[0]
        if weight.ndim != 2:
            raise Decline(f"{layer.op_type} weight is not 2-D")
        if layer.op_type == "MatMul":
            rank = len(output.shape) if output.shape is not None else None
            if rank is None:
                raise Decline("MatMul output rank is unknown")
            if rank != 2:
                raise Decline("MatMul output is not 2-D: BatchNormalization's channel axis 1 is not the weight's last axis")
        column_axis = 0 if layer.op_type == "Gemm" and attribute(layer, "transB", 0) else 1
        channels = weight.shape[column_axis]
        bias = np.zeros(channels)
        if layer.op_type == "Gemm" and len(layer.inputs) > 2 and layer.inputs[2] is not None:
            c = constant_array(layer.inputs[2])
            if c is None:
                raise Decline("Gemm C is not a constant")
            if c.ndim > 2 or (c.ndim >= 1 and c.shape[-1] not in (1, channels)):
                raise Decline("Gemm C does not broadcast to the output")
            bias = float(attribute(layer, "beta", 1.0)) * c.astype(np.float64)
        factor, offset = _batch_norm_factors(node)
        if factor.size != channels:
            raise Decline(f"parameter length differs from the {layer.op_type}'s output columns")
        shape = (1, channels) if column_axis == 1 else (channels, 1)
        new_weight = (weight.astype(np.float64) * factor.reshape(shape)).astype(weight.dtype)
        new_bias = (bias * factor + offset).astype(weight.dtype)
        return new_weight, new_bias


class FuseGemmBatchNormPass(RewritePass, name="fuse-gemm-batchnorm", level="O2", preconditions={NEEDS_SHAPES}):
    """Fold inference BatchNormalization into the preceding Gemm's B and C, or into a 2-D MatMul's constant weight plus an Add."""

    rules = (_GemmBatchNorm,)
