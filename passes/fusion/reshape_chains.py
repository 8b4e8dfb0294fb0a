"""Chains of data-movement ops collapse into one op, or into nothing when they cancel.

`Reshape(R(x), s2)  =>  Reshape(x, s2')` for R a Reshape, Flatten, Squeeze or Unsqueeze (PyTorch's
view().view(), flatten().view()): a 0 in s2 (without allowzero) copies a dim of R's output, so s2'
has it resolved from R's constant shape or R's inferred output shape, else the rule declines;
`Squeeze(Unsqueeze(x, a), a)  =>  x`, `Unsqueeze(Squeeze(x, a), a)  =>  x`;
`Unsqueeze(Unsqueeze(x, a1), a2)  =>  Unsqueeze(x, a)`, `Squeeze(Squeeze(x, a1), a2)  =>  Squeeze(x, a)`
(axes as an attribute below opset 13, as an input from 13);
`Slice(Slice(x, s1, e1, a1, t1), s2, e2, a2, t2)  =>  Slice(x, s1+s2, e1+e2, a1+a2, t1+t2)` when the
axes a1 and a2 are disjoint (attributes below opset 10, inputs from 10);
`Cast(Cast(x, T1), T2)  =>  Cast(x, T2)`, and `Cast(Cast(x, T1), T0)  =>  x` for x of type T0, when T1
holds every value of T0 exactly (float16 -> float32, int32 -> int64, uint8 -> int16, bool -> any), so
the result is bit-identical; a narrowing intermediate (float32 -> float16, int64 -> int32) stays.
The first op of a chain must have no other reader; a result that would have to rename a graph
input or initializer to keep the graph's outputs is declined.
"""

from __future__ import annotations


import numpy as np
import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import chain_head, default_opset
from optimizer.graph.editing import can_bypass
from optimizer.graph.values import constant_array

__all__ = ["FuseReshapeChainsPass"]

_NOT_RENAMED = "result is a graph output that cannot be renamed"
_UNKNOWN_RANK = "negative axes on an input of unknown rank"


