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

import dataclasses

import numpy as np
import onnx_ir as ir

from optimizer.rewriter import Declined, RewritePass, Rule
from optimizer.graph.matching import attribute, single_use
from optimizer.graph.editing import add_initializer, bypass_value, replace_pattern
from optimizer.graph.values import constant_array

__all__ = ["FuseConvBatchNormPass", "FuseGemmBatchNormPass", "conv_output_channels", "scale_output_channels"]



def conv_output_channels(conv: ir.Node, weight: np.ndarray) -> int | Declined:
    """How many channels `conv` (Conv or ConvTranspose with constant `weight`) outputs."""
    group = attribute(conv, "group", 1)
    if weight.ndim < 3 or group < 1 or weight.shape[0] % group:
        return Declined("Conv weight does not split into its groups")
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


def _batch_norm_factors(node: ir.Node) -> tuple[np.ndarray, np.ndarray] | Declined:
    """`(s, t)` such that the inference BatchNormalization `node` computes `x * s + t` per channel."""
    if len(node.inputs) < 5 or any(v is None for v in node.inputs[:5]):
        return Declined("BatchNormalization without its four parameters")
    if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
        return Declined("training-mode outputs are used")
    if attribute(node, "training_mode", 0):
        return Declined("training mode")
    params = [constant_array(v) for v in node.inputs[1:5]]
    if any(p is None or p.dtype.kind != "f" for p in params):
        return Declined("BatchNormalization parameters are not constants")
    scale, shift, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
    if not scale.size == shift.size == mean.size == var.size:
        return Declined("BatchNormalization parameters differ in length")
    factor = scale / np.sqrt(var + float(attribute(node, "epsilon", 1e-5)))
    return factor, shift - mean * factor


@dataclasses.dataclass
class _Match:
    conv: ir.Node
    batch_norm: ir.Node
    weight: np.ndarray
    bias: np.ndarray


class _ConvBatchNorm(Rule):
    name = "conv+batchnorm"
    anchor = "BatchNormalization"

    def match(self, node: ir.Node, model: ir.Model):
        if len(node.inputs) < 5 or any(v is None for v in node.inputs[:5]):
            return Declined("BatchNormalization without its four parameters")
        conv = node.inputs[0].producer()
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or conv.domain not in ("", "ai.onnx"):
            return Declined("input is not produced by Conv")
        conv_out = conv.outputs[0]
        if not single_use(conv_out):
            return Declined("Conv output is also used elsewhere")
        if conv.graph is not node.graph:
            return Declined("Conv and BatchNormalization live in different graphs")
        weight = constant_array(conv.inputs[1]) if len(conv.inputs) > 1 else None
        if weight is None or weight.dtype.kind != "f":
            return Declined("Conv weight is not a float constant")
        channels = conv_output_channels(conv, weight)
        if isinstance(channels, Declined):
            return channels
        has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
        bias = constant_array(conv.inputs[2]) if has_bias else np.zeros(channels, weight.dtype)
        if bias is None:
            return Declined("Conv bias is not a constant")
        factors = _batch_norm_factors(node)
        if isinstance(factors, Declined):
            return factors
        factor, offset = factors
        if factor.size != channels or bias.size != channels:
            return Declined("parameter length differs from the Conv's output channels")
        new_weight = scale_output_channels(conv, weight, factor).astype(weight.dtype)
        new_bias = (bias.astype(np.float64).reshape(-1) * factor + offset).astype(weight.dtype)
        return _Match(conv, node, new_weight, new_bias)

    def rewrite(self, match: _Match) -> None:
        graph, conv = match.conv.graph, match.conv
        weight_value = add_initializer(graph, f"{conv.inputs[1].name}_bn", match.weight)
        bias_value = add_initializer(graph, f"{conv.outputs[0].name}_bn_bias", match.bias)
        conv.replace_input_with(1, weight_value)
        if len(conv.inputs) < 3:
            conv.resize_inputs(3)
        conv.replace_input_with(2, bias_value)
        if not bypass_value(match.batch_norm.outputs[0], conv.outputs[0]):
            raise RuntimeError("conv+batchnorm: could not reroute the BatchNormalization output")
        graph.remove(match.batch_norm, safe=True)


