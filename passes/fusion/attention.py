"""Multi-head attention as exporters emit it  =>  onnxruntime's fused attention ops (O3, com.microsoft).

The core every eager export shares (BERT, DistilBERT, ViT, GPT-2, with or without a mask):

    Qh = Transpose(Reshape(q, [B,S,H,D]), perm=[0,2,1,3])            (Vh alike)
    Kt = Transpose(Reshape(k, [B,T,H,D]), perm=[0,2,3,1])            (or two Transposes)
    P  = Softmax(MatMul(Qh, Kt) * scale [+ mask], axis=-1)            (scale as Mul/Div, on Q, K or the scores)
    y  = Reshape(Transpose(MatMul(P, Vh), perm=[0,2,1,3]), [B,S,H*D])     (or [B*S,H*D]: a Reshape follows)
      =>  y = MultiHeadAttention(q, k, v, attention_bias=mask, num_heads=H, scale=scale)

and, when q, k and v are projections of one input x by constant weights (three MatMuls with
optional bias Adds, or one packed projection split in three as GPT-2's c_attn):

      =>  y = Attention(x, [Wq|Wk|Wv], [bq|bk|bv], attention_bias=mask, num_heads=H, scale=scale)

The mask is any additive float tensor of shape [B|1, H|1, S|1, T]; a mask broadcast over the
query axis is expanded to S rows (static S only), as the kernels want S rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import MS_DOMAIN, is_op, producer_of, scalar, single_use, sole_consumer
from optimizer.graph.editing import pattern_problem
from optimizer.graph.values import constant_array

__all__ = ["FuseAttentionPass"]

_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16)


@dataclasses.dataclass
class _Heads:
    """One of q, k, v: the [B,S,H*D] value and the nodes that split it into heads."""

    value: ir.Value
    nodes: list[ir.Node]
    heads: int
    head_size: int


@dataclasses.dataclass
class _Match:
    q: _Heads
    k: _Heads
    v: _Heads
    scale: float
    mask: ir.Value | None
    output: ir.Value
    last: ir.Node
    removed: list[ir.Node]


def _perm(node: ir.Node) -> tuple[int, ...] | None:
    attr = node.attributes.get("perm")
    return None if attr is None or attr.is_ref() else tuple(attr.value)


def _strip_scales(value: ir.Value) -> tuple[ir.Value, float, list[ir.Node]]:
    """Walk back through single-use Mul/Div by scalar constants; returns the source, the product, the nodes."""
    factor, nodes = 1.0, []
    while True:
        node = value.producer()
        if not is_op(node, "Mul", "Div") or not single_use(value):
            return value, factor, nodes
        if node.op_type == "Div":
            c = scalar(node.inputs[1])
            if c is None or c == 0:
                return value, factor, nodes
            factor, source = factor / c, node.inputs[0]
        else:
            a, b = scalar(node.inputs[0]), scalar(node.inputs[1])
            if b is not None:
                factor, source = factor * b, node.inputs[0]
            elif a is not None:
                factor, source = factor * a, node.inputs[1]
            else:
                return value, factor, nodes
        nodes.append(node)
        value = source


def _looks_like_scores(value: ir.Value) -> bool:
    """`value` is MatMul(...) or a scalar Mul/Div of one: the scores side of the mask Add."""
    node = value.producer()
    while is_op(node, "Mul", "Div"):
        constant = [scalar(v) is not None for v in node.inputs]
        if node.op_type == "Div" and constant[1]:
            node = node.inputs[0].producer()
        elif node.op_type == "Mul" and any(constant):
            node = node.inputs[0 if constant[1] else 1].producer()
        else:
            return False
    return is_op(node, "MatMul")


def _heads(value: ir.Value, perm: tuple[int, ...]) -> _Heads:
    """Match `Transpose(Reshape(x, [B,S,H,D]), perm)` (K: also perm [0,1,3,2] over a [0,2,1,3] Transpose)."""
    transpose = producer_of(value, "Transpose")
    if transpose is None or not single_use(value):
        raise Decline("heads are not split by Reshape and Transpose")
    nodes = [transpose]
    if perm == (0, 2, 3, 1) and _perm(transpose) == (0, 1, 3, 2):
        inner = producer_of(transpose.inputs[0], "Transpose")
        if inner is None or _perm(inner) != (0, 2, 1, 3) or not single_use(transpose.inputs[0]):
            raise Decline("heads are not split by Reshape and Transpose")
        nodes.insert(0, inner)
        transpose = inner
    elif _perm(transpose) != perm:
        raise Decline("heads are not split by Reshape and Transpose")
    reshape = producer_of(transpose.inputs[0], "Reshape")
    if reshape is None or not single_use(transpose.inputs[0]):
        raise Decline("heads are not split by Reshape and Transpose")
    nodes.insert(0, reshape)
    source, split = reshape.inputs[0], reshape.outputs[0]
    if split.shape is None or len(split.shape) != 4 or source.shape is None or len(source.shape) != 3:
        raise Decline("head split is not [B,S,hidden] -> [B,S,H,D]")
    heads, head_size, hidden = split.shape[2], split.shape[3], source.shape[2]
    if not all(isinstance(d, int) for d in (heads, head_size, hidden)) or heads * head_size != hidden:
        raise Decline("head count or size unknown")
    if split.shape[0] != source.shape[0] or split.shape[1] != source.shape[1]:
        raise Decline("head split is not [B,S,hidden] -> [B,S,H,D]")
    if source.dtype not in _FLOATS:
        raise Decline("not float32/float16")
    return _Heads(source, nodes, heads, head_size)


def _merge_heads(context: ir.Value, hidden: int) -> tuple[ir.Node, list[ir.Node]]:
    """Match `Reshape(Transpose(context, [0,2,1,3]), [B,S,H*D])`; returns the Reshape and the nodes."""
    transpose = sole_consumer(context, "Transpose")
    if transpose is None or _perm(transpose) != (0, 2, 1, 3):
        raise Decline("heads are not merged by Transpose and Reshape")
    reshape = sole_consumer(transpose.outputs[0], "Reshape")
    if reshape is None or reshape.inputs[0] is not transpose.outputs[0]:
        raise Decline("heads are not merged by Transpose and Reshape")
    shape = reshape.outputs[0].shape
    if shape is None or len(shape) not in (2, 3) or shape[-1] != hidden:
        raise Decline("merged heads are not [B,S,hidden] or [B*S,hidden]")
    return reshape, [transpose, reshape]


def _mask_ok(mask: ir.Value, q: _Heads, k: _Heads) -> str | None:
    """None when `mask` can be the kernels' attention_bias, else why not."""
    if mask.dtype != q.value.dtype:
        return "mask is not of the attention's float type"
    shape = mask.shape
    if shape is None or len(shape) != 4:
        return "mask is not 4-D"
    batch, seq, total = q.value.shape[0], q.value.shape[1], k.value.shape[1]
    if shape[0] not in (1, batch) or shape[1] not in (1, q.heads) or shape[3] != total:
        return "mask shape is not [B|1, H|1, S, T]"
    if shape[2] != seq and not (shape[2] == 1 and isinstance(seq, int)):
        return "mask shape is not [B|1, H|1, S, T]"
    return None