def _attr_int(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None or attr.is_ref() else attr.as_int()


def _attr_ints(node: ir.Node, name: str) -> list[int] | None:
    attr = node.attributes.get(name)
    return None if attr is None or attr.is_ref() else [int(v) for v in attr.as_ints()]


def _input_ints(node: ir.Node, index: int) -> list[int] | None:
    """A constant integer input as a list (None when absent or not constant)."""
    value = node.inputs[index] if index < len(node.inputs) else None
    array = constant_array(value)
    return None if array is None else [int(v) for v in array.reshape(-1)]


def _has_input(node: ir.Node, index: int) -> bool:
    return index < len(node.inputs) and node.inputs[index] is not None


def _rank(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def _normalized(axes: list[int], rank: int | None) -> list[int] | None:
    """Axes made non-negative against `rank` (None when a negative axis meets an unknown rank)."""
    if all(a >= 0 for a in axes):
        return axes
    return None if rank is None else [a + rank if a < 0 else a for a in axes]


def _cancel(first: ir.Node, second: ir.Node) -> Replacement:
    """The chain computes its input: readers of the second op's output read the first op's input."""
    replacement = Replacement(removed=[first, second])
    replacement.reroute(second.outputs[0], first.inputs[0])
    return replacement


def _skip_first(first: ir.Node, second: ir.Node, replacement: Replacement | None = None) -> Replacement:
    """The second op reads the first op's input directly (after `replacement`'s edits); the first goes."""
    replacement = replacement or Replacement()
    replacement.set_input(second, 0, first.inputs[0])
    replacement.removed.append(first)
    return replacement


# Reshape chains ------------------------------------------------------------------------------------


def _resolve_zeros(shape: list[int], first: ir.Node) -> list[int] | None:
    """`shape` with each 0 (a copy of the intermediate's dim) made explicit, or kept when the
    intermediate copied that dim from x itself; None when a copied dim is not known."""
    inner = _input_ints(first, 1) if first.op_type == "Reshape" else None
    inner_copies = first.op_type == "Reshape" and not _attr_int(first, "allowzero", 0)
    middle = first.outputs[0].shape
    resolved = []
    for index, dim in enumerate(shape):
        if dim != 0:
            resolved.append(dim)
            continue
        if inner is not None and index < len(inner) and (inner[index] > 0 or (inner[index] == 0 and inner_copies)):
            resolved.append(inner[index])
            continue
        known = middle[index] if middle is not None and index < len(middle) else None
        if not isinstance(known, int) or known <= 0:
            return None
        resolved.append(known)
    return resolved


class _ReshapeChain(Rule):
    name = "reshape chain"
    anchors = ("Reshape",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        first = chain_head(node, "Reshape", "Flatten", "Squeeze", "Unsqueeze")
        shape = _input_ints(node, 1)
        if shape is None:
            raise Decline("second shape is not a constant")
        resolved = shape if _attr_int(node, "allowzero", 0) else _resolve_zeros(shape, first)
        if resolved is None:
            raise Decline("0 in the second shape copies an intermediate dim that is not known")
        replacement = Replacement()
        if resolved != shape:
            base = f"{node.outputs[0].name or 'reshape'}_shape"
            replacement.set_input(node, 1, replacement.initializer(base, np.array(resolved, dtype=np.int64)))
        return _skip_first(first, node, replacement)


# Squeeze / Unsqueeze chains ------------------------------------------------------------------------


def _axes(node: ir.Node) -> list[int] | None:
    """The node's axes (attribute or input), None when it has none; declines when not constant."""
    attr = _attr_ints(node, "axes")
    if attr is not None:
        return attr
    if not _has_input(node, 1):
        return None
    axes = _input_ints(node, 1)
    if axes is None:
        raise Decline("axes are not constant")
    return axes


def _nth_free(taken: set[int], n: int) -> int:
    """The n-th (from 0) non-negative position not in `taken`."""
    position = -1
    for _ in range(n + 1):
        position += 1
        while position in taken:
            position += 1
    return position


class _SqueezeChain(Rule):
    """Squeeze/Unsqueeze after Squeeze/Unsqueeze: opposite ops with the same axes cancel, equal ops merge."""

    name = "squeeze chain"
    anchors = ("Squeeze",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        first = chain_head(node, "Squeeze", "Unsqueeze")
        inner, outer = _axes(first), _axes(node)
        if inner is None or outer is None:
            raise Decline("Squeeze without axes")
        x = first.inputs[0]
        rank = _rank(x)
        # Ranks the axes refer to: the first op's input or output, then the second op's.
        grows = first.op_type == "Unsqueeze"
        middle_rank = None if rank is None else rank + len(inner) if grows else rank - len(inner)
        inner_reference = middle_rank if grows else rank
        outer_reference = None if middle_rank is None else middle_rank + len(outer) if node.op_type == "Unsqueeze" else middle_rank
        a1, a2 = _normalized(inner, inner_reference), _normalized(outer, outer_reference)
        if first.op_type != node.op_type:
            if a1 is None or a2 is None:
                # Both all negative against one rank (Unsqueeze(-1) then Squeeze(-1)) still compare.
                if not (all(a < 0 for a in inner + outer) and len(inner) == len(outer)):
                    raise Decline(_UNKNOWN_RANK)
                a1, a2 = inner, outer
            if sorted(a1) != sorted(a2):
                raise Decline("axes do not cancel")
            if not can_bypass(node.outputs[0], x):
                raise Decline(_NOT_RENAMED)
            return _cancel(first, node)
        if a1 is None or a2 is None:
            raise Decline(_UNKNOWN_RANK)
        if grows:  # output positions: a2, and the middle's positions a1 among the others
            merged = set(a2) | {_nth_free(set(a2), i) for i in a1}
        else:  # input positions: a1, and the middle's positions a2 among the others
            merged = set(a1) | {_nth_free(set(a1), i) for i in a2}
        replacement = Replacement()
        if "axes" in node.attributes:
            replacement.set_attribute(node, "axes", ir.AttrInt64s("axes", sorted(merged)))
        else:
            base = f"{node.outputs[0].name or node.op_type.lower()}_axes"
            replacement.set_input(node, 1, replacement.initializer(base, np.array(sorted(merged), dtype=np.int64)))
        return _skip_first(first, node, replacement)


class _UnsqueezeChain(_SqueezeChain):
    name = "unsqueeze chain"
    anchors = ("Unsqueeze",)


# Slice chains --------------------------------------------------------------------------------------


def _slice_parameters(node: ir.Node, attribute_form: bool) -> tuple[list[int], ...] | None:
    """(starts, ends, axes, steps) with the defaults filled in; None when any is not constant."""
    if attribute_form:
        starts, ends, axes, steps = _attr_ints(node, "starts"), _attr_ints(node, "ends"), _attr_ints(node, "axes"), None
    else:
        starts, ends, axes, steps = (_input_ints(node, i) for i in range(1, 5))
        if (_has_input(node, 3) and axes is None) or (_has_input(node, 4) and steps is None):
            return None
    if starts is None or ends is None:
        return None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    return starts, ends, axes, steps


class _SliceChain(Rule):
    name = "slice chain"
    anchors = ("Slice",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        first = chain_head(node, "Slice")
        attribute_form = default_opset(model) < 10
        inner, outer = _slice_parameters(first, attribute_form), _slice_parameters(node, attribute_form)
        if inner is None or outer is None:
            raise Decline("slice parameters are not constants")
        rank = _rank(first.inputs[0])
        a1, a2 = _normalized(inner[2], rank), _normalized(outer[2], rank)
        if a1 is None or a2 is None:
            raise Decline(_UNKNOWN_RANK)
        if set(a1) & set(a2):
            raise Decline("Slice axes overlap")
        # Slices of different axes are independent: each axis keeps its dim, so its bounds clamp alike.
        merged = [list(p1) + list(p2) for p1, p2 in zip(inner, outer)]
        merged[2] = a1 + a2
        replacement = Replacement()
        names = ("starts", "ends", "axes", "steps")
        if "starts" in node.attributes:
            for name, values in zip(names[:3], merged):
                replacement.set_attribute(node, name, ir.AttrInt64s(name, values))
        else:
            base = node.outputs[0].name or "slice"
            for index, (name, values) in enumerate(zip(names, merged), start=1):
                replacement.set_input(node, index, replacement.initializer(f"{base}_{name}", np.array(values, dtype=np.int64)))
        return _skip_first(first, node, replacement)


# Cast chains ---------------------------------------------------------------------------------------

_T = ir.DataType
_SIGNED_BITS = {_T.INT8: 8, _T.INT16: 16, _T.INT32: 32, _T.INT64: 64}
_UNSIGNED_BITS = {_T.UINT8: 8, _T.UINT16: 16, _T.UINT32: 32, _T.UINT64: 64}
_SIGNIFICAND_BITS = {_T.FLOAT16: 11, _T.BFLOAT16: 8, _T.FLOAT: 24, _T.DOUBLE: 53}
_FLOAT_WIDENINGS = {
    _T.FLOAT16: {_T.FLOAT16, _T.FLOAT, _T.DOUBLE},
    _T.BFLOAT16: {_T.BFLOAT16, _T.FLOAT, _T.DOUBLE},
    _T.FLOAT: {_T.FLOAT, _T.DOUBLE},
    _T.DOUBLE: {_T.DOUBLE},
}
_EXACT_CAST_TYPES = {_T.BOOL, *_SIGNED_BITS, *_UNSIGNED_BITS, *_SIGNIFICAND_BITS}


def _holds(wide: ir.DataType, narrow: ir.DataType) -> bool:
    """Whether every value of `narrow` is exactly a value of `wide`."""
    if narrow == wide or narrow == _T.BOOL:
        return True
    if wide == _T.BOOL:
        return False
    if narrow in _FLOAT_WIDENINGS:
        return wide in _FLOAT_WIDENINGS[narrow]
    # An integer: its magnitude bits (a signed minimum is a power of two, so it fits alike).
    bits = _SIGNED_BITS[narrow] - 1 if narrow in _SIGNED_BITS else _UNSIGNED_BITS[narrow]
    if wide in _SIGNIFICAND_BITS:
        return bits <= _SIGNIFICAND_BITS[wide]
    if wide in _UNSIGNED_BITS:
        return narrow in _UNSIGNED_BITS and bits <= _UNSIGNED_BITS[wide]
    return bits <= _SIGNED_BITS[wide] - 1


class _CastChain(Rule):
    name = "cast chain"
    anchors = ("Cast",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        first = chain_head(node, "Cast")
        x = first.inputs[0]
        source = x.dtype
        if source is None or source == _T.UNDEFINED:
            raise Decline("source type unknown")
        middle, target = _T(_attr_int(first, "to", 0)), _T(_attr_int(node, "to", 0))
        if not {source, middle, target} <= _EXACT_CAST_TYPES:
            raise Decline("type outside the exact-cast table")
        if not _holds(middle, source):
            raise Decline("intermediate type narrows the source type")
        if target == source:
            if not can_bypass(node.outputs[0], x):
                raise Decline(_NOT_RENAMED)
            return _cancel(first, node)
        return _skip_first(first, node)


class FuseReshapeChainsPass(RewritePass, name="fuse-reshape-chains", level="O2", preconditions={NEEDS_SHAPES}):
    """Collapse Reshape/Flatten/Squeeze/Unsqueeze chains into one op, cancel Unsqueeze-Squeeze pairs, merge Slices of disjoint axes and drop exact intermediate Casts."""

    rules = (_ReshapeChain, _SqueezeChain, _UnsqueezeChain, _SliceChain, _CastChain)
