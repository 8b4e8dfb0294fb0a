"""Gelu from its Erf and Tanh forms, as exporters emit them (opset >= 20).

`0.5 * x * (1 + Erf(x / sqrt(2)))` in any of the exporters' orders (Div by sqrt(2) or Mul by
1/sqrt(2); the 0.5 applied first, last or to x)  =>  `Gelu(x)`.

`0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`, the 0.5 in the same orders and the Tanh
argument in any arrangement of Add/Sub/Mul/Div-by-constant/Pow that is that polynomial in x
(x^3 as Pow(x, 3) or x*x*x; x + 0.044715*x^3 or x*(1 + 0.044715*x*x); the sqrt(2/pi) outside or
folded into the coefficients)  =>  `Gelu(x, approximate="tanh")`.

Below opset 20 the standard op does not exist; O3 (models meant for onnxruntime) fuses the same
patterns into onnxruntime's com.microsoft `Gelu` and `FastGelu` (the Tanh form) instead.

Declined when a constant has more dims than x (`Mul(x[4], 0.5[1, 1])` broadcasts x to [1, 4]), and
the Tanh form below opset 20 on a scalar x (onnxruntime's FastGelu wants rank 1 or more).
"""

from __future__ import annotations

import dataclasses
import math

import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import MS_DOMAIN, broadcasts_up, is_op, other_operand, producer_of, scalar, single_use, sole_consumer
from optimizer.graph.editing import pattern_problem

__all__ = ["FuseGeluPass", "FuseGeluAnyOpsetPass"]

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_CUBIC = 0.044715
_MAX_POLYNOMIAL_NODES = 12
"""How far the Tanh argument is followed upstream; the exporters' forms take at most 6 nodes."""
_BROADCASTS = "a constant of higher rank than x broadcasts it up"
"""`Mul(x[4], 0.5[1, 1])` is [1, 4]: Gelu(x) would lose a dim."""


