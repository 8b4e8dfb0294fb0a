"""The cost model: FLOPs and bytes moved per node, from the inferred static shapes.

Cost model (FLOPs count a multiply-add as 2; shapes are the inferred static shapes):

- Conv (ConvInteger, QLinearConv, com.microsoft FusedConv/NhwcConv):
  2 * N*Cout*prod(out spatial) * (Cin/group)*prod(kernel), i.e. 2 * |Y| * prod(W.shape[1:]), + |Y| with a bias.
- ConvTranspose: every input element is scattered through a (Cout/group)*prod(kernel) filter:
  2 * |X| * prod(W.shape[1:]), + |Y| with a bias.
- MatMul (MatMulInteger, QLinearMatMul, com.microsoft FusedMatMul with transA/transB):
  2 * prod(broadcast batch dims) * M*N*K. Gemm (com.microsoft FusedGemm): 2*M*N*K, + M*N with C.
  com.microsoft MatMulNBits: 2 * |A| * N. Einsum: 2 * the product of every index's extent.
- LSTM / GRU / RNN: 2 * seq*batch * directions*gates*hidden * (input + hidden), + 10 per hidden unit and step.
- com.microsoft Attention: the packed QKV projection 2*B*S*Din*Wout, then per head Q.K^T and P.V
  (2*B*S*S*D each) and the softmax (5*B*heads*S*S). MultiHeadAttention: the last three terms with the
  key length L taken from `key` (packed QKV/KV layouts understood).
- Elementwise, activation, normalization, quantization: a small constant per output element
  (1 for Add or Relu, 4 for transcendental functions like Exp, Erf, Tanh, 8 for Gelu or LayerNormalization;
  see `_PER_ELEMENT`); variadic Sum/Max/Min/Mean: (inputs - 1) per element.
- Softmax / LogSoftmax: 5 per element. Reductions, ArgMax/ArgMin, TopK, global pooling: 1 (or 2-3) per
  input element. MaxPool / AveragePool / LpPool: |Y| * prod(kernel). Resize / Upsample: 4 per output element.
- Data movement (Reshape, Transpose, Concat, Slice, Gather, Shape, Cast, Pad, Expand, ...): 0 FLOPs.
- If: the costlier branch; Loop: the body times a constant trip count (else one iteration, and
  `known=False`); Scan: the body times the scan length. Subgraph nodes are costed recursively, their
  FLOPs and bytes added to their parent node.
- Constant nodes cost 0 (and move 0 bytes); initializers are not nodes and cost nothing.

`bytes_moved` is the size of every input and output tensor whose shape and type are known (read +
written; Shape and Size read metadata only). A node is `known=False` when its op is not in the
cost model (custom domains, unlisted ops) or a shape its FLOP count needs is missing; it then counts 0
FLOPs and is counted in `unknown_cost_nodes`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import onnx_ir as ir

from optimizer.analysis.shapes import known_dims
from optimizer.graph.matching import attribute
from optimizer.graph.values import constant_array

__all__ = ["NodeCost", "cost_of"]

_MAX_TRIP_COUNT = 1 << 31
_STANDARD = ("", "ai.onnx")
_MS = "com.microsoft"

# FLOPs per output element.
_PER_ELEMENT: dict[str, float] = {
    # arithmetic, comparison, logic, selection
    **dict.fromkeys(
        ["Add", "Sub", "Mul", "Div", "Neg", "Abs", "Reciprocal", "Equal", "Less", "LessOrEqual", "Greater",
         "GreaterOrEqual", "And", "Or", "Xor", "Not", "Where", "Sign", "Floor", "Ceil", "Round", "IsNaN",
         "IsInf", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "Relu", "LeakyRelu",
         "PRelu", "Clip", "ThresholdedRelu", "Sqrt"],
        1.0,
    ),
    **dict.fromkeys(["Mod", "Shrink", "HardSigmoid", "BatchNormalization", "QuantizeLinear", "DequantizeLinear",
                     "BiasAdd"], 2.0),
    **dict.fromkeys(["HardSwish", "Softsign"], 3.0),
    **dict.fromkeys(
        ["Exp", "Log", "Pow", "Erf", "Sigmoid", "Tanh", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh",
         "Cosh", "Asinh", "Acosh", "Atanh", "Elu", "Selu", "Celu", "Softplus", "DynamicQuantizeLinear"],
        4.0,
    ),
    **dict.fromkeys(["QuickGelu", "SimplifiedLayerNormalization", "RMSNormalization", "LpNormalization"], 5.0),
    "SkipSimplifiedLayerNormalization": 6.0,
    **dict.fromkeys(["Gelu", "FastGelu", "Mish", "LayerNormalization", "InstanceNormalization",
                     "GroupNormalization", "MeanVarianceNormalization"], 8.0),
    **dict.fromkeys(["BiasGelu", "SkipLayerNormalization"], 9.0),
    **dict.fromkeys(["Softmax", "LogSoftmax"], 5.0),
    "Hardmax": 1.0,
    **dict.fromkeys(["Resize", "Upsample"], 4.0),
}
_VARIADIC = frozenset({"Sum", "Max", "Min", "Mean"})
# FLOPs per input element.
_PER_INPUT_ELEMENT: dict[str, float] = {
    **dict.fromkeys(["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ArgMax",
                     "ArgMin", "TopK", "GlobalAveragePool", "GlobalMaxPool", "CumSum"], 1.0),
    **dict.fromkeys(["ReduceL2", "ReduceSumSquare", "GlobalLpPool"], 2.0),
    **dict.fromkeys(["ReduceLogSum", "ReduceLogSumExp"], 3.0),
}
_DATA_MOVEMENT = frozenset(
    ["Reshape", "Transpose", "Concat", "Slice", "Gather", "GatherElements", "GatherND", "Scatter",
     "ScatterElements", "ScatterND", "Shape", "Size", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Tile",
     "Identity", "Split", "Pad", "Cast", "CastLike", "ConstantOfShape", "Range", "DepthToSpace",
     "SpaceToDepth", "OneHot", "NonZero", "Compress", "Dropout", "Trilu", "ReverseSequence", "EyeLike",
     "Optional", "OptionalGetElement", "OptionalHasElement", "SequenceAt", "SequenceConstruct",
     "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength", "SplitToSequence",
     "ConcatFromSequence", "Col2Im", "CenterCropPad", "Unique", "GridSample", "RandomNormal", "RandomUniform",
     "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"]
)
_METADATA_ONLY = frozenset({"Shape", "Size"})
_MS_KNOWN = frozenset(
    ["Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd", "SkipLayerNormalization",
     "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization", "LayerNormalization",
     "FusedMatMul", "FusedGemm", "FusedConv", "NhwcConv", "MatMulNBits", "Attention", "MultiHeadAttention",
     "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
     "MatMulInteger", "ConvInteger"]
)
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "FusedConv": 1, "NhwcConv": 1, "QLinearConv": 3}
_CONV_BIAS = {"Conv": 2, "FusedConv": 2, "NhwcConv": 2, "QLinearConv": 8}
_MATMUL_B = {"MatMul": 1, "MatMulInteger": 1, "FusedMatMul": 1, "QLinearMatMul": 3}


@dataclasses.dataclass
class NodeCost:
    """The estimated cost of one node of the main graph (subgraph work included)."""

    name: str
    op_type: str
    flops: float
    bytes_moved: float
    known: bool  # False when the op is not in the cost model or the shapes it needs are missing


def _numel(value: ir.Value | None) -> int | None:
    """Elements of the value; None when a dim is unknown."""
    dims = known_dims(value)
    return math.prod(dims) if dims is not None else None


def _nbytes(value: ir.Value | None) -> float | None:
    """Bytes of the value; None when its shape or element size is unknown."""
    numel = _numel(value)
    if numel is None or value.dtype is None:
        return None
    try:
        return numel * value.dtype.itemsize
    except Exception:  # noqa: BLE001 - types without a size (strings)
        return None


def _input(node: ir.Node, index: int) -> ir.Value | None:
    """The node's input at `index`; None when absent."""
    return node.inputs[index] if index < len(node.inputs) else None


