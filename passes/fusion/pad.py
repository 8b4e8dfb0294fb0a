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

import dataclasses

import numpy as np
import onnx_ir as ir

from optimizer.rewriter import Declined, RewritePass, Rule
from optimizer.graph.matching import attribute, producer_of, single_use
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


def _pad_amounts(pad: ir.Node, opset: int, spatial: int | None) -> list[int] | Declined:
    """The Pad's `[begin..., end...]` amounts for the spatial dims, or why it cannot fold."""
    mode = attribute(pad, "mode", "constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
        return Declined("Pad mode is not constant")
    if opset < 11:
        pads = attribute(pad, "pads", attribute(pad, "paddings", None))
        if pads is None:
            return Declined("pads are not a constant")
        value = float(attribute(pad, "value", 0.0))
        axes = None
    else:
        pads = constant_array(_input(pad, 1))
        if pads is None:
            return Declined("pads are not a constant")
        value_input = _input(pad, 2)
        value_array = constant_array(value_input) if value_input is not None else np.zeros(1)
        if value_array is None or value_array.size != 1:
            return Declined("pad value is not a constant")
        value = float(value_array.reshape(-1)[0])
        axes_input = _input(pad, 3)
        axes = None
        if axes_input is not None:
            axes = constant_array(axes_input)
            if axes is None:
                return Declined("Pad axes are not a constant")
    if value != 0.0:
        return Declined("pad value is not zero")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    if any(p < 0 for p in pads):
        return Declined("negative pads (cropping)")
    if axes is None:
        rank = len(pads) // 2
        if len(pads) % 2 or (spatial is not None and rank != spatial + 2):
            return Declined("pads do not match the input rank")
        begins, ends = pads[:rank], pads[rank:]
    else:
        if spatial is None:
            return Declined("input rank is unknown")
        rank = spatial + 2
        axes = [int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes).reshape(-1)]
        if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes) or any(not 0 <= a < rank for a in axes):
            return Declined("pads do not match the input rank")
        begins, ends = [0] * rank, [0] * rank
        for index, axis in enumerate(axes):
            begins[axis], ends[axis] = pads[index], pads[len(axes) + index]
    if begins[0] or begins[1] or ends[0] or ends[1]:
        return Declined("pads on batch or channel dims")
    return begins[2:] + ends[2:]


@dataclasses.dataclass
class _Match:
    pad: ir.Node
    consumer: ir.Node
    pads: list[int]


class _PadInto(Rule):
    """Shared matching: the anchor's data input is a foldable Pad; subclasses check the anchor."""

    def consumer_declines(self, node: ir.Node, model: ir.Model) -> Declined | None:
        raise NotImplementedError

    def pads_decline(self, node: ir.Node, pads: list[int]) -> Declined | None:
        """Why the anchor cannot take these total `pads`, if it cannot."""
        return None

    def match(self, node: ir.Node, model: ir.Model):
        pad = producer_of(node.inputs[0], "Pad")
        if pad is None:
            return Declined("input is not produced by Pad")
        padded = pad.outputs[0]
        if not single_use(padded):
            return Declined("Pad output is also used elsewhere")
        if pad.graph is not node.graph:
            return Declined(f"Pad and {node.op_type} live in different graphs")
        declined = self.consumer_declines(node, model)
        if declined is not None:
            return declined
        spatial = _spatial_rank(node)
        amounts = _pad_amounts(pad, model.opset_imports.get("", 1), spatial)
        if isinstance(amounts, Declined):
            return amounts
        own = attribute(node, "pads", None)
        own = [0] * len(amounts) if own is None else list(own)
        if len(own) != len(amounts):
            return Declined("pads do not match the input rank")
        total = [a + b for a, b in zip(own, amounts)]
        return self.pads_decline(node, total) or _Match(pad, node, total)

    def rewrite(self, match: _Match) -> None:
        consumer = match.consumer
        consumer.replace_input_with(0, match.pad.inputs[0])
        consumer.attributes.pop("auto_pad", None)
        consumer.attributes["pads"] = ir.AttrInt64s("pads", match.pads)
        match.pad.graph.remove(match.pad, safe=True)


def _auto_pad(node: ir.Node) -> str:
    value = attribute(node, "auto_pad", "NOTSET")
    return value.decode() if isinstance(value, bytes) else value


class _PadConv(_PadInto):
    name = "pad+conv"
    anchor = "Conv"

    def consumer_declines(self, node, model):
        if _auto_pad(node) not in ("NOTSET", "VALID"):
            return Declined("Conv auto_pad is SAME_* (padding follows the input size)")
        return None


class _PadAveragePool(_PadInto):
    name = "pad+averagepool"
    anchor = "AveragePool"

    def consumer_declines(self, node, model):
        if _auto_pad(node) not in ("NOTSET", "VALID"):
            return Declined("AveragePool auto_pad is SAME_* (padding follows the input size)")
        if not attribute(node, "count_include_pad", 0):
            return Declined("count_include_pad is 0: the padded zeros would leave the divisor")
        if attribute(node, "ceil_mode", 0):
            return Declined("ceil_mode is set")
        return None

    def pads_decline(self, node, pads):
        kernel = list(attribute(node, "kernel_shape", []))
        if len(kernel) * 2 != len(pads) or any(p >= k for p, k in zip(pads, kernel + kernel)):
            return Declined("pads would not be smaller than the kernel (onnxruntime refuses such pools)")
        return None


class _PadMaxPool(_PadInto):
    name = "pad+maxpool"
    anchor = "MaxPool"

    def consumer_declines(self, node, model):
        return Declined("MaxPool leaves its own padding out of the max, but the Pad's values take part")


class FusePadPass(RewritePass):
    name = "fuse-pad"
    level = "O2"
    description = "Fold a zero constant Pad of the spatial dims into the pads of the Conv, or AveragePool with count_include_pad=1, that reads it."
    rules = (_PadConv, _PadAveragePool, _PadMaxPool)
