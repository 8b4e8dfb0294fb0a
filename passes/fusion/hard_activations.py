"""HardSigmoid and HardSwish from their decompositions, as exporters and hand-written models emit them.

`clamp(a * x + b, 0, high) * s` with `high * s = 1`  =>  `HardSigmoid(x, alpha=a*s, beta=b*s)`:
`Clip(x * 0.2 + 0.5, 0, 1)`, PyTorch's `relu6(x + 3) / 6` (Div by 6 or Mul by 1/6), the affine part
any chain of Add/Sub/Mul/Div by scalar constants, the clamp a Clip (bounds as attributes before
opset 11, as inputs from 11), `Min(Max(v, low), high)` or `Max(Min(v, high), low)`.

`x * HardSigmoid(x)` with alpha 1/6 and beta 1/2, in either form, the scaling before or after the
multiplication by x (`x * (relu6(x + 3) / 6)`, `x * relu6(x + 3) / 6`, `x * HardSigmoid(x)` as
torch.onnx exports hardswish below opset 14)  =>  `HardSwish(x)` (opset >= 14).

Declined when a one-element constant has more dims than x: `Div(Clip(x + 3, 0, 6), 6[1, 1, 1])` on a
2-D x broadcasts it to 3-D, which HardSigmoid(x) would not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import broadcasts_up, is_default_domain, is_op, other_operand, producer_of, scalar, single_use
from optimizer.graph.values import constant_tensor

__all__ = ["FuseHardActivationsPass"]

_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE)


def _equal(value: float, target: float) -> bool:
    """Equal up to float32 rounding of the constants (1/6 stored as float32 times 6 is 1 + 3e-8)."""
    return abs(value - target) <= 1e-6 * max(1.0, abs(target))


@dataclasses.dataclass
class _Clamp:
    """`clamp(alpha * x + beta, low, high)`: its nodes, the affine chain's first (producers first)."""

    clamped: ir.Value
    x: ir.Value
    alpha: float
    beta: float
    low: float
    high: float
    output: ir.Value
    nodes: list[ir.Node]


@dataclasses.dataclass
class _Match:
    op_type: str
    x: ir.Value
    attributes: list[ir.Attr]
    output: ir.Value
    removed: list[ir.Node]


def _affine_input(value: ir.Value, *, through_shared: bool = False) -> tuple[ir.Value, float, float, list[ir.Node]]:
    """`value = alpha * x + beta` followed up through Add/Sub/Mul/Div by a scalar constant, stopping at a
    value read elsewhere (unless `through_shared`): x, alpha, beta and the nodes, producers first."""
    alpha, beta, nodes = 1.0, 0.0, []
    while True:
        node = value.producer()
        if not is_op(node, "Add", "Sub", "Mul", "Div"):
            break
        if not through_shared and (len(value.uses()) != 1 or value.is_graph_output()):
            break
        constants = [scalar(v) for v in node.inputs]
        if len(constants) != 2 or (constants[0] is None) == (constants[1] is None):
            break
        index = 0 if constants[0] is not None else 1
        c, other = constants[index], node.inputs[1 - index]
        if node.op_type == "Add":
            beta += alpha * c
        elif node.op_type == "Sub" and index == 1:  # other - c
            beta -= alpha * c
        elif node.op_type == "Sub":  # c - other
            beta, alpha = beta + alpha * c, -alpha
        elif node.op_type == "Mul":
            alpha *= c
        elif index == 1 and c != 0:  # other / c
            alpha /= c
        else:
            break
        nodes.append(node)
        value = other
    return value, alpha, beta, nodes[::-1]


def _float_attribute(node: ir.Node, name: str, default: float) -> float:
    attr = node.attributes.get(name)
    return default if attr is None or attr.is_ref() else float(attr.as_float())