def _close(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-4 * abs(target)


@dataclasses.dataclass
class _Match:
    x: ir.Value
    output: ir.Value
    last: ir.Node
    removed: list[ir.Node]
    approximate: str = "none"


def _match_half_product(plus_one: ir.Node, x: ir.Value | None, function: str) -> tuple[ir.Value, list[ir.Node]]:
    """`0.5 * x * plus_one` in any order of its two Muls: x (found here when not given) and the Muls,
    last one last; declines otherwise."""
    one_plus = plus_one.outputs[0]
    first = sole_consumer(one_plus, "Mul")
    if first is None:
        raise Decline(f"1 + {function} is not multiplied")
    operand = other_operand(first, one_plus)
    half = producer_of(operand, "Mul")
    is_half_product = (
        half is not None
        and operand is not x
        and len(operand.uses()) == 1
        and not operand.is_graph_output()
        and any(_close(scalar(v), 0.5) for v in half.inputs)
    )
    if operand is x or _close(scalar(operand), 0.5) or (x is None and not is_half_product):
        second = sole_consumer(first.outputs[0], "Mul")
        if second is None:
            raise Decline("product is not completed by a second Mul")
        remaining = other_operand(second, first.outputs[0])
        if _close(scalar(operand), 0.5) and remaining is not None and scalar(remaining) is None and (x is None or remaining is x):
            return remaining, [first, second]
        if _close(scalar(remaining), 0.5) and scalar(operand) is None and (x is None or operand is x):
            return operand, [first, second]
        raise Decline(f"product is not 0.5 * x * (1 + {function})")
    if is_half_product:
        factor = next(v for v in half.inputs if _close(scalar(v), 0.5))
        half_x = half.inputs[1] if half.inputs[0] is factor else half.inputs[0]
        if scalar(half_x) is None and (x is None or half_x is x):
            return half_x, [half, first]
    raise Decline(f"product is not 0.5 * x * (1 + {function})")


class _StandardGelu(Rule):
    """Fuses into the standard Gelu, which needs opset 20."""

    def opset_reason(self, opset: int) -> str | None:
        return "opset below 20 (use --target-opset 20 or --level O3)" if opset < 20 else None

    def fused(self, match: _Match) -> ir.Node:
        attributes = [ir.AttrString("approximate", match.approximate)] if match.approximate != "none" else []
        return ir.Node("", "Gelu", [match.x], attributes, num_outputs=1)

    def _replacement(self, match: _Match) -> Replacement:
        return Replacement.fuse(self.fused(match), match.last, match.output, match.removed)


class _OnnxruntimeGelu(_StandardGelu):
    """Fuses into onnxruntime's Gelu / FastGelu, below opset 20 (above it, the standard rule applies)."""

    introduces = {MS_DOMAIN: 1}

    def opset_reason(self, opset: int) -> str | None:
        return "opset 20 or later: the standard fusion applies" if opset >= 20 else None

    def fused(self, match: _Match) -> ir.Node:
        op = "FastGelu" if match.approximate == "tanh" else "Gelu"
        return ir.Node(MS_DOMAIN, op, [match.x], num_outputs=1)


class _ErfGelu(_StandardGelu):
    name = "gelu"
    anchors = ("Erf",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        if (reason := self.opset_reason(model.opset_imports.get("", 0))) is not None:
            raise Decline(reason)
        scale = node.inputs[0].producer()
        if not is_op(scale, "Div", "Mul") or len(scale.outputs[0].uses()) != 1:
            raise Decline("Erf input is not x / sqrt(2)")
        x, factor = scale.inputs[0], scalar(scale.inputs[1])
        if not (_close(factor, math.sqrt(2)) if scale.op_type == "Div" else _close(factor, 1 / math.sqrt(2))):
            raise Decline("Erf input is not x / sqrt(2)")
        plus_one = sole_consumer(node.outputs[0], "Add")
        if plus_one is None or not _close(scalar(other_operand(plus_one, node.outputs[0])), 1.0):
            raise Decline("Erf is not followed by + 1")
        product = _match_half_product(plus_one, x, "Erf")
        _, muls = product
        removed = [scale, node, plus_one, *muls]
        if (problem := pattern_problem(removed, muls[-1].outputs[0])) is not None:
            raise Decline(problem)
        if broadcasts_up(removed, x):
            raise Decline(_BROADCASTS)
        return self._replacement(_Match(x, muls[-1].outputs[0], muls[-1], removed))


def _polynomial(value: ir.Value | None, x: ir.Value, nodes: list[ir.Node]) -> dict[int, float] | None:
    """`value` as a polynomial in `x` (degree -> coefficient, degree <= 3) when it is computed from x
    and scalar constants by Add, Sub, Mul, Div by a constant and Pow by 1, 2 or 3; else None.
    The nodes computing it are appended to `nodes`, each before its operands' producers; at most
    `_MAX_POLYNOMIAL_NODES` are followed."""
    if value is x:
        return {1: 1.0}
    constant = scalar(value)
    if constant is not None:
        return {0: constant}
    node = value.producer() if value is not None else None
    if not is_op(node, "Add", "Sub", "Mul", "Div", "Pow"):
        return None
    if len(nodes) >= _MAX_POLYNOMIAL_NODES:
        return None
    nodes.append(node)
    left = _polynomial(node.inputs[0], x, nodes)
    if left is None:
        return None
    if node.op_type in ("Pow", "Div"):
        operand = scalar(node.inputs[1])
        if node.op_type == "Div":
            result = None if not operand else {d: c / operand for d, c in left.items()}
        elif operand in (1.0, 2.0, 3.0):
            result = {0: 1.0}
            for _ in range(int(operand)):
                result = _times(result, left)
        else:
            result = None
    else:
        right = _polynomial(node.inputs[1], x, nodes)
        if right is None:
            return None
        if node.op_type == "Mul":
            result = _times(left, right)
        else:
            sign = 1.0 if node.op_type == "Add" else -1.0
            result = dict(left)
            for degree, coefficient in right.items():
                result[degree] = result.get(degree, 0.0) + sign * coefficient
    if result is None or max(result, default=0) > 3:
        return None
    return result


def _times(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    product: dict[int, float] = {}
    for da, ca in a.items():
        for db, cb in b.items():
            product[da + db] = product.get(da + db, 0.0) + ca * cb
    return product


class _TanhGelu(_StandardGelu):
    name = "gelu-tanh"
    anchors = ("Tanh",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        if (reason := self.opset_reason(model.opset_imports.get("", 0))) is not None:
            raise Decline(reason)
        plus_one = sole_consumer(node.outputs[0], "Add")
        if plus_one is None or not _close(scalar(other_operand(plus_one, node.outputs[0])), 1.0):
            raise Decline("Tanh is not followed by + 1")
        product = _match_half_product(plus_one, None, "Tanh")
        x, muls = product
        inner: list[ir.Node] = []
        polynomial = _polynomial(node.inputs[0], x, inner)
        if polynomial is None:
            raise Decline("Tanh input is not a cubic polynomial in x")
        terms = {degree: c for degree, c in polynomial.items() if c != 0.0}
        if set(terms) != {1, 3} or not _close(terms[1], _SQRT_2_OVER_PI) or not _close(terms[3] / terms[1], _CUBIC):
            raise Decline("Tanh input is not sqrt(2/pi) * (x + 0.044715 * x^3)")
        for inner_node in inner:
            out = inner_node.outputs[0]
            if not single_use(out):
                raise Decline("an intermediate is used elsewhere")
        removed = [*reversed(inner), node, plus_one, *muls]  # producers before their consumers
        if (problem := pattern_problem(removed, muls[-1].outputs[0])) is not None:
            raise Decline(problem)
        if broadcasts_up(removed, x):
            raise Decline(_BROADCASTS)
        return self._replacement(_Match(x, muls[-1].outputs[0], muls[-1], removed, approximate="tanh"))


class _OnnxruntimeErfGelu(_OnnxruntimeGelu, _ErfGelu):
    name = "gelu (opset < 20, onnxruntime)"


class _OnnxruntimeTanhGelu(_OnnxruntimeGelu, _TanhGelu):
    name = "fastgelu (opset < 20, onnxruntime)"

    def _replacement(self, match: _Match) -> Replacement:
        if match.x.shape is None or len(match.x.shape) == 0:
            # onnxruntime's FastGelu kernel: "Input 0 is expected to have 1 or more dimensions, got 0".
            raise Decline("FastGelu needs an input of rank 1 or more")
        return super()._replacement(match)


class FuseGeluPass(RewritePass, name="fuse-gelu", level="O2", preconditions={NEEDS_SHAPES}):
    """Replace 0.5*x*(1+Erf(x/sqrt(2))) and 0.5*x*(1+Tanh(sqrt(2/pi)*(x+0.044715*x^3))) in their exporters' orders by Gelu (opset >= 20)."""

    # Needs shapes: x's rank: a constant of higher rank broadcasts it up
    rules = (_ErfGelu, _TanhGelu)


class FuseGeluAnyOpsetPass(RewritePass, name="fuse-gelu-ort", level="O3", preconditions={NEEDS_SHAPES}):
    """Below opset 20: replace the Erf and Tanh Gelu forms by com.microsoft Gelu and FastGelu."""

    rules = (_OnnxruntimeErfGelu, _OnnxruntimeTanhGelu)