class FuseConvBatchNormPass(RewritePass):
    name = "fuse-conv-batchnorm"
    level = "O2"
    description = "Fold inference BatchNormalization into the preceding Conv/ConvTranspose's weights and bias."
    rules = (_ConvBatchNorm,)


@dataclasses.dataclass
class _LinearMatch:
    layer: ir.Node
    batch_norm: ir.Node
    weight: np.ndarray
    bias: np.ndarray


class _GemmBatchNorm(Rule):
    name = "gemm+batchnorm"
    anchor = "BatchNormalization"

    def match(self, node: ir.Node, model: ir.Model):
        if len(node.inputs) < 5 or any(v is None for v in node.inputs[:5]):
            return Declined("BatchNormalization without its four parameters")
        layer = node.inputs[0].producer()
        if layer is None or layer.op_type not in ("Gemm", "MatMul") or layer.domain not in ("", "ai.onnx"):
            return Declined("input is not produced by Gemm or MatMul")
        if model.opset_imports.get("", 1) < 7:
            return Declined("opset below 7 (legacy broadcast attribute)")
        output = layer.outputs[0]
        if not single_use(output):
            return Declined(f"{layer.op_type} output is also used elsewhere")
        if layer.graph is not node.graph:
            return Declined(f"{layer.op_type} and BatchNormalization live in different graphs")
        weight = constant_array(layer.inputs[1])
        if weight is None or weight.dtype.kind != "f":
            return Declined(f"{layer.op_type} weight is not a float constant")
        if weight.ndim != 2:
            return Declined(f"{layer.op_type} weight is not 2-D")
        if layer.op_type == "MatMul":
            rank = len(output.shape) if output.shape is not None else None
            if rank is None:
                return Declined("MatMul output rank is unknown")
            if rank != 2:
                return Declined("MatMul output is not 2-D: BatchNormalization's channel axis 1 is not the weight's last axis")
        column_axis = 0 if layer.op_type == "Gemm" and attribute(layer, "transB", 0) else 1
        channels = weight.shape[column_axis]
        bias = np.zeros(channels)
        if layer.op_type == "Gemm" and len(layer.inputs) > 2 and layer.inputs[2] is not None:
            c = constant_array(layer.inputs[2])
            if c is None:
                return Declined("Gemm C is not a constant")
            if c.ndim > 2 or (c.ndim >= 1 and c.shape[-1] not in (1, channels)):
                return Declined("Gemm C does not broadcast to the output")
            bias = float(attribute(layer, "beta", 1.0)) * c.astype(np.float64)
        factors = _batch_norm_factors(node)
        if isinstance(factors, Declined):
            return factors
        factor, offset = factors
        if factor.size != channels:
            return Declined(f"parameter length differs from the {layer.op_type}'s output columns")
        shape = (1, channels) if column_axis == 1 else (channels, 1)
        new_weight = (weight.astype(np.float64) * factor.reshape(shape)).astype(weight.dtype)
        new_bias = (bias * factor + offset).astype(weight.dtype)
        return _LinearMatch(layer, node, new_weight, new_bias)

    def rewrite(self, match: _LinearMatch) -> None:
        layer, graph = match.layer, match.layer.graph
        weight_value = add_initializer(graph, f"{layer.inputs[1].name}_bn", match.weight)
        bias_value = add_initializer(graph, f"{layer.outputs[0].name}_bn_bias", match.bias)
        layer.replace_input_with(1, weight_value)
        if layer.op_type == "MatMul":
            add = ir.Node("", "Add", [layer.outputs[0], bias_value], num_outputs=1)
            replace_pattern(add, match.batch_norm, match.batch_norm.outputs[0], [match.batch_norm])
            return
        if len(layer.inputs) < 3:
            layer.resize_inputs(3)
        layer.replace_input_with(2, bias_value)
        layer.attributes.pop("beta", None)
        if not bypass_value(match.batch_norm.outputs[0], layer.outputs[0]):
            raise RuntimeError("gemm+batchnorm: could not reroute the BatchNormalization output")
        graph.remove(match.batch_norm, safe=True)


class FuseGemmBatchNormPass(RewritePass):
    name = "fuse-gemm-batchnorm"
    level = "O2"
    description = (
        "Fold inference BatchNormalization into the preceding Gemm's B and C, or into a 2-D MatMul's constant weight plus an Add."
    )
    needs_shapes = True
    rules = (_GemmBatchNorm,)
