"""A zero constant Pad of the spatial dims folds into the Conv or AveragePool that reads it.

`Conv(Pad(x, pads, 0), W, B)<pads=p>  =>  Conv(x, W, B)<pads=p + spatial(pads)>`, and likewise for
AveragePool with `count_include_pad=1`. Pad's `pads` list every axis, `[x0_begin, x1_begin, ...,
x0_end, x1_end, ...]` (or only the opset 18 `axes`); the consumer's list only the spatial axes, so
the batch and channel entries must be 0.

Folded only when the result is provably the same:
- Pad mode `constant` with value 0 (an attribute before opset 11; inputs from 11: constant `pads`,
  optional `constant_value`, optional opset 18 `axes`), no negative pads (those crop);
- Conv `auto_pad` NOTSET (or VALID, which pads nothing and becomes NOTSET); SAME_* pads by the
  input size, which the Pad changes;
- AveragePool `count_include_pad=1` (its implicit padding counts in the divisor like the Pad's zeros
  do; with 0 it would leave them out), `ceil_mode=0` (the rule that drops a last window starting in
  the end padding differs between implicit and explicit padding: the output shape changes), and
  total pads smaller than the kernel (onnxruntime refuses larger pool pads; Conv has no such limit);
- never MaxPool: its implicit padding takes no part in the max, a Pad's zeros do.
"""

from __future__ import annotations


import numpy as np
import onnx_ir as ir

from optimizer.pipeline import Decline
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import attribute, chain_head
from optimizer.graph.values import constant_array

__all__ = ["FusePadPass"]



def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _spatial_rank(node: ir.Node) -> int | None:
    """The number of spatial dims of the Conv/pool `node` reads, from what is known without inference."""
    kernel = attribute(node, "kernel_shape", None)
    if kernel is not None:
        return len(kernel)
    weight = _input(node, 1) if node.op_type == "Conv" else None
    for value in (weight, node.inputs[0]):
        if value is not None and value.shape is not None and len(value.shape) >= 2:
            return len(value.shape) - 2
    return None


def _pad_amounts(pad: ir.Node, opset: int, spatial: int | None) -> list[int]:
    """The Pad's `[begin..., end...]` amounts for the spatial dims, or why it cannot fold."""
    mode = attribute(pad, "mode", "constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        raise Decline("Pad mode is not constant")
    if opset < 11:
        pads = attribute(pad, "pads", attribute(pad, "paddings", None))
        if pads is None:
            raise Decline("pads are not a constant")
        value = float(attribute(pad, "value", 0.0))
        axes = None
    else:
        pads = constant_array(_input(pad, 1))
        if pads is None:
            raise Decline("pads are not a constant")
        value_input = _input(pad, 2)
        value_array = constant_array(value_input) if value_input is not None else np.zeros(1)
        if value_array is None or value_array.size != 1:
            raise Decline("pad value is not a constant")
        value = float(value_array.reshape(-1)[0])
        axes_input = _input(pad, 3)
        axes = None
        if axes_input is not None:
            axes = constant_array(axes_input)
            if axes is None:
                raise Decline("Pad axes are not a constant")
    if value != 0.0:
        raise Decline("pad value is not zero")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    if any(p < 0 for p in pads):
        raise Decline("negative pads (cropping)")
    if axes is None:
        rank = len(pads) // 2
        if len(pads) % 2 or (spatial is not None and rank != spatial + 2):
            raise Decline("pads do not match the input rank")
        begins, ends = pads[:rank], pads[rank:]
    else:
        if spatial is None:
            raise Decline("input rank is unknown")
        rank = spatial + 2
        axes = [int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes).reshape(-1)]
        if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes) or any(not 0 <= a < rank for a in axes):
            raise Decline("pads do not match the input rank")
        begins, ends = [0] * rank, [0] * rank
        for index, axis in enumerate(axes):
            begins[axis], ends[axis] = pads[index], pads[len(axes) + index]
    if begins[0] or begins[1] or ends[0] or ends[1]:
        raise Decline("pads on batch or channel dims")
    return begins[2:] + ends[2:]


class _PadInto(Rule):
    """Shared matching: the anchor's data input is a foldable Pad; subclasses check the anchor."""

    def check_consumer(self, node: ir.Node, model: ir.Model) -> None:
        """Raise `Decline` when the anchor cannot take padding at all."""
        raise NotImplementedError

    def check_pads(self, node: ir.Node, pads: list[int]) -> None:
        """Raise `Decline` when the anchor cannot take these total `pads`."""

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        pad = chain_head(node, "Pad", absent="input is not produced by Pad", shared="Pad output is also used elsewhere")
        if pad.graph is not node.graph:
            raise Decline(f"Pad and {node.op_type} live in different graphs")
        self.check_consumer(node, model)
        spatial = _spatial_rank(node)
        amounts = _pad_amounts(pad, model.opset_imports.get("", 1), spatial)
        own = attribute(node, "pads", None)
        own = [0] * len(amounts) if own is None else list(own)
        if len(own) != len(amounts):
            raise Decline("pads do not match the input rank")
        total = [a + b for a, b in zip(own, amounts)]
        self.check_pads(node, total)
        replacement = Replacement(removed=[pad])
        replacement.set_input(node, 0, pad.inputs[0])
        replacement.set_attribute(node, "auto_pad", None)
        replacement.set_attribute(node, "pads", ir.AttrInt64s("pads", total))
        return replacement


def _auto_pad(node: ir.Node) -> str:
    value = attribute(node, "auto_pad", "NOTSET")
    return value.decode() if isinstance(value, bytes) else value


class _PadConv(_PadInto):
    name = "pad+conv"
    anchors = ("Conv",)

    def check_consumer(self, node, model):
        if _auto_pad(node) not in ("NOTSET", "VALID"):
            raise Decline("Conv auto_pad is SAME_* (padding follows the input size)")


class _PadAveragePool(_PadInto):
    name = "pad+averagepool"
    anchors = ("AveragePool",)

    def check_consumer(self, node, model):
        if _auto_pad(node) not in ("NOTSET", "VALID"):
            raise Decline("AveragePool auto_pad is SAME_* (padding follows the input size)")
        if not attribute(node, "count_include_pad", 0):
            raise Decline("count_include_pad is 0: the padded zeros would leave the divisor")
        if attribute(node, "ceil_mode", 0):
            raise Decline("ceil_mode is set")

    def check_pads(self, node, pads):
        kernel = list(attribute(node, "kernel_shape", []))
        if len(kernel) * 2 != len(pads) or any(p >= k for p, k in zip(pads, kernel + kernel)):
            raise Decline("pads would not be smaller than the kernel (onnxruntime refuses such pools)")


class _PadMaxPool(_PadInto):
    name = "pad+maxpool"
    anchors = ("MaxPool",)

    def check_consumer(self, node, model):
        raise Decline("MaxPool leaves its own padding out of the max, but the Pad's values take part")


class FusePadPass(RewritePass, name="fuse-pad", level="O2"):
    """Fold a zero constant Pad of the spatial dims into the pads of the Conv, or AveragePool with count_include_pad=1, that reads it."""

    rules = (_PadConv, _PadAveragePool, _PadMaxPool)