def _clamp_bounds(node: ir.Node, opset: int) -> tuple[ir.Value, float, float, list[ir.Node], ir.DataType | None]:
    """The clamped value, the bounds, the clamp's nodes (inner first) and the bounds' element type."""
    if node.op_type == "Clip":
        if opset < 11:
            return node.inputs[0], _float_attribute(node, "min", -math.inf), _float_attribute(node, "max", math.inf), [node], None
        bounds, dtype = [], None
        for index, unbounded in ((1, -math.inf), (2, math.inf)):
            value = node.inputs[index] if len(node.inputs) > index else None
            if value is None:
                bounds.append(unbounded)
                continue
            bound = scalar(value)
            if bound is None:
                raise Decline("Clip bounds are not constant")
            bounds.append(bound)
            dtype = constant_tensor(value).dtype
        return node.inputs[0], bounds[0], bounds[1], [node], dtype
    # Min(Max(v, low), high) or Max(Min(v, high), low)
    inner_op = "Max" if node.op_type == "Min" else "Min"
    form = f"{node.op_type}({inner_op}(x, constant), constant)"
    if len(node.inputs) != 2:
        raise Decline(f"{node.op_type} is not a clamp {form}")
    outer_index = 1 if scalar(node.inputs[1]) is not None else 0
    inner = producer_of(node.inputs[1 - outer_index], inner_op)
    if inner is None or len(inner.inputs) != 2 or scalar(node.inputs[outer_index]) is None:
        raise Decline(f"{node.op_type} is not a clamp {form}")
    inner_index = 1 if scalar(inner.inputs[1]) is not None else 0
    if scalar(inner.inputs[inner_index]) is None:
        raise Decline(f"{node.op_type} is not a clamp {form}")
    if not single_use(inner.outputs[0]):
        raise Decline("an intermediate is used elsewhere")
    outer_bound, inner_bound = scalar(node.inputs[outer_index]), scalar(inner.inputs[inner_index])
    low, high = (inner_bound, outer_bound) if node.op_type == "Min" else (outer_bound, inner_bound)
    return inner.inputs[1 - inner_index], low, high, [inner, node], constant_tensor(node.inputs[outer_index]).dtype


def _match_clamp(node: ir.Node, model: ir.Model) -> _Clamp:
    found = _clamp_bounds(node, model.opset_imports.get("", 0))
    clamped, low, high, clamp_nodes, bounds_dtype = found
    x, alpha, beta, chain = _affine_input(clamped)
    dtype = x.dtype if x.dtype is not None else bounds_dtype
    if dtype is not None and dtype not in _FLOATS:
        raise Decline("input is not floating point")
    return _Clamp(clamped, x, alpha, beta, low, high, node.outputs[0], chain + clamp_nodes)


def _scale(node: ir.Node, value: ir.Value) -> float | None:
    """The factor `node` multiplies `value` by, when it is a Mul by, or a Div by, a nonzero scalar constant."""
    if not is_default_domain(node) or len(node.inputs) != 2:
        return None
    if node.op_type == "Mul":
        return scalar(other_operand(node, value))
    if node.op_type == "Div" and node.inputs[0] is value and node.inputs[1] is not value:
        divisor = scalar(node.inputs[1])
        return 1.0 / divisor if divisor else None
    return None


def _times(node: ir.Node, value: ir.Value, x: ir.Value) -> bool:
    """`node` is `value * x`."""
    return is_op(node, "Mul") and len(node.inputs) == 2 and other_operand(node, value) is x


def _follow(value: ir.Value, wanted: Callable[[ir.Node], bool]) -> ir.Node | None:
    """The reader of `value` that is `wanted` when it is the only one; None when no reader is wanted."""
    readers = [use.node for use in value.uses()]
    found = [reader for reader in readers if wanted(reader)]
    if not found:
        return None
    if len(readers) != 1 or value.is_graph_output():
        raise Decline("an intermediate is used elsewhere")
    return found[0]


def _scaled(output: ir.Value, removed: list[ir.Node]) -> tuple[float, ir.Value]:
    """The factor and result of the Mul/Div by a scalar reading `output` (appended to `removed`),
    or (1, output) when there is none."""
    scale = _follow(output, lambda reader: _scale(reader, output) is not None)
    if scale is None:
        return 1.0, output
    removed.append(scale)
    return _scale(scale, output), scale.outputs[0]


def _check_unit_range(clamp: _Clamp, factor: float) -> None:
    if clamp.low != 0 or not _equal(clamp.high * factor, 1.0):
        raise Decline("clamp range is not [0, 1] after scaling")


