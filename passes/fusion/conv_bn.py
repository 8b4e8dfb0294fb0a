"""Conv (or ConvTranspose, group 1) followed by inference BatchNormalization folds into the Conv.

`y = BatchNormalization(Conv(x, W, B), scale, bias, mean, var)  =>  y = Conv(x, W', B')`
with `s = scale / sqrt(var + eps)`, `W' = W * s` (per output channel), `B' = (B - mean) * s + bias`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from optimizer.rewriter import Declined, RewritePass, Rule
from passes.graph_edit import add_initializer, bypass_value
from passes.values import constant_array

__all__ = ["FuseConvBatchNormPass"]


@dataclasses.dataclass
class _Match:
    conv: ir.Node
    batch_norm: ir.Node
    weight: np.ndarray
    bias: np.ndarray


def _attr(node: ir.Node, name: str, default):
    attr = node.attributes.get(name)
    return default if attr is None or attr.is_ref() else attr.value


class _ConvBatchNorm(Rule):
    name = "conv+batchnorm"
    anchor = "BatchNormalization"

    def match(self, node: ir.Node, model: ir.Model):
        if len(node.inputs) < 5 or any(v is None for v in node.inputs[:5]):
            return Declined("BatchNormalization without its four parameters")
        if any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
            return Declined("training-mode outputs are used")
        if _attr(node, "training_mode", 0):
            return Declined("training mode")
        conv = node.inputs[0].producer()
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or conv.domain not in ("", "ai.onnx"):
            return Declined("input is not produced by Conv")
        conv_out = conv.outputs[0]
        if len(conv_out.uses()) != 1 or conv_out.is_graph_output():
            return Declined("Conv output is also used elsewhere")
        if conv.graph is not node.graph:
            return Declined("Conv and BatchNormalization live in different graphs")
        weight = constant_array(conv.inputs[1]) if len(conv.inputs) > 1 else None
        if weight is None or weight.dtype.kind != "f":
            return Declined("Conv weight is not a float constant")
        has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
        bias = constant_array(conv.inputs[2]) if has_bias else np.zeros(weight.shape[1 if conv.op_type == "ConvTranspose" else 0], weight.dtype)
        if bias is None:
            return Declined("Conv bias is not a constant")
        params = [constant_array(v) for v in node.inputs[1:5]]
        if any(p is None for p in params):
            return Declined("BatchNormalization parameters are not constants")
        scale, shift, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
        if conv.op_type == "ConvTranspose" and _attr(conv, "group", 1) != 1:
            return Declined("ConvTranspose with groups")
        channels = weight.shape[1] if conv.op_type == "ConvTranspose" else weight.shape[0]
        if not all(p.size == channels for p in (scale, shift, mean, var)):
            return Declined("parameter length differs from the Conv's output channels")
        factor = scale / np.sqrt(var + float(_attr(node, "epsilon", 1e-5)))
        axis_shape = [1] * weight.ndim
        axis_shape[1 if conv.op_type == "ConvTranspose" else 0] = channels
        new_weight = (weight.astype(np.float64) * factor.reshape(axis_shape)).astype(weight.dtype)
        new_bias = ((bias.astype(np.float64) - mean) * factor + shift).astype(weight.dtype)
        return _Match(conv, node, new_weight, new_bias)

    def rewrite(self, match: _Match) -> None:
        graph, conv = match.conv.graph, match.conv
        weight_value = add_initializer(graph, f"{conv.inputs[1].name}_bn", match.weight)
        bias_value = add_initializer(graph, f"{conv.outputs[0].name}_bn_bias", match.bias)
        conv.replace_input_with(1, weight_value)
        if len(conv.inputs) > 2:
            conv.replace_input_with(2, bias_value)
        else:
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
