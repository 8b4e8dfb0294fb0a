"""Graph cost model and parallelism analysis: FLOPs and bytes per node, work/span, fork-join regions.

`analyze(model)` works on a clone of the model (tensors shared, nothing of the caller's model
changes): dynamic input dims are bound from `input_shapes` (name -> dims) or by defaults (a
batch-like leading dim -> 1, any other dynamic dim -> 128; dims sharing a symbol share a value),
then shapes are inferred and every node of the main graph is costed.

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

Parallelism, on the main graph's dependency DAG (edges from producers, including values that a
node's subgraphs read from the outer scope; Constant nodes and initializers are not part of it):

- work = the sum of node FLOPs; span = the FLOPs of the costliest path (ties: the longer path in
  nodes); parallelism = work / span (1.0 for a chain, and when work == 0).
- regions: for every graph input or non-constant node with two or more consumers (a fork), its
  immediate post-dominator (the join; "(graph outputs)" when the branches only meet at the outputs);
  the nodes strictly between them, split into connected components, are the branches. Where some
  consumers meet earlier (Q and K at Q.K^T before V joins at P.V), that inner join is a region too.
  A region is reported when at least two of its branches cost at least 0.1% of the work (and more
  than 0 FLOPs); all its branches are listed.
- inter_op_speedup_bound = work / T, where T = the costliest path when nodes below 0.1% of the work
  cost nothing, plus the sum of those small nodes' FLOPs. Small nodes are taken to run one after the
  other (handing a tiny node to another thread costs more than it saves), large ones in parallel
  with unlimited threads. It lies between 1.0 and `parallelism`; close to 1.0, inter-op threads and
  the parallel execution mode have nothing to gain.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import onnx_ir as ir

from optimizer.graph.values import constant_array

__all__ = ["NodeCost", "Region", "GraphAnalysis", "analyze", "inter_op_speedup_of", "OUTPUTS_JOIN"]

logger = logging.getLogger(__name__)

OUTPUTS_JOIN = "(graph outputs)"
"""The `join` of a region whose branches meet only at the graph's outputs."""

_DEFAULT_BATCH = 1
_DEFAULT_DIM = 128
_BATCH_WORDS = frozenset({"batch", "n", "b", "bs", "batch_size", "unk__0"})
_SMALL_NODE_FRACTION = 1e-3
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


@dataclasses.dataclass
class Region:
    """A fork-join region: `fork` (a graph input or node name) fans out into branches meeting at `join`."""

    fork: str
    join: str
    branches: list[dict]  # each {"nodes": [node names in topological order], "flops": float}


@dataclasses.dataclass
class GraphAnalysis:
    """Costs of the main graph's nodes and how much of the work can run in parallel."""

    nodes: list[NodeCost]
    by_op_type: dict[str, dict]
    work_flops: float
    span_flops: float
    parallelism: float
    critical_path: list[str]
    regions: list[Region]
    inter_op_speedup_bound: float
    unknown_cost_nodes: int

    def to_dict(self) -> dict:
        """A JSON-ready dict (plain lists, dicts, strings and numbers)."""
        return {
            "work_flops": self.work_flops,
            "span_flops": self.span_flops,
            "parallelism": self.parallelism,
            "inter_op_speedup_bound": self.inter_op_speedup_bound,
            "unknown_cost_nodes": self.unknown_cost_nodes,
            "critical_path": list(self.critical_path),
            "regions": [
                {"fork": r.fork, "join": r.join,
                 "branches": [{"nodes": list(b["nodes"]), "flops": b["flops"]} for b in r.branches]}
                for r in self.regions
            ],
            "by_op_type": {op: dict(stats) for op, stats in self.by_op_type.items()},
            "nodes": [dataclasses.asdict(n) for n in self.nodes],
        }


# --------------------------------------------------------------------------- shapes