class _HardSigmoid(Rule):
    name = "hard-sigmoid"
    anchors = ("Clip", "Min", "Max")

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        clamp = _match_clamp(node, model)
        output, removed, factor = clamp.output, list(clamp.nodes), 1.0
        if not (clamp.low == 0 and _equal(clamp.high, 1.0)):
            factor, output = _scaled(output, removed)
        _check_unit_range(clamp, factor)
        if len(removed) == 1:
            raise Decline("a plain Clip to [0, 1]: nothing to fuse")
        attributes = [ir.AttrFloat32("alpha", clamp.alpha * factor), ir.AttrFloat32("beta", clamp.beta * factor)]
        return _replacement(_Match("HardSigmoid", clamp.x, attributes, output, removed))


class _HardSwish(Rule):
    """`x * HardSigmoid(x)` from a clamp (Clip, Min, Max anchors) or from a HardSigmoid node."""

    name = "hard-swish"
    anchors = ("Clip", "Min", "Max", "HardSigmoid")

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        if model.opset_imports.get("", 0) < 14:
            raise Decline("opset below 14 (use --target-opset 14)")
        if node.op_type == "HardSigmoid":
            return _of_hard_sigmoid(node)
        clamp = _match_clamp(node, model)
        x, output, removed, factor = clamp.x, clamp.output, list(clamp.nodes), 1.0
        step = _follow(output, lambda reader: _scale(reader, output) is not None or _times(reader, output, x))
        if step is not None and not _times(step, output, x):  # scaled before the multiplication by x
            factor, output = _scale(step, output), step.outputs[0]
            removed.append(step)
            step = _follow(output, lambda reader: _times(reader, output, x))
        if step is None:
            shared = _affine_input(clamp.clamped, through_shared=True)[0]
            if shared is not x and any(_times(use.node, output, shared) for use in output.uses()):
                raise Decline("an intermediate is used elsewhere")
            raise Decline("clamp is not multiplied by its input")
        output = step.outputs[0]
        removed.append(step)
        if factor == 1.0 and not _equal(clamp.high, 1.0):  # scaled after the multiplication by x
            factor, output = _scaled(output, removed)
        _check_unit_range(clamp, factor)
        if not (_equal(clamp.alpha * factor, 1 / 6) and _equal(clamp.beta * factor, 0.5)):
            raise Decline("HardSigmoid part is not alpha 1/6, beta 1/2")
        return _replacement(_Match("HardSwish", x, [], output, removed))


def _of_hard_sigmoid(node: ir.Node) -> Replacement:
    """`x * HardSigmoid(x, alpha=1/6, beta=1/2)`, as torch.onnx exports hardswish below opset 14."""
    x, output = node.inputs[0], node.outputs[0]
    times = _follow(output, lambda reader: _times(reader, output, x))
    if times is None:
        raise Decline("HardSigmoid is not multiplied by its input")
    if not (_equal(_float_attribute(node, "alpha", 0.2), 1 / 6) and _equal(_float_attribute(node, "beta", 0.5), 0.5)):
        raise Decline("HardSigmoid part is not alpha 1/6, beta 1/2")
    match = _Match("HardSwish", x, [], times.outputs[0], [node, times])
    return Replacement.fuse(_fused(match), match.removed[-1], match.output, match.removed)


def _replacement(match: _Match) -> Replacement:
    """The one fused node after the pattern's last node; declined when a constant in the pattern
    broadcasts x to a higher rank (`Div(Clip(x + 3, 0, 6), 6[1, 1, 1])` on a 2-D x is 3-D:
    HardSigmoid(x) would lose a dim)."""
    if broadcasts_up(match.removed, match.x):
        raise Decline("a constant of higher rank than the input broadcasts it up")
    return Replacement.fuse(_fused(match), match.removed[-1], match.output, match.removed)


def _fused(match: _Match) -> ir.Node:
    return ir.Node("", match.op_type, [match.x], match.attributes, num_outputs=1)


class FuseHardActivationsPass(RewritePass, name="fuse-hard-activations", level="O2", preconditions={NEEDS_SHAPES}):
    """Replace clamp(a*x+b, 0, 1) forms (Clip, Relu6(x+3)/6, Min/Max) by HardSigmoid, and x*HardSigmoid(x) forms by HardSwish (opset >= 14)."""

    # Needs shapes: the input's rank: a constant of higher rank broadcasts it up (see _replacement)
    # HardSwish first: a clamp it takes is gone before HardSigmoid would take its inner part.
    rules = (_HardSwish, _HardSigmoid)