# --------------------------------------------------------------------------- cost model

def _conv_flops(node: ir.Node, transpose: bool) -> float | None:
    """Conv and its variants (ConvTranspose with `transpose`): 2 * |data| * prod(W.shape[1:]), + |Y| with a bias."""
    weight = known_dims(_input(node, _CONV_WEIGHT.get(node.op_type, 1)))
    data = _numel(node.inputs[0] if transpose else node.outputs[0])
    if weight is None or data is None or len(weight) < 2:
        return None
    flops = 2.0 * data * math.prod(weight[1:])
    bias = _input(node, _CONV_BIAS.get(node.op_type, 2))
    if bias is not None:
        out = _numel(node.outputs[0])
        flops += out or 0
    return flops


def _broadcast(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """The numpy broadcast of two shapes (a 0 dim stays 0)."""
    width = max(len(a), len(b))
    a = [1] * (width - len(a)) + list(a)
    b = [1] * (width - len(b)) + list(b)
    return [max(x, y) if min(x, y) != 0 else 0 for x, y in zip(a, b)]


def _matmul_flops(node: ir.Node) -> float | None:
    """MatMul and its variants: 2 * prod(broadcast batch dims) * M*N*K."""
    a, b = known_dims(_input(node, 0)), known_dims(_input(node, _MATMUL_B.get(node.op_type, 1)))
    if a is None or b is None or not a or not b:
        return None
    a = [1, *a] if len(a) == 1 else list(a)
    b = [*b, 1] if len(b) == 1 else list(b)
    if attribute(node, "transA", 0):
        a[-2], a[-1] = a[-1], a[-2]
    if attribute(node, "transB", 0):
        b[-2], b[-1] = b[-1], b[-2]
    batch = math.prod(_broadcast(a[:-2], b[:-2]))
    return 2.0 * batch * a[-2] * a[-1] * b[-1]


def _gemm_flops(node: ir.Node) -> float | None:
    """Gemm: 2*M*N*K, + M*N with C."""
    a, b = known_dims(_input(node, 0)), known_dims(_input(node, 1))
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m, k = (a[1], a[0]) if attribute(node, "transA", 0) else a
    n = b[0] if attribute(node, "transB", 0) else b[1]
    flops = 2.0 * m * n * k
    if _input(node, 2) is not None:
        flops += m * n
    return flops


def _einsum_flops(node: ir.Node) -> float | None:
    """Einsum: 2 * the product of every index's extent (once for a single operand)."""
    equation = str(attribute(node, "equation", "")).replace(" ", "")
    terms = equation.split("->")[0].split(",")
    if len(terms) != len(node.inputs):
        return None
    extents: dict[str, int] = {}
    ellipsis = 1
    for term, value in zip(terms, node.inputs):
        dims = known_dims(value)
        if dims is None:
            return None
        letters = term.replace("...", "")
        if "..." in term:
            start = term.index("...")
            rest = len(dims) - len(letters)
            ellipsis = max(ellipsis, math.prod(dims[start:start + rest]))
            dims = dims[:start] + dims[start + rest:]
        if len(letters) != len(dims):
            return None
        for letter, dim in zip(letters, dims):
            extents[letter] = max(extents.get(letter, 1), dim)
    total = ellipsis * math.prod(extents.values())
    return float(total) if len(terms) == 1 else 2.0 * total


def _rnn_flops(node: ir.Node) -> float | None:
    """LSTM / GRU / RNN: the gate products per step, + 10 per hidden unit and step."""
    x, w, r = known_dims(_input(node, 0)), known_dims(_input(node, 1)), known_dims(_input(node, 2))
    if x is None or w is None or r is None or len(x) != 3 or len(w) != 3 or len(r) != 3:
        return None
    steps = x[0] * x[1]  # seq * batch, whatever the layout
    directions, gates_hidden, inputs = w
    hidden = r[2]
    return 2.0 * steps * directions * gates_hidden * (inputs + hidden) + 10.0 * steps * directions * hidden


def _attention_flops(node: ir.Node) -> float | None:
    """com.microsoft Attention: packed QKV projection, then scaled dot-product attention per head."""
    x, w = known_dims(_input(node, 0)), known_dims(_input(node, 1))
    heads = int(attribute(node, "num_heads", 1) or 1)
    if x is None or w is None or len(x) != 3 or len(w) != 2:
        return None
    batch, seq, _ = x
    sizes = attribute(node, "qkv_hidden_sizes", None)
    qk = int(sizes[0]) if sizes else w[1] // 3
    v = int(sizes[2]) if sizes else w[1] // 3
    projection = 2.0 * batch * seq * w[0] * w[1]
    return projection + 2.0 * batch * seq * seq * (qk + v) + 5.0 * batch * heads * seq * seq


def _multi_head_attention_flops(node: ir.Node) -> float | None:
    """com.microsoft MultiHeadAttention: Q.K^T, softmax, P.V (no projections)."""
    q, k = known_dims(_input(node, 0)), known_dims(_input(node, 1))
    heads = int(attribute(node, "num_heads", 1) or 1)
    if q is None:
        return None
    if len(q) == 5:  # packed QKV [B, S, N, 3, H]
        batch, seq, hidden = q[0], q[1], q[2] * q[4]
    elif len(q) == 3:
        batch, seq, hidden = q
    else:
        return None
    if k is None:
        if _input(node, 1) is not None:
            return None
        length = seq
    elif len(k) == 5:  # packed KV [B, L, N, 2, H]
        length = k[1]
    elif len(k) == 4:  # [B, N, L, H]
        length = k[2]
    elif len(k) == 3:
        length = k[1]
    else:
        return None
    return 4.0 * batch * seq * length * hidden + 5.0 * batch * heads * seq * length


def _pool_flops(node: ir.Node) -> float | None:
    """MaxPool / AveragePool / LpPool: |Y| * prod(kernel)."""
    out = _numel(node.outputs[0])
    kernel = attribute(node, "kernel_shape", None)
    if out is None or not kernel:
        return None
    return float(out) * math.prod(int(k) for k in kernel)


def _elements(node: ir.Node) -> int | None:
    """Output elements; the largest input when the output shape is missing (elementwise broadcast)."""
    out = _numel(node.outputs[0]) if node.outputs else None
    if out is not None:
        return out
    sizes = [_numel(v) for v in node.inputs if v is not None]
    return max(sizes) if sizes and all(s is not None for s in sizes) else None


def _graph_cost(graph: ir.Graph) -> tuple[float, float, bool]:
    """(FLOPs, bytes moved, known) of every node of a subgraph together."""
    flops = moved = 0.0
    known = True
    for node in graph:
        f, b, k = _node_cost(node)
        flops, moved, known = flops + f, moved + b, known and k
    return flops, moved, known


def _subgraph_cost(node: ir.Node) -> tuple[float, float, bool] | None:
    """The cost of the subgraphs of If, Loop, Scan (and any other op with graph attributes)."""
    graphs = [a.value for a in node.attributes.values() if not a.is_ref() and a.type == ir.AttributeType.GRAPH]
    graphs += [g for a in node.attributes.values() if not a.is_ref() and a.type == ir.AttributeType.GRAPHS for g in a.value]
    if not graphs:
        return None
    costs = [_graph_cost(g) for g in graphs]
    if node.op_type == "If" and node.domain in _STANDARD:
        flops, moved, _ = max(costs, key=lambda c: c[0])
        return flops, moved, all(c[2] for c in costs)
    flops, moved, known = sum(c[0] for c in costs), sum(c[1] for c in costs), all(c[2] for c in costs)
    trips = None
    if node.op_type == "Loop" and node.domain in _STANDARD:
        array = constant_array(_input(node, 0))
        if array is not None and array.size == 1 and 0 <= int(array.reshape(-1)[0]) <= _MAX_TRIP_COUNT:
            trips = int(array.reshape(-1)[0])
    elif node.op_type == "Scan" and node.domain in _STANDARD:
        scans = int(attribute(node, "num_scan_inputs", 0) or 0)
        axes = list(attribute(node, "scan_input_axes", None) or [0] * scans)
        first = known_dims(node.inputs[len(node.inputs) - scans]) if 0 < scans <= len(node.inputs) else None
        if first is not None and axes and -len(first) <= int(axes[0]) < len(first):
            trips = first[int(axes[0])]
    if trips is None:
        return flops, moved, False  # one iteration counted
    return flops * trips, moved * trips, known


def _node_flops(node: ir.Node) -> float | None:
    """FLOPs of one node by the module's cost model; None when unknown."""
    op, domain = node.op_type, node.domain
    if domain not in _STANDARD and not (domain == _MS and op in _MS_KNOWN):
        return None
    if op in _DATA_MOVEMENT or op == "Constant":
        return 0.0
    if op in _CONV_WEIGHT:
        return _conv_flops(node, transpose=False)
    if op == "ConvTranspose":
        return _conv_flops(node, transpose=True)
    if op in _MATMUL_B:
        return _matmul_flops(node)
    if op in ("Gemm", "FusedGemm"):
        return _gemm_flops(node)
    if op == "MatMulNBits":
        a, n = _numel(_input(node, 0)), attribute(node, "N", None)
        return 2.0 * a * int(n) if a is not None and n is not None else None
    if op == "Einsum":
        return _einsum_flops(node)
    if op in ("LSTM", "GRU", "RNN"):
        return _rnn_flops(node)
    if op == "Attention" and domain == _MS:
        return _attention_flops(node)
    if op == "MultiHeadAttention":
        return _multi_head_attention_flops(node)
    if op in ("MaxPool", "AveragePool", "LpPool"):
        return _pool_flops(node)
    if op in _PER_INPUT_ELEMENT:
        size = _numel(_input(node, 0))
        return _PER_INPUT_ELEMENT[op] * size if size is not None else None
    if op in _VARIADIC:
        size = _elements(node)
        return float(max(1, len(node.inputs) - 1) * size) if size is not None else None
    if op in _PER_ELEMENT:
        size = _elements(node)
        return _PER_ELEMENT[op] * size if size is not None else None
    return None


def _node_cost(node: ir.Node) -> tuple[float, float, bool]:
    """(FLOPs, bytes moved, known) of one node, its subgraphs included."""
    if node.op_type == "Constant" and node.domain in _STANDARD:
        return 0.0, 0.0, True
    subgraphs = _subgraph_cost(node)
    if subgraphs is not None:
        flops, moved, known = subgraphs
    else:
        flops = _node_flops(node)
        known = flops is not None
        flops, moved = flops or 0.0, 0.0
    read = [] if node.op_type in _METADATA_ONLY else node.inputs
    for value in (*read, *node.outputs):
        size = _nbytes(value)
        moved += size or 0.0
    return float(flops), float(moved), known


def cost_of(node: ir.Node, name: str) -> NodeCost:
    """The cost of one node of the main graph, `name` being what the analysis calls it."""
    flops, moved, known = _node_cost(node)
    return NodeCost(name, node.op_type, flops, moved, known)