class _MultiHeadAttention(Rule):
    name = "attention"
    anchors = ("Softmax",)
    introduces = {MS_DOMAIN: 1}

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        scores = node.inputs[0]
        rank = len(scores.shape) if scores.shape is not None else None
        axis_attr = node.attributes.get("axis")
        default_axis = -1 if model.opset_imports.get("", 0) >= 13 else 1
        axis = default_axis if axis_attr is None else axis_attr.value
        if rank != 4 or axis not in (-1, 3):
            raise Decline("Softmax is not over the last axis of 4-D scores")
        if not single_use(scores):
            raise Decline("an intermediate is used elsewhere")
        removed: list[ir.Node] = []
        mask = None
        add = producer_of(scores, "Add")
        if add is not None:
            for index in (0, 1):
                if _looks_like_scores(add.inputs[index]):
                    mask, scores = add.inputs[1 - index], add.inputs[index]
                    break
            else:
                raise Decline("scores are not MatMul(Q, K^T)")
            if not single_use(scores):
                raise Decline("an intermediate is used elsewhere")
            removed.append(add)
        scores, scale, scale_nodes = _strip_scales(scores)
        removed[:0] = scale_nodes
        qk = producer_of(scores, "MatMul")
        if qk is None:
            raise Decline("scores are not MatMul(Q, K^T)")
        removed.insert(0, qk)
        q_value, q_scale, q_nodes = _strip_scales(qk.inputs[0])
        k_value, k_scale, k_nodes = _strip_scales(qk.inputs[1])
        scale *= q_scale * k_scale
        if scale <= 0 or not np.isfinite(scale):
            raise Decline("attention scale is not positive")
        q = _heads(q_value, (0, 2, 1, 3))
        k = _heads(k_value, (0, 2, 3, 1))
        pv = sole_consumer(node.outputs[0], "MatMul")
        if pv is None or pv.inputs[0] is not node.outputs[0]:
            raise Decline("probabilities are not multiplied by V")
        v = _heads(pv.inputs[1], (0, 2, 1, 3))
        if len({q.heads, k.heads, v.heads}) != 1 or len({q.head_size, k.head_size, v.head_size}) != 1:
            raise Decline("q, k, v differ in heads")
        if k.value.shape[1] != v.value.shape[1] or k.value.shape[0] != q.value.shape[0] or v.value.shape[0] != q.value.shape[0]:
            raise Decline("q, k, v shapes do not agree")
        if len({q.value.dtype, k.value.dtype, v.value.dtype}) != 1:
            raise Decline("q, k, v differ in type")
        if mask is not None and (reason := _mask_ok(mask, q, k)) is not None:
            raise Decline(reason)
        merged = _merge_heads(pv.outputs[0], q.heads * q.head_size)
        last, tail = merged
        merged_shape = last.outputs[0].shape
        if len(merged_shape) == 3 and (merged_shape[0] != q.value.shape[0] or merged_shape[1] != q.value.shape[1]):
            raise Decline("merged heads are not [B,S,hidden] or [B*S,hidden]")
        removed = [*q.nodes, *q_nodes, *k.nodes, *k_nodes, *removed, node, *v.nodes, pv, *tail]
        if (problem := pattern_problem(removed, last.outputs[0])) is not None:
            raise Decline(problem)
        return _replacement(_Match(q, k, v, scale, mask, last.outputs[0], last, removed))


