"""Gelu from its Erf form, as exporters emit it (opset >= 20).

`0.5 * x * (1 + Erf(x / sqrt(2)))` in any of the exporters' orders (Div by sqrt(2) or Mul by
1/sqrt(2); the 0.5 applied first, last or to x)  =>  `Gelu(x)`.
"""

from __future__ import annotations

import dataclasses
import math

import onnx_ir as ir

from optimizer.rewriter import Declined, RewritePass, Rule
from passes.fusion.matching import other_operand, scalar, sole_consumer
from passes.graph_edit import replace_pattern

__all__ = ["FuseGeluPass"]


def _close(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-4 * abs(target)


@dataclasses.dataclass
class _Match:
    x: ir.Value
    output: ir.Value
    last: ir.Node
    removed: list[ir.Node]


class _ErfGelu(Rule):
    name = "gelu"
    anchor = "Erf"

    def match(self, node: ir.Node, model: ir.Model):
        if model.opset_imports.get("", 0) < 20:
            return Declined("opset below 20 (use --target-opset 20)")
        scale = node.inputs[0].producer()
        if scale is None or scale.op_type not in ("Div", "Mul") or len(scale.outputs[0].uses()) != 1:
            return Declined("Erf input is not x / sqrt(2)")
        x, factor = scale.inputs[0], scalar(scale.inputs[1])
        if not (_close(factor, math.sqrt(2)) if scale.op_type == "Div" else _close(factor, 1 / math.sqrt(2))):
            return Declined("Erf input is not x / sqrt(2)")
        plus_one = sole_consumer(node.outputs[0], "Add")
        if plus_one is None or not _close(scalar(other_operand(plus_one, node.outputs[0])), 1.0):
            return Declined("Erf is not followed by + 1")
        first = sole_consumer(plus_one.outputs[0], "Mul")
        if first is None:
            return Declined("1 + Erf is not multiplied")
        removed = [scale, node, plus_one, first]
        operand = other_operand(first, plus_one.outputs[0])
        if operand is x or _close(scalar(operand), 0.5):
            second = sole_consumer(first.outputs[0], "Mul")
            if second is None:
                return Declined("product is not completed by a second Mul")
            remaining = other_operand(second, first.outputs[0])
            if not ((operand is x and _close(scalar(remaining), 0.5)) or (operand is not x and remaining is x)):
                return Declined("product is not 0.5 * x * (1 + Erf)")
            removed.append(second)
            return _Match(x, second.outputs[0], second, removed)
        half = operand.producer() if operand is not None else None
        if half is None or half.op_type != "Mul" or len(operand.uses()) != 1 or x not in half.inputs or not _close(scalar(other_operand(half, x)), 0.5):
            return Declined("product is not 0.5 * x * (1 + Erf)")
        removed.insert(0, half)
        return _Match(x, first.outputs[0], first, removed)

    def rewrite(self, match: _Match) -> None:
        replace_pattern(ir.Node("", "Gelu", [match.x], num_outputs=1), match.last, match.output, match.removed)


class FuseGeluPass(RewritePass):
    name = "fuse-gelu"
    level = "O2"
    description = "Replace 0.5*x*(1+Erf(x/sqrt(2))) in its exporters' orders by Gelu (opset >= 20)."
    rules = (_ErfGelu,)
