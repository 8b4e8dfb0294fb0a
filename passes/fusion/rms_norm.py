"""RMSNormalization from its decomposition, as exporters emit it (opset >= 23).

`s = Sqrt(Add(ReduceMean(Pow(x, 2) | Mul(x, x)), eps));
 n = Div(x, s) | Mul(x, Reciprocal(s)) | Mul(x, Div(1, s)); y = Mul(n, gamma)`
  =>  `y = RMSNormalization(x, gamma, axis=-k, epsilon=eps)`
over the trailing k axes; gamma is optional in the pattern (ones in the fusion). transformers'
LlamaRMSNorm casts to float32 and back (`Cast(x, to=float)` before, `Cast(n, to=float)` before the
weight); those casts go too when they are identities, i.e. for float32 input. Any other input type
is declined, since RMSNormalization would then compute in float32 (stash_type) what the model
computes in its own type.

Declined when a constant (eps, the exponent, gamma...) has more dims than x: `Add(v, eps[1, 1, 1])` on
a 2-D x broadcasts the result to 3-D, which the fused op would not.
"""

from __future__ import annotations


import numpy as np
import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import as_parameter, broadcasts_up, is_op, other_operand, producer_of, reduce_axes, scalar, single_use, sole_consumer
from optimizer.graph.values import constant_array
from passes.fusion.layer_norm import normalization_replacement

__all__ = ["FuseRMSNormPass"]


def _is_float_cast(node: ir.Node | None) -> bool:
    attr = node.attributes.get("to") if node is not None else None
    return attr is not None and not attr.is_ref() and attr.as_int() == ir.DataType.FLOAT


def _is_centered(x: ir.Value) -> bool:
    """`x = a - ReduceMean(a)`: the pattern is then a LayerNormalization."""
    sub = producer_of(x, "Sub")
    mean = producer_of(sub.inputs[1], "ReduceMean") if sub is not None else None
    return mean is not None and mean.inputs[0] is sub.inputs[0]


class _RMSNormDecomposition(Rule):
    name = "rmsnorm"
    anchors = ("Sqrt",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        if model.opset_imports.get("", 0) < 23:
            raise Decline("opset below 23 (use --target-opset 23)")
        add_eps = producer_of(node.inputs[0], "Add")
        mean_square = next((v for v in add_eps.inputs if producer_of(v, "ReduceMean") is not None), None) if add_eps is not None else None
        epsilon = scalar(other_operand(add_eps, mean_square)) if mean_square is not None else None
        if epsilon is None:
            raise Decline("Sqrt input is not Add(mean square, constant eps)")
        reduce = mean_square.producer()
        square = reduce.inputs[0].producer() if reduce.inputs[0] is not None else None
        if not is_op(square, "Pow", "Mul"):
            raise Decline("mean is not of a square")
        x = square.inputs[0]
        if square.op_type == "Pow" and scalar(square.inputs[1]) != 2.0:
            raise Decline("Pow exponent is not 2")
        if square.op_type == "Mul" and square.inputs[1] is not x:
            raise Decline("mean is not of a square")
        if _is_centered(x):
            raise Decline("input is x - mean(x): a LayerNormalization, left to fuse-layer-norm")
        axes, rank = reduce_axes(reduce), (len(x.shape) if x.shape is not None else None)
        if axes is None or rank is None:
            raise Decline("reduction axes or input rank unknown")
        normalized = sorted(a % rank for a in axes) if all(-rank <= a < rank for a in axes) else []
        if not normalized or normalized != list(range(rank - len(normalized), rank)):
            raise Decline("reduction is not over the trailing axes")
        for value in (square.outputs[0], reduce.outputs[0], add_eps.outputs[0], node.outputs[0]):
            if not single_use(value):
                raise Decline("an intermediate is used elsewhere")
        # The normalization: Div(x, s), Mul(x, Reciprocal(s)) or Mul(x, Div(1, s)).
        removed = [square, reduce, add_eps, node]
        divide = sole_consumer(node.outputs[0])
        if divide is not None and (
            divide.op_type == "Reciprocal" or (divide.op_type == "Div" and divide.inputs[1] is node.outputs[0] and scalar(divide.inputs[0]) == 1.0)
        ):
            removed.append(divide)
            inverse = divide.outputs[0]
            divide = sole_consumer(inverse, "Mul")
            if divide is None or other_operand(divide, inverse) is not x:
                raise Decline("Sqrt is not the divisor of the input")
        elif divide is None or divide.op_type != "Div" or divide.inputs[0] is not x:
            raise Decline("Sqrt is not the divisor of the input")
        removed.append(divide)
        # transformers' casts to float32 and back: identities for float32 input, declined otherwise.
        source, cast_in = x, producer_of(x, "Cast")
        if cast_in is not None and _is_float_cast(cast_in):
            if cast_in.inputs[0].dtype != ir.DataType.FLOAT:
                raise Decline("Cast to float32 is not an identity (input is not float32)")
            if {use.node for use in x.uses()} == {square, divide} and not x.is_graph_output():
                source = cast_in.inputs[0]
                removed.insert(0, cast_in)
        if source.dtype != ir.DataType.FLOAT:
            raise Decline("input is not float32")
        output = divide.outputs[0]
        cast_out = sole_consumer(output, "Cast")
        if cast_out is not None and _is_float_cast(cast_out):
            output = cast_out.outputs[0]
            removed.append(cast_out)
        gamma = None
        scale_node = sole_consumer(output, "Mul")
        if scale_node is not None and constant_array(other_operand(scale_node, output)) is not None:
            gamma, output = other_operand(scale_node, output), scale_node.outputs[0]
            removed.append(scale_node)
        dims = tuple(x.shape[a] for a in normalized)
        if not all(isinstance(d, int) for d in dims):
            raise Decline("normalized dims are dynamic")
        if gamma is not None and as_parameter(constant_array(gamma), dims) is None:
            raise Decline("scale does not match the normalized dims")
        if broadcasts_up(removed, x):
            raise Decline("a constant of higher rank than the input broadcasts it up")
        return normalization_replacement("RMSNormalization", source, normalized[0] - rank, epsilon, [(gamma, "scale", np.float32)], output, removed)


class FuseRMSNormPass(RewritePass, name="fuse-rms-norm", level="O2", preconditions={NEEDS_SHAPES}):
    """Replace decomposed RMSNorm (Pow/ReduceMean/Add/Sqrt/Div or Reciprocal+Mul[/Mul], Llama's float32 Casts when identities) by RMSNormalization (opset >= 23)."""

    rules = (_RMSNormDecomposition,)
