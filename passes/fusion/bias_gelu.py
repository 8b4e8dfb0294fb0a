"""A bias Add feeding Gelu  =>  onnxruntime's BiasGelu / FastGelu with bias (O3, com.microsoft).

    y = Gelu(Add(x, b))                         =>  y = BiasGelu(x, b)
    y = Gelu(Add(x, b), approximate="tanh")     =>  y = FastGelu(x, b)
    y = com.microsoft.Gelu(Add(x, b))           =>  y = BiasGelu(x, b)
    y = com.microsoft.FastGelu(Add(x, b))       =>  y = FastGelu(x, b)

with b a constant vector of x's last dim. When x is a dense layer's MatMul with a constant weight
(BERT and ViT feed-forward blocks) the rule declines: onnxruntime then fuses MatMul + bias into one
Gemm, which measured 1-2% faster than MatMul + BiasGelu on BERT-base and ViT-base on this CPU.
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from optimizer.rewriter import Declined, RewritePass, Rule
from optimizer.graph.matching import MS_DOMAIN, producer_of, single_use
from optimizer.graph.editing import replace_pattern
from optimizer.graph.values import constant_array

__all__ = ["FuseBiasGeluPass"]

_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16)


@dataclasses.dataclass
class _Match:
    gelu: ir.Node
    add: ir.Node
    x: ir.Value
    bias: ir.Value
    op: str


class _BiasGelu(Rule):
    name = "bias+gelu"
    anchor = "Gelu"
    introduces = {MS_DOMAIN: 1}

    def match(self, node: ir.Node, model: ir.Model):
        approximate = node.attributes.get("approximate")
        tanh = node.op_type == "FastGelu" or (approximate is not None and approximate.value == "tanh")
        if node.op_type == "FastGelu" and len(node.inputs) > 1 and node.inputs[1] is not None:
            return Declined("already has a bias")
        add = producer_of(node.inputs[0], "Add")
        if add is None:
            return Declined("input is not a bias Add")
        summed = add.outputs[0]
        if not single_use(summed):
            return Declined("the biased value is used elsewhere")
        for index in (0, 1):
            x, bias = add.inputs[index], add.inputs[1 - index]
            array = constant_array(bias)
            if array is not None and constant_array(x) is None:
                break
        else:
            return Declined("input is not a bias Add")
        dense = producer_of(x, "MatMul")
        if dense is not None and constant_array(dense.inputs[1]) is not None and len(x.uses()) == 1:
            # onnxruntime folds MatMul + bias into one Gemm; that measured 1-2% faster than BiasGelu
            # on BERT-base and ViT-base here (1 thread, seq 128), so the bias stays with the MatMul.
            return Declined("bias belongs to a dense MatMul (onnxruntime fuses them into Gemm, faster)")
        if x.shape is None or len(x.shape) < 1 or array.shape != (x.shape[-1],):
            return Declined("bias is not a vector over the last axis")
        if x.shape != summed.shape:
            return Declined("bias Add broadcasts x")
        if x.dtype not in _FLOATS or bias.dtype != x.dtype:
            return Declined("not float32/float16")
        if add.graph is not node.graph:
            return Declined("Add and Gelu live in different graphs")
        return _Match(node, add, x, bias, "FastGelu" if tanh else "BiasGelu")

    def rewrite(self, match: _Match) -> None:
        fused = ir.Node(MS_DOMAIN, match.op, [match.x, match.bias], num_outputs=1)
        replace_pattern(fused, match.gelu, match.gelu.outputs[0], [match.add, match.gelu])


class _OnnxruntimeBiasGelu(_BiasGelu):
    name = "bias+gelu (onnxruntime Gelu)"
    domain = MS_DOMAIN


class _OnnxruntimeBiasFastGelu(_BiasGelu):
    name = "bias+fastgelu"
    anchor = "FastGelu"
    domain = MS_DOMAIN


class FuseBiasGeluPass(RewritePass):
    name = "fuse-bias-gelu"
    level = "O3"
    description = "Fold the bias Add before Gelu into com.microsoft BiasGelu (Erf) or FastGelu (Tanh)."
    needs_shapes = True
    rules = (_BiasGelu, _OnnxruntimeBiasGelu, _OnnxruntimeBiasFastGelu)