def _replacement(match: _Match) -> Replacement:
    """One Attention (packed projections) or MultiHeadAttention node, with the mask's row Expand and
    the merged-rows Reshape when the pattern had them; projections left unread go too."""
    replacement = Replacement(removed=match.removed, after=match.last)
    mask = match.mask
    inserted: list[ir.Node] = []
    if mask is not None and mask.shape[2] != match.q.value.shape[1]:
        # Expand broadcasts: the 1s keep the mask's own batch, head and key dims.
        rows = np.array([1, 1, match.q.value.shape[1], 1], dtype=np.int64)
        expand = ir.Node("", "Expand", [mask, replacement.initializer("attention_mask_rows", rows)], num_outputs=1)
        inserted.append(expand)
        mask = expand.outputs[0]
    packed = _packed_projection(match, replacement)
    attributes = [ir.AttrInt64("num_heads", match.q.heads), ir.AttrFloat32("scale", match.scale)]
    if packed is not None:
        x, weight, bias, replacement.removed_if_unused = packed
        inputs = [x, weight, bias, None, None, mask] if mask is not None else [x, weight, bias]
        fused = ir.Node(MS_DOMAIN, "Attention", inputs, attributes=attributes, num_outputs=1)
    else:
        inputs = [match.q.value, match.k.value, match.v.value]
        if mask is not None:
            inputs += [None, None, mask]
        fused = ir.Node(MS_DOMAIN, "MultiHeadAttention", inputs, attributes=attributes, num_outputs=1)
    replacement.nodes = [*inserted, fused]
    result = fused.outputs[0]
    if len(match.output.shape) == 2:  # the export merged heads straight into [B*S, hidden] rows
        rows = replacement.initializer("attention_rows", np.array([-1, match.q.heads * match.q.head_size], dtype=np.int64))
        replacement.nodes.append(ir.Node("", "Reshape", [result, rows], num_outputs=1))
        result = replacement.nodes[-1].outputs[0]
    replacement.reroute(match.output, result)
    return replacement


def _projection(value: ir.Value) -> tuple[ir.Value, np.ndarray, np.ndarray | None, list[ir.Node]] | None:
    """`value = MatMul(x, W) [+ b]` with constant W [E_in, E] and b [E]: (x, W, b, nodes)."""
    nodes: list[ir.Node] = []
    bias = None
    add = producer_of(value, "Add")
    if add is not None:
        for index in (0, 1):
            b = constant_array(add.inputs[1 - index])
            if b is not None and producer_of(add.inputs[index], "MatMul") is not None:
                bias, value = b, add.inputs[index]
                break
        else:
            return None
        if bias.ndim != 1 or not single_use(value):
            return None
        nodes.append(add)
    matmul = producer_of(value, "MatMul")
    if matmul is None:
        return None
    weight = constant_array(matmul.inputs[1])
    if weight is None or weight.ndim != 2 or (bias is not None and bias.shape[0] != weight.shape[1]):
        return None
    nodes.insert(0, matmul)
    return matmul.inputs[0], weight, bias, nodes


