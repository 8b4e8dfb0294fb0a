"""LayerNormalization from its decomposition, as exporters emit it (opset >= 17; any opset at O3).

`m = ReduceMean(x); d = Sub(x, m); v = ReduceMean(Pow(d, 2) | Mul(d, d)); s = Sqrt(Add(v, eps));
 n = Div(d, s) | Mul(d, Reciprocal(s)); y = Add(Mul(n, gamma), beta)`
  =>  `y = LayerNormalization(x, gamma, beta, axis=-k, epsilon=eps)`
over the trailing k axes; gamma and beta are optional in the pattern (ones / none in the fusion).

Below opset 17 the standard op does not exist, but onnxruntime registers LayerNormalization in the
default domain at every opset; O3 (models meant for onnxruntime) fuses there too, as onnxruntime's
own transformer optimizer does. `onnx.checker` rejects such a model; onnxruntime runs it.

Declined when a constant (eps, the exponent, gamma...) has more dims than x: `Add(v, eps[1, 1, 1])` on
a 2-D x broadcasts the result to 3-D, which the fused op would not.
"""

from __future__ import annotations


import numpy as np
import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import as_parameter, broadcasts_up, other_operand, producer_of, reduce_axes, scalar, single_use, sole_consumer
from optimizer.graph.editing import pattern_problem
from optimizer.graph.values import constant_array

__all__ = ["FuseLayerNormPass", "FuseLayerNormAnyOpsetPass", "normalization_replacement"]


class _LayerNormDecomposition(Rule):
    name = "layernorm"
    anchors = ("Sqrt",)

    def opset_reason(self, opset: int) -> str | None:
        return "opset below 17 (use --target-opset 17 or --level O3)" if opset < 17 else None

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        if (reason := self.opset_reason(model.opset_imports.get("", 0))) is not None:
            raise Decline(reason)
        add_eps = producer_of(node.inputs[0], "Add")
        if add_eps is None:
            raise Decline("Sqrt input is not Add(variance, eps)")
        variance = next((v for v in add_eps.inputs if producer_of(v, "ReduceMean") is not None), None)
        epsilon = scalar(other_operand(add_eps, variance)) if variance is not None else None
        if variance is None or epsilon is None:
            raise Decline("Sqrt input is not Add(variance, constant eps)")
        reduce_var = variance.producer()
        square = reduce_var.inputs[0].producer()
        if square is None or square.op_type not in ("Pow", "Mul"):
            raise Decline("variance is not the mean of a square")
        centered = square.inputs[0]
        if square.op_type == "Pow" and scalar(square.inputs[1]) != 2.0:
            raise Decline("Pow exponent is not 2")
        if square.op_type == "Mul" and square.inputs[1] is not centered:
            raise Decline("Mul is not a square")
        sub = producer_of(centered, "Sub")
        mean = producer_of(sub.inputs[1], "ReduceMean") if sub is not None else None
        if sub is None or mean is None or mean.inputs[0] is not sub.inputs[0]:
            raise Decline("centering is not x - ReduceMean(x)")
        x = sub.inputs[0]
        axes_mean, axes_var = reduce_axes(mean), reduce_axes(reduce_var)
        rank = len(x.shape) if x.shape is not None else None
        if axes_mean is None or axes_var is None or rank is None:
            raise Decline("reduction axes or input rank unknown")
        normalized = sorted(a % rank for a in axes_mean)
        if not normalized or normalized != sorted(a % rank for a in axes_var) or normalized != list(range(rank - len(normalized), rank)):
            raise Decline("reduction is not over the trailing axes")
        if x.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE):
            raise Decline("input is not floating point")
        # The normalization: Div(d, s) or Mul(d, Reciprocal(s)).
        divide = sole_consumer(node.outputs[0])
        removed = [mean, sub, square, reduce_var, add_eps, node]
        if divide is not None and divide.op_type == "Reciprocal":
            removed.append(divide)
            divide = sole_consumer(divide.outputs[0])
            if divide is None or divide.op_type != "Mul":
                raise Decline("Reciprocal is not followed by Mul")
        elif divide is None or divide.op_type != "Div" or divide.inputs[0] is not centered:
            raise Decline("Sqrt is not the divisor of the centered input")
        if centered not in divide.inputs:
            raise Decline("normalization does not read the centered input")
        if {u.node for u in centered.uses()} != {square, divide}:
            raise Decline("centered input is used elsewhere")
        for value in (mean.outputs[0], square.outputs[0], reduce_var.outputs[0], add_eps.outputs[0]):
            if not single_use(value):
                raise Decline("an intermediate is used elsewhere")
        removed.append(divide)
        output, gamma, beta = divide.outputs[0], None, None
        scale_node = sole_consumer(output)
        if scale_node is not None and scale_node.op_type == "Mul" and constant_array(other_operand(scale_node, output)) is not None:
            gamma, output = other_operand(scale_node, output), scale_node.outputs[0]
            removed.append(scale_node)
            shift_node = sole_consumer(output)
            if shift_node is not None and shift_node.op_type == "Add" and constant_array(other_operand(shift_node, output)) is not None:
                beta, output = other_operand(shift_node, output), shift_node.outputs[0]
                removed.append(shift_node)
        dims = tuple(x.shape[a] for a in normalized)
        if not all(isinstance(d, int) for d in dims):
            raise Decline("normalized dims are dynamic")
        for param in (gamma, beta):
            if param is not None and as_parameter(constant_array(param), dims) is None:
                raise Decline("scale or bias does not match the normalized dims")
        if (problem := pattern_problem(removed, output)) is not None:
            raise Decline(problem)
        if broadcasts_up(removed, x):
            raise Decline("a constant of higher rank than the input broadcasts it up")
        parameters = [(gamma, "scale", x.dtype.numpy()), (beta, "bias", None)]
        return normalization_replacement("LayerNormalization", x, normalized[0] - rank, epsilon, parameters, output, removed)