def _dims(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's dims when all are known non-negative integers."""
    if value is None or value.shape is None:
        return None
    dims = tuple(value.shape)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        return None
    return dims


def _numel(value: ir.Value | None) -> int | None:
    dims = _dims(value)
    return math.prod(dims) if dims is not None else None


def _nbytes(value: ir.Value | None) -> float | None:
    numel = _numel(value)
    if numel is None or value.dtype is None:
        return None
    try:
        return numel * value.dtype.itemsize
    except Exception:  # noqa: BLE001 - types without a size (strings)
        return None


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _attr(node: ir.Node, name: str, default=None):
    attr = node.attributes.get(name)
    if attr is None or attr.is_ref():
        return default
    return attr.value


# --------------------------------------------------------------------------- cost model

def _conv_flops(node: ir.Node, transpose: bool) -> float | None:
    weight = _dims(_input(node, _CONV_WEIGHT.get(node.op_type, 1)))
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
    width = max(len(a), len(b))
    a = [1] * (width - len(a)) + list(a)
    b = [1] * (width - len(b)) + list(b)
    return [max(x, y) if min(x, y) != 0 else 0 for x, y in zip(a, b)]


def _matmul_flops(node: ir.Node) -> float | None:
    a, b = _dims(_input(node, 0)), _dims(_input(node, _MATMUL_B.get(node.op_type, 1)))
    if a is None or b is None or not a or not b:
        return None
    a = [1, *a] if len(a) == 1 else list(a)
    b = [*b, 1] if len(b) == 1 else list(b)
    if _attr(node, "transA", 0):
        a[-2], a[-1] = a[-1], a[-2]
    if _attr(node, "transB", 0):
        b[-2], b[-1] = b[-1], b[-2]
    batch = math.prod(_broadcast(a[:-2], b[:-2]))
    return 2.0 * batch * a[-2] * a[-1] * b[-1]


def _gemm_flops(node: ir.Node) -> float | None:
    a, b = _dims(_input(node, 0)), _dims(_input(node, 1))
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m, k = (a[1], a[0]) if _attr(node, "transA", 0) else a
    n = b[0] if _attr(node, "transB", 0) else b[1]
    flops = 2.0 * m * n * k
    if _input(node, 2) is not None:
        flops += m * n
    return flops


def _einsum_flops(node: ir.Node) -> float | None:
    equation = str(_attr(node, "equation", "")).replace(" ", "")
    terms = equation.split("->")[0].split(",")
    if len(terms) != len(node.inputs):
        return None
    extents: dict[str, int] = {}
    ellipsis = 1
    for term, value in zip(terms, node.inputs):
        dims = _dims(value)
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
    x, w, r = _dims(_input(node, 0)), _dims(_input(node, 1)), _dims(_input(node, 2))
    if x is None or w is None or r is None or len(x) != 3 or len(w) != 3 or len(r) != 3:
        return None
    steps = x[0] * x[1]  # seq * batch, whatever the layout
    directions, gates_hidden, inputs = w
    hidden = r[2]
    return 2.0 * steps * directions * gates_hidden * (inputs + hidden) + 10.0 * steps * directions * hidden


def _attention_flops(node: ir.Node) -> float | None:
    """com.microsoft Attention: packed QKV projection, then scaled dot-product attention per head."""
    x, w = _dims(_input(node, 0)), _dims(_input(node, 1))
    heads = int(_attr(node, "num_heads", 1) or 1)
    if x is None or w is None or len(x) != 3 or len(w) != 2:
        return None
    batch, seq, _ = x
    sizes = _attr(node, "qkv_hidden_sizes", None)
    qk = int(sizes[0]) if sizes else w[1] // 3
    v = int(sizes[2]) if sizes else w[1] // 3
    projection = 2.0 * batch * seq * w[0] * w[1]
    return projection + 2.0 * batch * seq * seq * (qk + v) + 5.0 * batch * heads * seq * seq


def _multi_head_attention_flops(node: ir.Node) -> float | None:
    """com.microsoft MultiHeadAttention: Q.K^T, softmax, P.V (no projections)."""
    q, k = _dims(_input(node, 0)), _dims(_input(node, 1))
    heads = int(_attr(node, "num_heads", 1) or 1)
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
    out = _numel(node.outputs[0])
    kernel = _attr(node, "kernel_shape", None)
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
        scans = int(_attr(node, "num_scan_inputs", 0) or 0)
        axes = list(_attr(node, "scan_input_axes", None) or [0] * scans)
        first = _dims(node.inputs[len(node.inputs) - scans]) if 0 < scans <= len(node.inputs) else None
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
        a, n = _numel(_input(node, 0)), _attr(node, "N", None)
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


# --------------------------------------------------------------------------- binding

def _is_batch_like(position: int, dim) -> bool:
    if position != 0:
        return False
    name = getattr(dim, "value", dim)
    return name is None or str(name).lower() in _BATCH_WORDS or "batch" in str(name).lower()


def _bind_inputs(graph: ir.Graph, input_shapes: Mapping[str, Sequence[int]]) -> None:
    """Give every non-initializer graph input static dims: the given ones, else the defaults."""
    inputs = [v for v in graph.inputs if not v.is_initializer()]
    unknown = sorted(set(input_shapes) - {v.name for v in inputs})
    if unknown:
        raise ValueError(f"input_shapes names no graph input: {', '.join(unknown)}")
    symbols: dict[str, int] = {}
    for value in inputs:  # given shapes first: they name the symbols other inputs share
        if value.name not in input_shapes:
            continue
        dims = [int(d) for d in input_shapes[value.name]]
        if any(d < 0 for d in dims):
            raise ValueError(f"input_shapes[{value.name!r}]: dims must be >= 0, got {dims}")
        if value.shape is not None:
            if len(value.shape) != len(dims):
                logger.warning("input %s: declared rank %d, given %s", value.name, len(value.shape), dims)
            for declared, dim in zip(value.shape, dims):
                name = getattr(declared, "value", None)
                if isinstance(name, str):
                    symbols.setdefault(name, dim)
        value.shape = ir.Shape(dims)
    for value in inputs:
        if value.name in input_shapes or value.shape is None:
            continue
        dims = []
        for position, dim in enumerate(value.shape):
            if isinstance(dim, int) and dim >= 0:
                dims.append(dim)
                continue
            name = getattr(dim, "value", None)
            if isinstance(name, str) and name in symbols:
                dims.append(symbols[name])
                continue
            bound = _DEFAULT_BATCH if _is_batch_like(position, dim) else _DEFAULT_DIM
            if isinstance(name, str):
                symbols[name] = bound
            dims.append(bound)
        value.shape = ir.Shape(dims)


def _missing_shapes(graph: ir.Graph) -> int:
    """How many node outputs of the graph (subgraphs included) lack a static shape."""
    return sum(
        1
        for node in ir.traversal.RecursiveGraphIterator(graph)
        for value in node.outputs
        if _dims(value) is None and (value.type is None or isinstance(value.type, ir.TensorType))
    )


def _infer_symbolic_shapes(model: ir.Model) -> None:
    """Fill shapes onnx's inference left symbolic with onnxruntime's symbolic shape inference, which
    also evaluates the shape arithmetic exporters emit (Expand targets, computed pads) and knows
    com.microsoft ops. Best-effort: any failure leaves the shapes as they were."""
    try:
        from onnx_ir.passes.common import _c_api_utils
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        def infer(proto):
            # The steps of SymbolicShapeInference.infer_shapes(), without its failure path: when any
            # shape stays unknown (a custom op) it writes a file into the working directory and
            # raises. Here whatever it did infer is kept.
            inference = SymbolicShapeInference(2**31 - 1, True, False, 0)
            inference._preprocess(proto)
            while inference.run_:
                inference._infer_impl()
            inference._update_output_from_vi()
            return inference.out_mp_

        inferred = _c_api_utils.call_onnx_api(infer, model)
        found = ir.serde.deserialize_model(inferred)
    except Exception as error:  # noqa: BLE001 - a fallback, never fatal
        logger.info("symbolic shape inference failed: %s", error)
        return
    for graph, other_graph in zip(model.graphs(), found.graphs()):
        known = ir.convenience.create_value_mapping(other_graph)
        for name, value in ir.convenience.create_value_mapping(graph).items():
            other = known.get(name)
            dims = _dims(other)
            if dims is None or _dims(value) is not None:
                continue
            if value.shape is not None and len(value.shape) != len(dims):
                continue  # disagreement on the rank: trust onnx's inference
            value.shape = ir.Shape(dims)
            if value.dtype is None and other.dtype is not None:
                value.dtype = other.dtype


# --------------------------------------------------------------------------- the DAG

@dataclasses.dataclass
class _Dag:
    """Vertices: the main graph's nodes (Constant nodes aside) then its non-initializer inputs."""

    names: list[str]
    costs: list[float]
    preds: list[list[int]]
    succs: list[list[int]]
    is_node: list[bool]
    live: list[bool]  # depends on a graph input: a possible fork
    to_sink: list[bool]  # feeds a graph output or nothing at all
    order: list[int]  # topological


def outer_reads(node: ir.Node) -> Iterable[ir.Value]:
    """Values a node's subgraphs (recursively) read; callers keep those of the graph they look at."""
    for attr in node.attributes.values():
        if attr.is_ref() or attr.type not in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
            continue
        for graph in attr.value if attr.type == ir.AttributeType.GRAPHS else [attr.value]:
            for inner in ir.traversal.RecursiveGraphIterator(graph):
                for value in inner.inputs:
                    if value is not None:
                        yield value


def _build_dag(graph: ir.Graph, nodes: list[ir.Node], names: list[str], costs: list[NodeCost]) -> _Dag:
    vertex: dict[int, int] = {}
    dag_names, dag_costs, is_node = [], [], []
    for node, name, cost in zip(nodes, names, costs):
        if node.op_type == "Constant" and node.domain in _STANDARD:
            continue
        vertex[id(node)] = len(dag_names)
        dag_names.append(name)
        dag_costs.append(cost.flops)
        is_node.append(True)
    source: dict[int, int] = {}
    for value in graph.inputs:
        if not value.is_initializer():
            source[id(value)] = len(dag_names)
            dag_names.append(value.name)
            dag_costs.append(0.0)
            is_node.append(False)
    size = len(dag_names)
    preds: list[set[int]] = [set() for _ in range(size)]

    def origin(value: ir.Value | None) -> int | None:
        if value is None:
            return None
        producer = value.producer()
        if producer is not None:
            return vertex.get(id(producer))
        return source.get(id(value))

    for node in nodes:
        v = vertex.get(id(node))
        if v is None:
            continue
        for value in (*node.inputs, *outer_reads(node)):
            u = origin(value)
            if u is not None and u != v:
                preds[v].add(u)
    succs: list[list[int]] = [[] for _ in range(size)]
    for v in range(size):
        for u in sorted(preds[v]):
            succs[u].append(v)
    to_sink = [not s for s in succs]
    for value in graph.outputs:
        u = origin(value)
        if u is not None:
            to_sink[u] = True
    order = _topological_order([sorted(p) for p in preds], succs)
    live = [not is_node[v] for v in range(size)]
    for v in order:
        live[v] = live[v] or any(live[u] for u in preds[v])
    return _Dag(dag_names, dag_costs, [sorted(p) for p in preds], succs, is_node, live, to_sink, order)


def _topological_order(preds: list[list[int]], succs: list[list[int]]) -> list[int]:
    """Kahn's algorithm, stable in vertex order; vertices on a cycle (invalid graphs) come last."""
    waiting = [len(p) for p in preds]
    ready = [v for v in range(len(preds)) if not waiting[v]]
    order: list[int] = []
    while ready:
        next_ready: list[int] = []
        for v in ready:
            order.append(v)
            for w in succs[v]:
                waiting[w] -= 1
                if not waiting[w]:
                    next_ready.append(w)
        ready = sorted(next_ready)
    if len(order) < len(preds):
        logger.warning("graph has a cycle; %d nodes left out of the path analysis", len(preds) - len(order))
    return order


def _longest_path(dag: _Dag, costs: list[float]) -> tuple[float, list[int]]:
    """The costliest path under `costs` (ties: more vertices) and its vertices."""
    best: list[tuple[float, int] | None] = [None] * len(costs)
    back: list[int] = [-1] * len(costs)
    for v in dag.order:
        key, via = (0.0, 0), -1
        for u in dag.preds[v]:
            if best[u] is not None and best[u] > key:
                key, via = best[u], u
        best[v] = (key[0] + costs[v], key[1] + 1)
        back[v] = via
    reached = [v for v in dag.order if best[v] is not None]
    if not reached:
        return 0.0, []
    end = max(reached, key=lambda v: best[v])
    path = []
    while end != -1:
        path.append(end)
        end = back[end]
    return best[path[0]][0], path[::-1]


def _post_dominators(dag: _Dag) -> tuple[list[int], list[int]]:
    """Immediate post-dominators and post-dominator tree depths; index len(vertices) is the virtual sink."""
    sink = len(dag.names)
    ipdom = [sink] * (sink + 1)
    depth = [-1] * (sink + 1)
    ipdom[sink], depth[sink] = sink, 0
    for v in reversed(dag.order):
        targets = [w for w in dag.succs[v] if depth[w] >= 0]
        if dag.to_sink[v]:
            targets.append(sink)
        if not targets:
            targets = [sink]
        join = targets[0]
        for w in targets[1:]:
            a, b = join, w
            while a != b:
                if depth[a] >= depth[b]:
                    a = ipdom[a]
                else:
                    b = ipdom[b]
            join = a
        ipdom[v], depth[v] = join, depth[join] + 1
    return ipdom, depth


def _joins(fork: int, dag: _Dag, ipdom: list[int]) -> list[tuple[int, list[int]]]:
    """The places where the fork's consumers meet again, each with the consumers meeting there: every
    vertex where two consumers' post-dominator chains first meet, up to `ipdom[fork]`."""
    outer, sink = ipdom[fork], len(dag.names)
    seen: set[int] = set()
    members: dict[int, list[int]] = {}
    for start in dag.succs[fork]:
        v = start
        while v not in seen:
            seen.add(v)
            if v in (outer, sink):
                break
            v = ipdom[v]
        else:
            members.setdefault(v, [])  # another consumer's chain got here first
    for start in dag.succs[fork]:
        v = start
        while True:
            if v in members:
                members[v].append(start)
            if v in (outer, sink):
                break
            v = ipdom[v]
    return list(members.items())


def _branches(starts: list[int], join: int, dag: _Dag, position: dict[int, int]) -> list[list[int]]:
    """The vertices reachable from `starts` before `join`, split into connected components."""
    interior: set[int] = set()
    stack = [v for v in starts if v != join]
    while stack:
        v = stack.pop()
        if v in interior:
            continue
        interior.add(v)
        stack.extend(w for w in dag.succs[v] if w != join and w not in interior)
    parent = {v: v for v in interior}

    def find(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for v in interior:
        for w in dag.succs[v]:
            if w in interior:
                parent[find(v)] = find(w)
    groups: dict[int, list[int]] = {}
    for v in sorted(interior, key=position.__getitem__):
        groups.setdefault(find(v), []).append(v)
    return list(groups.values())


def _regions(dag: _Dag, significant: float) -> list[Region]:
    """Fork-join regions with at least two branches costing more than `significant` FLOPs (and more
    than 0), in topological order of the fork."""
    sink = len(dag.names)
    ipdom, _ = _post_dominators(dag)
    position = {v: i for i, v in enumerate(dag.order)}
    position.update({v: len(position) + i for i, v in enumerate(v for v in range(sink + 1) if v not in position)})
    regions, found = [], set()
    for fork in dag.order:
        if len(dag.succs[fork]) < 2 or not dag.live[fork]:
            continue
        for join, starts in sorted(_joins(fork, dag, ipdom), key=lambda item: position[item[0]]):
            groups = _branches(starts, join, dag, position)
            flops = [float(sum(dag.costs[v] for v in members)) for members in groups]
            key = (join, frozenset(v for members in groups for v in members))
            if sum(1 for f in flops if f > 0 and f >= significant) < 2 or key in found:
                continue
            found.add(key)
            branches = [{"nodes": [dag.names[v] for v in members], "flops": f} for members, f in zip(groups, flops)]
            regions.append(Region(dag.names[fork], OUTPUTS_JOIN if join == sink else dag.names[join], branches))
    return regions


# --------------------------------------------------------------------------- entry point

def analyze(model: ir.Model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> GraphAnalysis:
    """Cost the main graph of (a clone of) `model` and measure its parallelism; see the module docstring.

    `input_shapes` binds graph inputs by name (ValueError for a name that is no graph input); other
    dynamic dims get the defaults. The caller's model is not modified.
    """
    from optimizer.graph.shapes import infer_shapes  # imports onnx: only when analysing

    clone = model.clone()
    _bind_inputs(clone.graph, input_shapes or {})
    infer_shapes(clone)
    if _missing_shapes(clone.graph):
        _infer_symbolic_shapes(clone)
    graph = clone.graph
    nodes = list(graph)
    names = [node.name or f"{node.op_type}_{i}" for i, node in enumerate(nodes)]
    costs = []
    for node, name in zip(nodes, names):
        flops, moved, known = _node_cost(node)
        costs.append(NodeCost(name, node.op_type, flops, moved, known))
    by_op_type: dict[str, dict] = {}
    for cost in costs:
        stats = by_op_type.setdefault(cost.op_type, {"count": 0, "flops": 0.0, "bytes_moved": 0.0})
        stats["count"] += 1
        stats["flops"] += cost.flops
        stats["bytes_moved"] += cost.bytes_moved
    work = float(sum(c.flops for c in costs))

    dag = _build_dag(graph, nodes, names, costs)
    span, path = _longest_path(dag, dag.costs)
    parallelism = max(1.0, work / span) if work > 0 and span > 0 else 1.0
    small = _SMALL_NODE_FRACTION * work
    large_span, _ = _longest_path(dag, [c if c >= small else 0.0 for c in dag.costs])
    serial = large_span + sum(c for c in dag.costs if c < small)
    bound = min(parallelism, max(1.0, work / serial)) if work > 0 and serial > 0 else 1.0
    unknown = sum(1 for c in costs if not c.known)
    if unknown:
        logger.info("%d of %d nodes have no cost estimate (unknown op or missing shapes)", unknown, len(costs))
    return GraphAnalysis(
        nodes=costs,
        by_op_type=by_op_type,
        work_flops=work,
        span_flops=float(span),
        parallelism=parallelism,
        critical_path=[dag.names[v] for v in path if dag.is_node[v]],
        regions=_regions(dag, small),
        inter_op_speedup_bound=bound,
        unknown_cost_nodes=unknown,
    )


def inter_op_speedup_of(model: ir.Model) -> float | None:
    """What parallel execution could give on this graph (the analysis' bound); None when unknown."""
    try:
        return analyze(model).inter_op_speedup_bound
    except Exception as error:  # noqa: BLE001 - the analysis is advice; tuning goes on without it
        logger.info("graph analysis failed (%s); parallel execution stays in the search", error)
        return None