def _split_projection(match: _Match) -> tuple[ir.Value, np.ndarray, np.ndarray, list[ir.Node]] | None:
    """q, k, v = Split(Reshape(Gemm(Reshape(x, [-1, E_in]), W, b), [B,S,3E]), axis=-1): GPT-2's c_attn."""
    split = match.q.value.producer()
    if not is_op(split, "Split") or len(split.outputs) != 3:
        return None
    if [o for o in split.outputs] != [match.q.value, match.k.value, match.v.value]:
        return None
    if any(not single_use(o) for o in split.outputs):
        return None
    axis = split.attributes.get("axis")
    packed = split.inputs[0]
    if axis is None or axis.value not in (2, -1) or packed.shape is None or len(packed.shape) != 3:
        return None
    hidden = match.q.heads * match.q.head_size
    sizes = constant_array(split.inputs[1]) if len(split.inputs) > 1 and split.inputs[1] is not None else None
    if sizes is None:
        attr = split.attributes.get("split")
        sizes = np.array(attr.value) if attr is not None else np.array([packed.shape[2] // 3] * 3 if isinstance(packed.shape[2], int) else [])
    if list(sizes) != [hidden] * 3 or not single_use(packed):
        return None
    nodes = [split]
    reshape_out = producer_of(packed, "Reshape")
    if reshape_out is not None:
        gemm = producer_of(reshape_out.inputs[0], "Gemm")
        if gemm is None or not single_use(reshape_out.inputs[0]):
            return None
        attrs = {k: a.value for k, a in gemm.attributes.items()}
        if attrs.get("transA", 0) or attrs.get("transB", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            return None
        reshape_in = producer_of(gemm.inputs[0], "Reshape")
        if reshape_in is None or not single_use(gemm.inputs[0]):
            return None
        x = reshape_in.inputs[0]
        weight = constant_array(gemm.inputs[1])
        bias = constant_array(gemm.inputs[2]) if len(gemm.inputs) > 2 and gemm.inputs[2] is not None else None
        if weight is None or weight.ndim != 2 or (bias is not None and bias.shape != (weight.shape[1],)):
            return None
        if x.shape is None or len(x.shape) != 3 or x.shape[0] != packed.shape[0] or x.shape[1] != packed.shape[1]:
            return None
        nodes[:0] = [reshape_in, gemm, reshape_out]
    else:
        found = _projection(packed)
        if found is None:
            return None
        x, weight, bias, projection_nodes = found
        nodes[:0] = projection_nodes
    if weight.shape[1] != 3 * hidden:
        return None
    if bias is None:
        bias = np.zeros(3 * hidden, dtype=weight.dtype)
    return x, weight, bias, nodes


def _packed_projection(match: _Match, replacement: Replacement) -> tuple[ir.Value, ir.Value, ir.Value, list[ir.Node]] | None:
    """The shared input and packed [Wq|Wk|Wv], [bq|bk|bv] initializers when q, k, v are projections of one x."""
    dtype = match.q.value.dtype.numpy()
    found = _split_projection(match)
    if found is None:
        parts = [_projection(h.value) for h in (match.q, match.k, match.v)]
        if any(p is None for p in parts) or len({id(p[0]) for p in parts}) != 1:
            return None
        if any(not single_use(h.value) for h in (match.q, match.k, match.v)):
            return None
        x = parts[0][0]
        hidden = match.q.heads * match.q.head_size
        weights = [p[1] for p in parts]
        if any(w.shape[1] != hidden or w.shape[0] != weights[0].shape[0] for w in weights):
            return None
        weight = np.concatenate(weights, axis=1)
        bias = np.concatenate([p[2] if p[2] is not None else np.zeros(hidden, dtype=weight.dtype) for p in parts])
        nodes = [n for p in parts for n in p[3]]
    else:
        x, weight, bias, nodes = found
    if x.shape is None or len(x.shape) != 3 or x.dtype != match.q.value.dtype or weight.dtype != dtype or bias.dtype != dtype:
        return None
    if any(n.graph is not match.last.graph for n in nodes):
        return None
    weight_value = replacement.initializer("attention_qkv_weight", weight)
    bias_value = replacement.initializer("attention_qkv_bias", bias)
    return x, weight_value, bias_value, nodes


class FuseAttentionPass(RewritePass, name="fuse-attention", level="O3", preconditions={NEEDS_SHAPES}):
    """Replace exported multi-head attention by com.microsoft Attention (packed QKV) or MultiHeadAttention."""

    rules = (_MultiHeadAttention,)
