"""Transposes folded away: composed with each other, or into Gemm's transA/transB.

`Transpose(Transpose(x, p1), p2)  =>  Transpose(x, q)` with `q[i] = p1[p2[i]]`, or `x` itself when q
is the identity (tf2onnx's NHWC <-> NCHW pairs around layout-sensitive ops);
`Gemm(Transpose(a), b, c)  =>  Gemm(a, b, c, transA=1 - transA)`, likewise for B and transB;
`MatMul(Transpose(a), W)  =>  Gemm(a, W, transA=1)` and `MatMul(W, Transpose(b))  =>  Gemm(W, b, transB=1)`
for a 2-D Transpose, a 2-D float constant W and opset >= 11 (Gemm without C).
A Transpose of a constant is left to constant folding; a Transpose whose output has other readers
stays, and so does a result that would have to rename a graph input to keep the graph's outputs.
"""

from __future__ import annotations


import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import chain_head, default_opset, producer_of, sole_consumer
from optimizer.graph.editing import can_bypass
from optimizer.graph.values import constant_array, constant_tensor

__all__ = ["FuseTransposesPass"]

_LEFT_TO_FOLDING = "Transpose of a constant is left to constant folding"
_MATMUL_TYPES = (ir.DataType.FLOAT, ir.DataType.DOUBLE)


def _perm(node: ir.Node) -> list[int] | None:
    """The Transpose's permutation: its `perm`, else the reversal of its input's axes (None when the rank is unknown)."""
    attr = node.attributes.get("perm")
    if attr is not None:
        return None if attr.is_ref() else list(attr.as_ints())
    shape = node.inputs[0].shape
    return None if shape is None else list(reversed(range(len(shape))))


class _TransposeTranspose(Rule):
    name = "transpose+transpose"
    anchors = ("Transpose",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        first = chain_head(node, "Transpose")
        x = first.inputs[0]
        if constant_tensor(x) is not None:
            raise Decline(_LEFT_TO_FOLDING)
        inner, outer = _perm(first), _perm(node)
        if inner is None or outer is None:
            raise Decline("permutation unknown (no perm and input rank unknown)")
        composed = [inner[axis] for axis in outer]
        if composed == list(range(len(composed))) and not can_bypass(node.outputs[0], x):
            raise Decline("identity result is a graph output that cannot be renamed")
        if composed == list(range(len(composed))):
            replacement = Replacement(removed=[first, node])
            replacement.reroute(node.outputs[0], x)
            return replacement
        replacement = Replacement(removed=[first])
        replacement.set_input(node, 0, x)
        replacement.set_attribute(node, "perm", ir.AttrInt64s("perm", composed))
        return replacement


def _swaps_two_axes(node: ir.Node | None, rank_known_two: bool) -> bool:
    """A Transpose with perm [1, 0] (or no perm on an input known to be 2-D)."""
    if node is None:
        return False
    attr = node.attributes.get("perm")
    if attr is None:
        return rank_known_two or (node.inputs[0].shape is not None and len(node.inputs[0].shape) == 2)
    return not attr.is_ref() and list(attr.as_ints()) == [1, 0]


class _TransposeGemm(Rule):
    name = "transpose+gemm"
    anchors = ("Gemm",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        # Gemm's A and B are 2-D, so a Transpose feeding them is 2-D too.
        candidates = {i: producer_of(node.inputs[i], "Transpose") for i in (0, 1)}
        candidates = {i: t for i, t in candidates.items() if _swaps_two_axes(t, rank_known_two=True)}
        if not candidates:
            raise Decline("no transposed operand")
        folded, reason = {}, None
        for index, transpose in candidates.items():
            if sole_consumer(transpose.outputs[0]) is None:
                reason = reason or "Transpose output is used elsewhere"
            elif constant_tensor(transpose.inputs[0]) is not None:
                reason = reason or _LEFT_TO_FOLDING
            else:
                folded[index] = transpose
        if not folded:
            raise Decline(reason)
        replacement = Replacement(removed=list(folded.values()))
        for index, transpose in folded.items():
            flag = ("transA", "transB")[index]
            attr = node.attributes.get(flag)
            current = 0 if attr is None else attr.as_int()
            replacement.set_attribute(node, flag, ir.AttrInt64(flag, 1 - current))
            replacement.set_input(node, index, transpose.inputs[0])
        return replacement


class _TransposeMatMul(Rule):
    name = "transpose+matmul"
    anchors = ("MatMul",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        found = next(
            ((i, t) for i in (0, 1) if _swaps_two_axes(t := producer_of(node.inputs[i], "Transpose"), rank_known_two=False)),
            None,
        )
        if found is None:
            raise Decline("no 2-D transposed operand")
        index, transpose = found
        if sole_consumer(transpose.outputs[0]) is None:
            raise Decline("Transpose output is used elsewhere")
        x = transpose.inputs[0]
        if constant_tensor(x) is not None:
            raise Decline(_LEFT_TO_FOLDING)
        weight = constant_array(node.inputs[1 - index])
        if weight is None or weight.ndim != 2:
            raise Decline("other operand is not a 2-D constant")
        if x.dtype not in _MATMUL_TYPES or node.inputs[1 - index].dtype != x.dtype:
            raise Decline("not float32 or float64")
        if default_opset(model) < 11:
            raise Decline("opset below 11 (Gemm needs C)")
        operands = [node.inputs[0], node.inputs[1]]
        operands[index] = x
        flag = ("transA", "transB")[index]
        gemm = ir.Node("", "Gemm", operands, attributes=[ir.AttrInt64(flag, 1)], num_outputs=1)
        replacement = Replacement(removed=[transpose, node], nodes=[gemm])
        replacement.reroute(node.outputs[0], gemm.outputs[0])
        return replacement


class FuseTransposesPass(RewritePass, name="fuse-transposes", level="O2", preconditions={NEEDS_SHAPES}):
    """Compose consecutive Transposes (dropping pairs that cancel) and fold 2-D Transposes into Gemm's transA/transB."""

    rules = (_TransposeTranspose, _TransposeGemm, _TransposeMatMul)