def normalization_replacement(
    op_type: str,
    x: ir.Value,
    axis: int,
    epsilon: float,
    parameters: list[tuple[ir.Value | None, str, type | None]],
    output: ir.Value,
    removed: list[ir.Node],
) -> Replacement:
    """`removed` (computing `output`)  =>  one `op_type(x, parameters...)` normalizing from `axis`.

    `parameters` are (value or None, name suffix, dtype of ones for a missing one or None to leave
    it out); a constant not of the normalized dims becomes a new initializer broadcast to them.
    """
    replacement = Replacement(removed=removed, after=removed[-1])
    dims = tuple(int(d) for d in x.shape[axis:])
    inputs = [x]
    for value, suffix, default in parameters:
        base = f"{output.name}_{suffix}"
        if value is None:
            if default is not None:
                inputs.append(replacement.initializer(base, np.ones(dims, default)))
            continue
        array = constant_array(value)
        inputs.append(value if array.shape == dims else replacement.initializer(base, as_parameter(array, dims)))
    attributes = [ir.AttrInt64("axis", axis), ir.AttrFloat32("epsilon", epsilon)]
    replacement.insert(ir.Node("", op_type, inputs, attributes, num_outputs=1), output)
    return replacement


class FuseLayerNormPass(RewritePass, name="fuse-layer-norm", level="O2", preconditions={NEEDS_SHAPES}):
    """Replace decomposed LayerNorm (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div[/Mul/Add]) by LayerNormalization (opset >= 17)."""

    rules = (_LayerNormDecomposition,)


class _OnnxruntimeLayerNorm(_LayerNormDecomposition):
    name = "layernorm (opset < 17, onnxruntime)"

    def opset_reason(self, opset: int) -> str | None:
        return "opset 17 or later: the standard fusion applies" if opset >= 17 else None


class FuseLayerNormAnyOpsetPass(RewritePass, name="fuse-layer-norm-ort", level="O3", preconditions={NEEDS_SHAPES}):
    """Below opset 17: replace decomposed LayerNorm by the LayerNormalization onnxruntime runs at any opset."""

    rules = (_OnnxruntimeLayerNorm,)
