"""A hypothesis strategy for random valid ONNX models: float32, static shapes, built with onnx.helper.

Validity is by construction: the builder tracks every value's static shape and only emits an op on
operands it accepts, in the form its opset wants (Squeeze/Unsqueeze/ReduceMean/Split axes as
attributes or inputs, Pad's axes, Shape's start/end, ...). The model is a pool of values grown by
blocks, each block a small pattern the passes look for or one they must leave alone:

- elementwise unary and binary ops (Div by divisors kept away from 0, Exp/Log/Sqrt/Reciprocal on
  bounded or shifted operands), neutral constants (x+0, x*1) including ones that broadcast x up;
- MatMul and Gemm with constant weights (transA/transB/alpha/beta, every C shape), MatMul + bias,
  Transpose feeding Gemm/MatMul, BatchNormalization after Gemm/MatMul;
- Conv/ConvTranspose (bias, pads, auto_pad, strides, dilations, groups, zero output channels)
  followed by BatchNormalization or per-channel Mul/Add, Pad before Conv/AveragePool/MaxPool;
- Reshape (0 and -1), Flatten, Squeeze, Unsqueeze, Transpose, Expand chains; Concat and Split; Slice
  (negative, clamped and reversed bounds);
- Constant nodes, constant-foldable subgraphs, shape subgraphs (Shape -> Gather -> Unsqueeze ->
  Concat -> Reshape, ConstantOfShape, Size);
- LayerNorm, RMSNorm, GELU (Erf and Tanh forms), HardSigmoid/HardSwish decompositions and attention
  blocks, each with "almost" variants the fusions must decline (wrong constant, extra reader);
- If with a constant or data-dependent condition; duplicated nodes and initializers (CSE, dedup).

Graph outputs are the last value plus, sometimes, intermediate values that are also consumed. Shapes
are static, except that sometimes the first input declares its batch dim symbolic ("N", run as 1), so
that shape inference leaves dims unknown downstream of it.
Constants draw their numbers from a numpy generator seeded by hypothesis (so shrinking acts on the
structure); magnitudes stay moderate so that float32 comparisons are meaningful.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

__all__ = ["OPSETS", "Value", "Builder", "models", "ir_version_for"]

OPSETS = (11, 13, 17, 18, 20, 23)
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
MAX_ELEMENTS = 4096
"""Values larger than this are not grown further (keeps onnxruntime sessions fast)."""


def ir_version_for(opset: int) -> int:
    return 11 if opset >= 22 else 10


@dataclasses.dataclass(frozen=True)
class Value:
    name: str
    shape: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _ANY(value) -> bool:
    return True


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _slice_length(dim: int, start: int, end: int, step: int) -> int:
    """Length of ONNX Slice along one axis (the spec's clamping rules)."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        return max(0, math.ceil((end - start) / step))
    start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return max(0, math.ceil((start - end) / -step))


def _conv_out(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int) -> int:
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


class Builder:
    """Grows one graph (or an If branch): nodes, initializers (always in the main graph), a pool of values."""

    def __init__(self, draw, opset: int, rng: np.random.Generator, parent: Builder | None = None) -> None:
        self.draw = draw
        self.opset = opset
        self.rng = rng
        self.parent = parent
        self.root: Builder = parent.root if parent is not None else self
        self.nodes: list[onnx.NodeProto] = []
        self.pool: list[Value] = []
        self.scalar_shapes: list[tuple[int, ...]] = []
        if parent is None:
            self.counter = itertools.count()
            self.initializers: list[onnx.TensorProto] = []
            self.inputs: list[Value] = []
            self.weights: dict[tuple, list[np.ndarray]] = {}
            self.int_inputs: list[Value] = []
            """int64 graph inputs (token ids); the pool holds float values only."""
            self.int_outputs: list[Value] = []
            """int64 graph outputs (shapes)."""
            self.from_double: set[str] = set()
            """Values computed by Cast(double -> float): onnxruntime 1.31 (optimizations off) fails an If
            branch that reads one from the outer graph ("Missing Input"), so If blocks avoid them."""
            self.depth = 0
        else:
            self.depth = parent.depth + 1

    # drawing ---------------------------------------------------------------------------------------

    def choice(self, options):
        return self.draw(st.sampled_from(list(options)))

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def flag(self) -> bool:
        return self.draw(st.booleans())

    def rarely(self) -> bool:
        """True about one time in four (shrinks to False)."""
        return self.draw(st.integers(0, 3)) == 3

    def fresh(self, prefix: str) -> str:
        return f"{prefix}_{next(self.root.counter)}"

    # constants -------------------------------------------------------------------------------------

    def initializer(self, array: np.ndarray, prefix: str = "w") -> str:
        name = self.fresh(prefix)
        self.root.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d arrays 0-d
        return name

    def const(self, array: np.ndarray, prefix: str = "c") -> str:
        """A constant as an initializer or a Constant node (drawn; always a node inside an If branch)."""
        array = np.asarray(array)
        if self.parent is None and not self.rarely():
            return self.initializer(array, prefix)
        name = self.fresh(prefix)
        form = "value"
        if self.opset < 12 or array.size == 0:  # value_float(s)/value_int(s) came with opset 12; none is empty
            pass
        elif array.dtype == np.float32 and array.ndim == 0:
            form = self.choice(["value", "value_float"])
        elif array.dtype == np.float32 and array.ndim == 1:
            form = self.choice(["value", "value_floats"])
        elif array.dtype == np.int64 and array.ndim == 1:
            form = self.choice(["value", "value_ints"])
        if form == "value":
            node = helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_t"))
        elif form == "value_float":
            node = helper.make_node("Constant", [], [name], value_float=float(array))
        elif form == "value_floats":
            node = helper.make_node("Constant", [], [name], value_floats=[float(v) for v in array])
        else:
            node = helper.make_node("Constant", [], [name], value_ints=[int(v) for v in array])
        self.nodes.append(node)
        return name

    def ints(self, values) -> str:
        return self.const(np.array(list(values), dtype=np.int64), "i")

    def scalar(self, value: float, rank: int | None = None, grow: bool = False) -> str:
        """A float constant holding one value; its shape is [], [1] or [1, 1...] (never of higher rank than
        `rank`, unless `grow`: then rarely one more, which broadcasts the other operand up a rank; the
        block reads the result's shape from `scalar_shapes`)."""
        shapes = [()]
        if rank is None or rank >= 1:
            shapes.append((1,))
        if rank is not None and rank >= 2:
            shapes.append((1,) * self.integer(2, rank))
        if grow and rank is not None and rank < 4 and self.rarely() and self.rarely():
            shapes = [(1,) * (rank + 1)]
        shape = self.choice(shapes)
        self.scalar_shapes.append(shape)
        return self.const(np.full(shape, value, dtype=np.float32), "s")

    def grown(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """`shape` broadcast with the scalars drawn since the block began."""
        return _broadcast(shape, *self.scalar_shapes)

    def floats(self, shape: tuple[int, ...], kind: str = "normal", scale: float = 1.0) -> np.ndarray:
        if kind == "normal":
            return (self.rng.standard_normal(shape) * scale).astype(np.float32)
        if kind == "positive":
            return self.rng.uniform(0.5, 1.5, shape).astype(np.float32)
        if kind == "divisor":
            return (self.rng.choice([-1.0, 1.0], shape) * self.rng.uniform(0.5, 2.0, shape)).astype(np.float32)
        if kind == "zeros":
            return np.zeros(shape, np.float32)
        if kind == "ones":
            return np.ones(shape, np.float32)
        raise ValueError(kind)

    def weight(self, shape: tuple[int, ...], fan_in: int, channel_axis: int = 0) -> str:
        """A weight initializer: normal (scaled by fan-in), some output channels zero, all zero or all one;
        sometimes a second copy of an earlier weight of the same shape (for deduplication)."""
        previous = self.root.weights.get(shape, [])
        if previous and self.rarely():
            return self.initializer(previous[-1].copy(), "dup")
        kind = self.choice(["normal", "normal", "zero-channels", "ones", "zeros"])
        array = self.floats(shape, "normal", 1.0 / math.sqrt(max(fan_in, 1)))
        if kind == "zero-channels" and shape[channel_axis] > 1:
            index = [slice(None)] * len(shape)
            index[channel_axis] = self.rng.choice(shape[channel_axis], self.integer(1, shape[channel_axis] - 1), replace=False)
            array[tuple(index)] = 0
        elif kind == "zeros":
            array[...] = 0
        elif kind == "ones":
            array = np.full(shape, 1.0 / max(fan_in, 1), np.float32) if fan_in > 1 else np.ones(shape, np.float32)
        self.root.weights.setdefault(shape, []).append(array)
        return self.initializer(array, "w")

    # nodes -----------------------------------------------------------------------------------------

    def node(self, op: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", **attrs) -> list[str]:
        names = [self.fresh(op.lower()) for _ in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op, inputs, names, domain=domain or None, **{k: v for k, v in attrs.items() if v is not None}))
        return names

    def op(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> Value:
        """A one-output node whose output joins the pool."""
        value = Value(self.node(op, inputs, **attrs)[0], tuple(shape))
        self.pool.append(value)
        return value

    def pick(self, accept=None) -> Value | None:
        """A pool value `accept` takes, recent ones first (shrinks toward the newest); with no `accept`,
        always a value (the smallest when all are too large)."""
        accept = accept or _ANY
        candidates = [v for v in self.pool if accept(v) and v.size <= MAX_ELEMENTS]
        if not candidates:
            return min(self.pool, key=lambda v: v.size) if accept is _ANY else None
        return candidates[-1 - self.integer(0, len(candidates) - 1)]

    # opset-dependent forms -------------------------------------------------------------------------

    def unsqueeze(self, x: str, axes: list[int]) -> str:
        if self.opset < 13:
            return self.node("Unsqueeze", [x], axes=axes)[0]
        return self.node("Unsqueeze", [x, self.ints(axes)])[0]

    def squeeze(self, x: str, axes: list[int] | None) -> str:
        if axes is None:
            return self.node("Squeeze", [x])[0]
        if self.opset < 13:
            return self.node("Squeeze", [x], axes=axes)[0]
        return self.node("Squeeze", [x, self.ints(axes)])[0]

    def reduce(self, op: str, x: str, axes: list[int], keepdims: int | None = 1) -> str:
        if op == "ReduceSum" and self.opset >= 13 or self.opset >= 18:
            return self.node(op, [x, self.ints(axes)], keepdims=keepdims)[0]
        return self.node(op, [x], axes=axes, keepdims=keepdims)[0]

    def clip(self, x: str, low: float | None, high: float | None) -> str:
        inputs = [x, self.scalar_exact(low) if low is not None else "", self.scalar_exact(high) if high is not None else ""]
        while inputs[-1] == "":
            inputs.pop()
        return self.node("Clip", inputs)[0]

    def scalar_exact(self, value: float) -> str:
        """A rank-0 float constant (Clip's min/max must be scalars)."""
        return self.const(np.array(value, dtype=np.float32), "s")

    # shapes ----------------------------------------------------------------------------------------

    def factor(self, n: int, parts: int) -> tuple[int, ...]:
        """`n` split into `parts` positive factors (drawn)."""
        dims = [1] * parts
        primes, m, p = [], n, 2
        while m > 1:
            while m % p == 0:
                primes.append(p)
                m //= p
            p += 1
        for prime in primes:
            dims[self.integer(0, parts - 1)] *= prime
        return tuple(dims)

    def broadcastable_shape(self, shape: tuple[int, ...], allow_growth: bool = True) -> tuple[int, ...]:
        """A shape that broadcasts against `shape`: a suffix with dims kept or set to 1, rarely with
        extra leading dims (which grow the result)."""
        rank = self.integer(0, len(shape))
        suffix = tuple(d if self.flag() else 1 for d in shape[len(shape) - rank:]) if rank else ()
        if allow_growth and self.rarely() and len(shape) < 4:
            suffix = (self.integer(1, 3),) + tuple(shape[:len(shape) - rank]) + suffix if rank < len(shape) else (self.integer(1, 3),) + suffix
        return suffix

    def ensure_rank(self, rank: int, accept=lambda v: True) -> Value | None:
        """A pool value of `rank`, made by Reshape (or Flatten for rank 2) of another value when none has it."""
        value = self.pick(lambda v: v.rank == rank and accept(v))
        if value is not None:
            return value
        source = self.pick(lambda v: v.size <= 512)
        if source is None:
            return None
        if rank == 2 and source.rank >= 1 and self.flag():
            axis = self.integer(0, source.rank)
            shape = (int(np.prod(source.shape[:axis], dtype=np.int64)), int(np.prod(source.shape[axis:], dtype=np.int64)))
            value = self.op("Flatten", [source.name], shape, axis=axis)
        else:
            shape = self.factor(source.size, rank)
            if rank >= 3 and self.flag():
                shape = (1,) + self.factor(source.size, rank - 1)
            value = self.op("Reshape", [source.name, self.ints(shape)], shape)
        return value if accept(value) else None


# ---------------------------------------------------------------------------------------------------
# Blocks: each grows the pool by a pattern; returns False when it does not apply to the pool.


def block_unary(b: Builder) -> bool:
    x = b.pick()
    op = b.choice(["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Erf", "LeakyRelu", "Elu", "Softplus", "Exp", "Sqrt", "Log",
                   "Reciprocal", "Identity", "Dropout", "Cast", "Softmax", "HardSigmoid", "Clip"])
    if op == "Exp":
        bounded = b.node("Tanh", [x.name])[0] if b.flag() else b.clip(x.name, -3.0, 3.0)
        b.op("Exp", [bounded], x.shape)
    elif op in ("Sqrt", "Log", "Reciprocal"):
        shifted = b.node("Add", [b.node("Abs", [x.name])[0], b.scalar(0.1 if op == "Sqrt" else 1.0, x.rank, grow=True)])[0]
        b.op(op, [shifted], b.grown(x.shape))
    elif op == "LeakyRelu":
        b.op(op, [x.name], x.shape, alpha=b.choice([None, 0.1, 0.3]))
    elif op == "Elu":
        b.op(op, [x.name], x.shape, alpha=b.choice([None, 0.5]))
    elif op == "HardSigmoid":
        b.op(op, [x.name], x.shape, alpha=b.choice([None, 1 / 6]), beta=b.choice([None, 0.5]))
    elif op == "Dropout":
        inputs = [x.name]
        if b.opset >= 12 and b.flag():
            inputs += ["", b.const(np.array(False), "training")]
        b.op(op, inputs, x.shape)
    elif op == "Cast":
        kind = b.choice(["same", "double", "float16"] if x.name in {i.name for i in b.root.inputs} else ["same", "double"])
        if kind == "same":
            b.op("Cast", [x.name], x.shape, to=TensorProto.FLOAT)
        else:
            middle = b.node("Cast", [x.name], to=TensorProto.DOUBLE if kind == "double" else TensorProto.FLOAT16)[0]
            b.root.from_double.add(b.op("Cast", [middle], x.shape, to=TensorProto.FLOAT).name)
    elif op == "Softmax":
        axis = b.integer(-x.rank, x.rank - 1) if x.rank else None
        if x.rank == 0:
            return False
        b.op(op, [x.name], x.shape, axis=axis if b.flag() or b.opset < 13 else None)
    elif op == "Clip":
        low, high = b.choice([(0.0, 6.0), (-1.0, 1.0), (None, 0.5), (0.0, None)])
        if b.opset >= 11:
            b.pool.append(Value(b.clip(x.name, low, high), x.shape))
    else:
        b.op(op, [x.name], x.shape)
    return True


def block_binary(b: Builder) -> bool:
    x = b.pick()
    op = b.choice(["Add", "Mul", "Sub", "Div", "Max", "Min", "Pow"])
    if op == "Pow":
        if b.flag():
            exponent = b.scalar(b.choice([2.0, 3.0]), x.rank)
            base = x.name
        else:
            exponent = b.scalar(0.5, x.rank)
            base = b.node("Add", [b.node("Abs", [x.name])[0], b.scalar(1.0, x.rank)])[0]
        b.op("Pow", [base, exponent], x.shape)
        return True
    kind = b.choice(["const", "value", "neutral"])
    other_shape = None
    if kind == "value":
        y = b.pick(lambda v: v.name != x.name and _broadcast(v.shape, x.shape) is not None and len(_broadcast(v.shape, x.shape)) <= 4
                   and int(np.prod(_broadcast(v.shape, x.shape))) <= MAX_ELEMENTS)
        if y is None:
            y = x
        other, other_shape = y.name, y.shape
        if op == "Div":
            other = b.node("Add", [b.node("Abs", [other])[0], b.scalar(1.0, len(other_shape))])[0]
    else:
        other_shape = b.broadcastable_shape(x.shape)
        if kind == "neutral":
            array = b.floats(other_shape, "ones" if op in ("Mul", "Div") else "zeros")
        else:
            array = b.floats(other_shape, "divisor" if op == "Div" else "normal")
        other = b.const(array)
    swap = op != "Div" and b.flag() or (op == "Div" and kind == "const" and b.rarely())
    if swap and op == "Div":  # c / x needs a divisor away from 0
        divisor = b.node("Add", [b.node("Abs", [x.name])[0], b.scalar(1.0, x.rank)])[0]
        b.op("Div", [other, divisor], _broadcast(x.shape, other_shape))
        return True
    inputs = [other, x.name] if swap else [x.name, other]
    b.op(op, inputs, _broadcast(x.shape, other_shape))
    return True


def block_matmul(b: Builder) -> bool:
    variant = b.choice(["weight", "weight+bias", "left-weight", "values", "vector-weight", "batched-weight", "transposed"])
    if variant in ("weight+bias", "transposed") and b.flag():  # a dense layer: 2-D, as fuse-matmul-add wants
        x = b.ensure_rank(2, lambda v: v.shape[-1] <= 64)
    else:
        x = b.pick(lambda v: v.rank >= 1 and v.shape[-1] <= 64)
    if x is None:
        return False
    k = x.shape[-1]
    if variant == "left-weight" and x.rank >= 2:
        m = b.integer(1, 5)
        w = b.weight((m, x.shape[-2]), x.shape[-2])
        b.op("MatMul", [w, x.name], x.shape[:-2] + (m, x.shape[-1]))
        return True
    if variant == "values" and x.rank >= 2:
        # x @ x^T (the last two axes swapped)
        perm = list(range(x.rank))
        perm[-2], perm[-1] = perm[-1], perm[-2]
        t = b.node("Transpose", [x.name], perm=perm)[0]
        b.op("MatMul", [x.name, t], x.shape[:-1] + (x.shape[-2],))
        return True
    if variant == "vector-weight":
        w = b.weight((k,), k)
        b.op("MatMul", [x.name, w], x.shape[:-1])
        return True
    if variant == "batched-weight" and x.rank >= 2:
        batch = b.choice([1, x.shape[-3]] if x.rank >= 3 else [1, 2])
        n = b.integer(1, 6)
        w = b.weight((batch, k, n), k)
        out = _broadcast(x.shape[:-2], (batch,)) + (x.shape[-2], n)
        b.op("MatMul", [x.name, w], out)
        return True
    if variant == "transposed" and x.rank == 2:
        # MatMul(Transpose(x), W): fuse-transposes makes it Gemm(transA=1)
        t = b.node("Transpose", [x.name], perm=b.choice([[1, 0], None]))[0]
        n = b.integer(1, 6)
        w = b.weight((x.shape[0], n), x.shape[0])
        b.op("MatMul", [t, w], (x.shape[1], n))
        return True
    n = b.integer(1, 8)
    w = b.weight((k, n), k, channel_axis=1)
    out = x.shape[:-1] + (n,) if x.rank >= 2 else (n,)
    product = b.op("MatMul", [x.name, w], out)
    if variant == "weight+bias":
        shapes = [(n,), (1, n), ()]
        if x.rank == 2:
            shapes += [out, (out[0], 1)]
        bias_shape = b.choice(shapes)
        bias = b.const(b.floats(bias_shape, "normal"), "bias")
        b.op("Add", [product.name, bias] if b.flag() else [bias, product.name], _broadcast(out, bias_shape))
    return True


def block_gemm(b: Builder) -> bool:
    x = b.ensure_rank(2, lambda v: max(v.shape) <= 64)
    if x is None:
        return False
    trans_a = b.choice([0, 1])
    if trans_a and b.flag():  # the transpose written as a node: fuse-transposes folds it back
        x = b.op("Transpose", [x.name], (x.shape[1], x.shape[0]), perm=[1, 0])
        trans_a = 0
    m, k = (x.shape[1], x.shape[0]) if trans_a else x.shape
    n = b.integer(1, 6)
    trans_b = b.choice([0, 1])
    weight = b.weight((n, k) if trans_b else (k, n), k, channel_axis=0 if trans_b else 1)
    if b.rarely():  # B as a Transpose of a non-constant value (folded into transB)
        source = b.pick(lambda v: v.shape == ((k, n) if trans_b else (n, k)))
        if source is not None:
            weight = b.node("Transpose", [source.name], perm=[1, 0])[0]
    c_shape = b.choice(["none", (n,), (1, n), (m, n), (m, 1), (), (1,)])
    inputs = [x.name, weight]
    if c_shape != "none":
        kind = b.choice(["normal", "zeros"])
        inputs.append(b.const(b.floats(c_shape, kind), "gemm_c"))
    elif b.opset < 11:
        inputs.append(b.const(b.floats((n,)), "gemm_c"))
    alpha = b.choice([None, 1.0, 0.5, 2.0])
    beta = b.choice([None, 1.0, 0.5, 0.0])
    b.op("Gemm", inputs, (m, n), transA=trans_a or None, transB=trans_b or None, alpha=alpha, beta=beta)
    if b.rarely():
        block_batchnorm(b, b.pool[-1])
    return True


def block_dense_stack(b: Builder) -> bool:
    """Dense layers in a row (MatMul or Gemm, zero-preserving activations between): prune-zero-channels'
    ground, with the first layer's weight often holding zero columns."""
    x = b.pick(lambda v: v.rank >= 1 and v.shape[-1] <= 32)
    if x is None:
        return False
    for layer in range(b.integer(2, 3)):
        k, n = x.shape[-1], b.integer(2, 6)
        use_gemm = x.rank == 2 and b.flag()
        trans_b = use_gemm and b.flag()
        weight = b.floats((k, n), "normal", 1 / math.sqrt(k))
        if layer == 0 and not b.rarely():
            weight[:, b.rng.choice(n, b.integer(1, n - 1), replace=False)] = 0
        inputs = [x.name, b.initializer(weight.T.copy() if trans_b else weight, "w")]
        if use_gemm and b.flag():
            c = b.floats(b.choice([(n,), (1, n), (x.shape[0], n)]), "normal")
            if b.flag():
                c[..., weight.any(axis=0) == 0] = 0  # zero where the weight is, so the channel stays zero
            inputs.append(b.const(c, "gemm_c"))
        out = x.shape[:-1] + (n,)
        x = b.op("Gemm" if use_gemm else "MatMul", inputs, out, transB=1 if trans_b else None, alpha=b.choice([None, 0.5]) if use_gemm else None)
        if layer < 2:
            activation = b.choice(["Relu", "LeakyRelu", "Tanh", "Identity", "Clip", "Sigmoid", "none"])
            if activation == "Clip":
                x = Value(b.clip(x.name, b.choice([0.0, -1.0, 0.5]), 6.0), x.shape)
                b.pool.append(x)
            elif activation != "none":
                x = b.op(activation, [x.name], x.shape)
    return True


def block_batchnorm(b: Builder, x: Value | None = None) -> bool:
    x = x or b.pick(lambda v: v.rank >= 2)
    if x is None:
        return False
    c = x.shape[1]
    scale = b.floats((c,), "positive") * b.rng.choice([-1.0, 1.0], c).astype(np.float32)
    bias, mean = b.floats((c,)), b.floats((c,))
    var = b.rng.uniform(0.1, 2.0, c).astype(np.float32)
    inputs = [b.const(a, n) for a, n in ((scale, "bn_scale"), (bias, "bn_bias"), (mean, "bn_mean"), (var, "bn_var"))]
    b.op("BatchNormalization", [x.name, *inputs], x.shape, epsilon=b.choice([None, 1e-3, 1e-5]))
    return True


def _pad_input(b: Builder, x: Value) -> Value:
    """Pad before a Conv or pool: zero spatial padding (foldable) or a variant that must not fold."""
    rank = x.rank
    kind = b.choice(["zero", "zero", "value", "channels", "negative", "reflect", "axes"])
    begin, end = [0] * rank, [0] * rank
    for axis in range(2, rank):
        begin[axis], end[axis] = b.integer(0, 2), b.integer(0, 2)
    value = None
    mode = None
    if kind == "value":
        value = b.choice([0.5, -1.0])
    elif kind == "channels":
        begin[1] = b.integer(0, 1)
        end[1] = 1
    elif kind == "negative":
        axis = b.integer(2, rank - 1)
        if x.shape[axis] >= 2:
            begin[axis] = -1
    elif kind == "reflect":
        mode = b.choice(["reflect", "edge"])
        for axis in range(2, rank):
            begin[axis] = min(begin[axis], x.shape[axis] - 1)
            end[axis] = min(end[axis], x.shape[axis] - 1)
    shape = tuple(d + p + q for d, p, q in zip(x.shape, begin, end))
    if b.opset < 11:
        return b.op("Pad", [x.name], shape, pads=begin + end, mode=mode, value=value)
    inputs = [x.name]
    if kind == "axes" and b.opset >= 18:
        axes = list(range(2, rank))
        pads = [begin[a] for a in axes] + [end[a] for a in axes]
        inputs += [b.ints(pads), "", b.ints([a - rank for a in axes] if b.flag() else axes)]
    else:
        inputs.append(b.ints(begin + end))
        if value is not None or b.flag():
            inputs.append(b.scalar_exact(value if value is not None else 0.0))
    return b.op("Pad", inputs, shape, mode=mode)


def block_conv(b: Builder) -> bool:
    spatial = b.choice([2, 2, 1])
    x = b.ensure_rank(2 + spatial, lambda v: v.shape[1] <= 16 and all(d <= 16 for d in v.shape[2:]))
    if x is None:
        return False
    if b.flag():
        x = _pad_input(b, x)
    if b.rarely():
        return _pool(b, x)
    transpose = b.rarely()
    channels, sizes = x.shape[1], x.shape[2:]
    group = b.choice(_divisors(channels)) if b.flag() else 1
    per_group = b.integer(1, 3) if not (group == channels and b.flag()) else 1
    out_channels = group * per_group
    kernel = tuple(b.integer(1, min(3, s + 2)) for s in sizes)
    strides = tuple(b.choice([1, 1, 2]) for _ in sizes)
    dilations = tuple(b.choice([1, 1, 2]) for _ in sizes) if b.rarely() else (1,) * spatial
    pads = [b.integer(0, 2) if b.flag() else 0 for _ in range(2 * spatial)]
    auto_pad = b.choice(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]) if not transpose else "NOTSET"
    attrs: dict = {"group": group if group > 1 or b.flag() else None, "kernel_shape": list(kernel) if b.flag() else None,
                   "strides": list(strides) if strides != (1,) * spatial or b.flag() else None,
                   "dilations": list(dilations) if dilations != (1,) * spatial else None}
    if transpose:
        output_padding = [b.integer(0, s - 1) if s > 1 and b.rarely() else 0 for s in strides]
        out = tuple(s * (i - 1) + op + (k - 1) * d + 1 - pads[j] - pads[j + spatial]
                    for j, (i, k, s, d, op) in enumerate(zip(sizes, kernel, strides, dilations, output_padding)))
        if any(o < 1 for o in out):
            pads = [0] * (2 * spatial)
            out = tuple(s * (i - 1) + op + (k - 1) * d + 1 for i, k, s, d, op in zip(sizes, kernel, strides, dilations, output_padding))
        attrs["pads"] = pads if any(pads) else None
        attrs["output_padding"] = output_padding if any(output_padding) else None
        weight_shape = (channels, per_group) + kernel
        fan_in = channels // group * int(np.prod(kernel))
    else:
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):  # onnxruntime has no dilated SAME
            dilations = (1,) * spatial
            attrs["dilations"] = None
            out = tuple(math.ceil(i / s) for i, s in zip(sizes, strides))
        else:
            if auto_pad == "VALID":
                pads = [0] * (2 * spatial)
            out = tuple(_conv_out(i, k, s, d, pads[j], pads[j + spatial]) for j, (i, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations)))
            if any(o < 1 for o in out):
                kernel = (1,) * spatial
                attrs["kernel_shape"] = None
                out = tuple(_conv_out(i, 1, s, 1, pads[j], pads[j + spatial]) for j, (i, s) in enumerate(zip(sizes, strides)))
                attrs["dilations"] = None
                dilations = (1,) * spatial
            attrs["pads"] = pads if any(pads) or (auto_pad == "NOTSET" and b.rarely()) else None
        attrs["auto_pad"] = auto_pad if auto_pad != "NOTSET" or b.rarely() else None
        weight_shape = (out_channels, channels // group) + kernel
        fan_in = channels // group * int(np.prod(kernel))
    weight = b.weight(weight_shape, fan_in, channel_axis=1 if transpose else 0)
    inputs = [x.name, weight]
    if b.rarely() and b.pick(lambda v: v.shape == weight_shape) is not None:  # a weight that is not a constant
        inputs[1] = b.pick(lambda v: v.shape == weight_shape).name
    if b.flag():
        inputs.append(b.const(b.floats((out_channels,), b.choice(["normal", "zeros"]), 0.5), "conv_b"))
    shape = (x.shape[0], out_channels) + out
    conv = b.op("ConvTranspose" if transpose else "Conv", inputs, shape, **attrs)
    after = b.choice(["none", "batchnorm", "mul", "add", "mul+add", "relu"])
    if after == "batchnorm":
        block_batchnorm(b, conv)
    elif after in ("mul", "add", "mul+add"):
        value = conv
        for op in after.split("+"):
            per_channel = [(out_channels,) + (1,) * spatial, (1, out_channels) + (1,) * spatial, (1,), ()]
            other = [(1,) * (1 + spatial) + (shape[-1],), (shape[0], out_channels) + out]
            const_shape = b.choice(per_channel + other if b.rarely() else per_channel)
            kind = "divisor" if op == "mul" else "normal"
            c = b.const(b.floats(const_shape, kind), op)
            value = b.op(op.capitalize(), [value.name, c] if b.flag() else [c, value.name], _broadcast(shape, const_shape))
    elif after == "relu":
        b.op("Relu", [conv.name], shape)
        if b.flag():  # a second Conv reading it (prune-zero-channels drops the first's zero channels from it)
            block_conv(b)
    return True


def _pool(b: Builder, x: Value) -> bool:
    op = b.choice(["AveragePool", "MaxPool"])
    sizes = x.shape[2:]
    kernel = [b.integer(1, min(3, s)) for s in sizes]
    pads = [b.integer(0, k - 1) if b.flag() else 0 for k in kernel * 2]
    ceil_mode = 1 if b.rarely() else None
    out = []
    for j, (i, k) in enumerate(zip(sizes, kernel)):
        span = i + pads[j] + pads[j + len(sizes)] - k
        out.append((math.ceil(span / 1) if ceil_mode else span // 1) + 1)
    attrs = {"kernel_shape": kernel, "pads": pads if any(pads) else None, "ceil_mode": ceil_mode}
    if op == "AveragePool":
        attrs["count_include_pad"] = b.choice([None, 0, 1])
    b.op(op, [x.name], (x.shape[0], x.shape[1]) + tuple(out), **attrs)
    return True


def block_reshape_chain(b: Builder) -> bool:
    """Two to four data-movement ops in a row on one value (fuse-reshape-chains, fuse-transposes)."""
    for _ in range(b.integer(2, 4)):
        x = b.pool[-1]
        kind = b.choice(["reshape", "unsqueeze", "squeeze", "flatten", "transpose", "slice", "cast"])
        if kind == "slice":
            block_slice(b, x)
        elif kind == "cast":
            middle = b.node("Cast", [x.name], to=b.choice([TensorProto.DOUBLE, TensorProto.FLOAT]))[0]
            b.root.from_double.add(b.op("Cast", [middle], x.shape, to=TensorProto.FLOAT).name)
        elif not block_reshape(b, x, kind):
            block_reshape(b, x, "reshape")
    return True


def block_reshape(b: Builder, x: Value | None = None, kind: str | None = None) -> bool:
    x = x or b.pick()
    kind = kind or b.choice(["reshape", "flatten", "squeeze", "unsqueeze", "transpose", "expand"])
    if kind == "reshape":
        rank = b.integer(1, 4)
        target = x.shape if b.rarely() else b.factor(x.size, rank)
        spec = list(target)
        for i, d in enumerate(target):
            if i < x.rank and x.shape[i] == d and b.rarely():
                spec[i] = 0
        if spec and b.flag():
            spec[b.integer(0, len(spec) - 1)] = -1
        allowzero = 0 if b.opset >= 14 and 0 not in spec and b.rarely() else None
        b.op("Reshape", [x.name, b.ints(spec)], target, allowzero=allowzero)
    elif kind == "flatten":
        if x.rank == 0:
            return False
        axis = b.integer(-x.rank, x.rank) if x.rank else 0
        split = axis + x.rank if axis < 0 else axis
        shape = (int(np.prod(x.shape[:split], dtype=np.int64)), int(np.prod(x.shape[split:], dtype=np.int64)))
        b.op("Flatten", [x.name], shape, axis=axis if axis != 1 or b.flag() else None)
    elif kind == "squeeze":
        ones = [i for i, d in enumerate(x.shape) if d == 1]
        if not ones:
            return False
        if b.rarely() and b.opset >= 11:
            b.pool.append(Value(b.squeeze(x.name, None), tuple(d for d in x.shape if d != 1)))
            return True
        axes = sorted(set(b.draw(st.lists(st.sampled_from(ones), min_size=1, max_size=len(ones)))))
        axes_written = [a - x.rank if b.flag() else a for a in axes]
        b.pool.append(Value(b.squeeze(x.name, axes_written), tuple(d for i, d in enumerate(x.shape) if i not in axes)))
    elif kind == "unsqueeze":
        if x.rank >= 5:
            return False
        count = b.integer(1, 2)
        out_rank = x.rank + count
        axes = sorted(set(b.draw(st.lists(st.integers(0, out_rank - 1), min_size=count, max_size=count, unique=True))))
        shape, rest = [], iter(x.shape)
        for i in range(out_rank):
            shape.append(1 if i in axes else next(rest))
        axes_written = [a - out_rank if b.flag() else a for a in axes]
        b.pool.append(Value(b.unsqueeze(x.name, axes_written), tuple(shape)))
    elif kind == "transpose":
        if x.rank == 0 or x.rank < 2 and not b.rarely():
            return False
        perm = list(b.draw(st.permutations(list(range(x.rank)))))
        if b.rarely():
            b.op("Transpose", [x.name], tuple(reversed(x.shape)))
        else:
            b.op("Transpose", [x.name], tuple(x.shape[p] for p in perm), perm=perm)
    else:
        target = x.shape if b.flag() else b.broadcastable_shape(x.shape)
        if b.flag() and x.rank < 4:
            target = (b.integer(1, 3),) + tuple(x.shape)
        out = _broadcast(x.shape, target)
        if out is None or int(np.prod(out)) > MAX_ELEMENTS:
            return False
        b.op("Expand", [x.name, b.ints(target)], out)
    return True


def block_concat(b: Builder) -> bool:
    x = b.pick(lambda v: v.rank >= 1)
    if x is None:
        return False
    axis = b.integer(0, x.rank - 1)
    parts, shapes = [x.name], [x.shape]
    for _ in range(b.integer(0, 2)):
        kind = b.choice(["same", "value", "const", "unary"])
        if kind == "same":
            parts.append(x.name)
            shapes.append(x.shape)
            continue
        if kind == "value":
            y = b.pick(lambda v: v.rank == x.rank and all(d == e for i, (d, e) in enumerate(zip(v.shape, x.shape)) if i != axis))
            if y is not None:
                parts.append(y.name)
                shapes.append(y.shape)
                continue
        if kind == "unary":
            parts.append(b.node(b.choice(["Relu", "Neg", "Tanh"]), [x.name])[0])
            shapes.append(x.shape)
            continue
        shape = list(x.shape)
        shape[axis] = b.integer(1, 3)
        parts.append(b.const(b.floats(tuple(shape))))
        shapes.append(tuple(shape))
    out = list(x.shape)
    out[axis] = sum(s[axis] for s in shapes)
    if int(np.prod(out)) > MAX_ELEMENTS:
        return False
    b.op("Concat", parts, tuple(out), axis=axis - x.rank if b.flag() else axis)
    return True


def block_split(b: Builder) -> bool:
    x = b.pick(lambda v: v.rank >= 1 and max(v.shape) >= 2)
    if x is None:
        return False
    axis = b.choice([i for i, d in enumerate(x.shape) if d >= 2])
    dim = x.shape[axis]
    count = b.integer(1, min(3, dim))
    equal = dim % count == 0 and b.flag()
    if equal:
        sizes = [dim // count] * count
    else:
        cuts = sorted(b.draw(st.lists(st.integers(1, dim - 1), min_size=count - 1, max_size=count - 1, unique=True))) if count > 1 else []
        sizes = [e - s for s, e in zip([0, *cuts], [*cuts, dim])]
    written_axis = axis - x.rank if b.flag() else axis
    if b.opset < 13:
        outputs = b.node("Split", [x.name], count, axis=written_axis, split=None if equal else sizes)
    elif b.opset < 18 or not equal:
        outputs = b.node("Split", [x.name] + ([] if equal and b.flag() else [b.ints(sizes)]), count, axis=written_axis)
    else:
        if b.flag():
            outputs = b.node("Split", [x.name], count, axis=written_axis, num_outputs=count)
        else:
            outputs = b.node("Split", [x.name, b.ints(sizes)], count, axis=written_axis)
    for name, size in zip(outputs, sizes):
        shape = list(x.shape)
        shape[axis] = size
        b.pool.append(Value(name, tuple(shape)))
    return True


def _draw_slice_axis(b: Builder, dim: int) -> tuple[int, int, int]:
    for _ in range(4):
        step = b.choice([1, 1, 1, 2, -1, -2])
        bounds = [INT64_MAX, INT64_MIN, -dim - 2, dim + 2]
        start = b.choice(list(range(-dim, dim)) + bounds) if b.flag() else (0 if step > 0 else -1)
        end = b.choice(list(range(-dim, dim + 1)) + bounds) if b.flag() else (INT64_MAX if step > 0 else INT64_MIN)
        if _slice_length(dim, start, end, step) >= 1:
            return start, end, step
    return 0, dim, 1


def block_slice(b: Builder, x: Value | None = None) -> bool:
    x = x or b.pick(lambda v: v.rank >= 1)
    if x is None or x.rank == 0:
        return False
    for _ in range(1 if not b.rarely() else 2):  # sometimes a second Slice on the first's output
        count = b.integer(1, x.rank)
        axes = list(b.draw(st.permutations(list(range(x.rank)))))[:count]
        starts, ends, steps = [], [], []
        shape = list(x.shape)
        for axis in axes:
            start, end, step = _draw_slice_axis(b, x.shape[axis])
            starts.append(start)
            ends.append(end)
            steps.append(step)
            shape[axis] = _slice_length(x.shape[axis], start, end, step)
        inputs = [x.name, b.ints(starts), b.ints(ends)]
        with_steps = any(s != 1 for s in steps) or b.rarely()
        if with_steps or axes != list(range(count)) or b.flag():
            inputs.append(b.ints([a - x.rank if b.flag() else a for a in axes]))
        if with_steps:
            inputs.append(b.ints(steps))
        x = b.op("Slice", inputs, tuple(shape))
    return True


def block_constant_subgraph(b: Builder) -> bool:
    """A constant computed by foldable ops, combined with a value (or a constant-only graph output)."""
    x = b.pick()
    target = b.broadcastable_shape(x.shape, allow_growth=False)
    kind = b.choice(["add", "transpose", "reshape", "sqrt", "cast", "unsqueeze", "constant-of-shape", "range"])
    if kind == "transpose" and len(target) >= 2:
        base = b.const(b.floats(tuple(reversed(target))))
        c = b.node("Transpose", [base])[0]
    elif kind == "reshape" and target:
        base = b.const(b.floats((int(np.prod(target)),)))
        c = b.node("Reshape", [base, b.ints(target)])[0]
    elif kind == "sqrt":
        c = b.node("Sqrt", [b.const(b.floats(target, "positive"))])[0]
    elif kind == "cast":
        c = b.node("Cast", [b.node("Cast", [b.const(b.floats(target))], to=TensorProto.DOUBLE)[0]], to=TensorProto.FLOAT)[0]
        b.root.from_double.add(c)
    elif kind == "unsqueeze" and target:
        base = b.const(b.floats(target[1:]))
        c = b.unsqueeze(base, [0])
        target = (1,) + target[1:]
    elif kind == "constant-of-shape":
        fill = b.choice([0.0, 1.0, 0.5])
        c = b.node("ConstantOfShape", [b.ints(target)], value=numpy_helper.from_array(np.array([fill], np.float32), "fill"))[0]
    elif kind == "range" and len(target) == 1:
        c = b.node("Range", [b.scalar_exact(0.0), b.scalar_exact(float(target[0]) * 0.25), b.scalar_exact(0.25)])[0]
    else:
        c = b.node("Add", [b.const(b.floats(target)), b.const(b.floats(target))])[0]
    if b.flag():
        c = b.node(b.choice(["Mul", "Add", "Sub"]), [c, b.const(b.floats(target))])[0]
    op = b.choice(["Add", "Mul", "Sub"])
    if b.rarely():  # the constant is a graph output itself
        b.pool.append(Value(c, target))
        return True
    b.op(op, [x.name, c] if b.flag() else [c, x.name], _broadcast(x.shape, target))
    return True


def block_shape_subgraph(b: Builder) -> bool:
    x = b.pick(lambda v: v.rank >= 1)
    if x is None:
        return False
    kind = b.choice(["gather-concat", "slice-concat", "shape-start-end", "zeros-like", "expand-like", "size", "product", "reversed", "gather-many"])
    if kind == "zeros-like":
        shape = b.node("Shape", [x.name])[0]
        fill = b.choice([0.0, 1.0])
        like = b.node("ConstantOfShape", [shape], value=numpy_helper.from_array(np.array([fill], np.float32), "fill"))[0]
        b.op("Add" if fill == 0.0 else "Mul", [x.name, like], x.shape)
        return True
    if kind == "expand-like":
        shape = b.node("Shape", [x.name])[0]
        expanded = b.node("Expand", [b.const(b.floats((1,) if b.flag() else ())), shape])[0]
        b.op("Add", [x.name, expanded], x.shape)
        return True
    if kind == "size":
        size = b.node("Cast", [b.node("Size", [x.name])[0]], to=TensorProto.FLOAT)[0]
        b.op("Div", [x.name, size], x.shape)
        return True
    if x.rank < 2:
        return False
    if kind in ("reversed", "gather-many"):
        # Reshape x to its dims reversed (a Slice of Shape with step -1) or permuted (Gather of several dims)
        shape = b.node("Shape", [x.name])[0]
        if kind == "reversed":
            spec = b.node("Slice", [shape, b.ints([-1]), b.ints([b.choice([INT64_MIN, -x.rank - 1])]), b.ints([0]), b.ints([-1])])[0]
            target = tuple(reversed(x.shape))
        else:
            order = list(b.draw(st.permutations(list(range(x.rank)))))
            spec = b.node("Gather", [shape, b.ints([i - x.rank if b.flag() else i for i in order])], axis=0)[0]
            target = tuple(x.shape[i] for i in order)
        b.op("Reshape", [x.name, spec], target)
        return True
    keep = b.integer(1, x.rank - 1)
    shape = b.node("Shape", [x.name])[0]
    if kind == "product":
        first = b.node("Gather", [shape, b.const(np.array(0, np.int64), "i")], axis=0)[0]
        second = b.node("Gather", [shape, b.const(np.array(1 - x.rank if b.flag() else 1, np.int64), "i")], axis=0)[0]
        product = b.unsqueeze(b.node("Mul", [first, second])[0], [0])
        spec = b.node("Concat", [product, b.ints([-1])], axis=0)[0]
        merged = x.shape[0] * x.shape[1]
        target = (merged, x.size // merged)
    else:
        if kind == "gather-concat":
            dims = []
            for i in range(keep):
                if b.flag():
                    dims.append(b.unsqueeze(b.node("Gather", [shape, b.const(np.array(i - x.rank if b.flag() else i, np.int64), "i")], axis=0)[0], [0]))
                else:
                    dims.append(b.node("Gather", [shape, b.ints([i])], axis=0)[0])
        elif kind == "shape-start-end" and b.opset >= 15:
            dims = [b.node("Shape", [x.name], start=0, end=keep - x.rank if b.flag() else keep)[0]]
        else:
            dims = [b.node("Slice", [shape, b.ints([0]), b.ints([keep])])[0]]
        spec = b.node("Concat", [*dims, b.ints([-1])], axis=0)[0]
        target = tuple(x.shape[:keep]) + (int(np.prod(x.shape[keep:])),)
    source = x.name if b.flag() else b.node(b.choice(["Relu", "Neg"]), [x.name])[0]
    b.op("Reshape", [source, spec], target)
    return True


def _layer_norm_core(b: Builder, x: Value, axes: list[int]) -> tuple[str, str]:
    """ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div over `axes`; returns (normalized, centered)."""
    mean = b.reduce("ReduceMean", x.name, axes)
    centered = b.node("Sub", [x.name, mean])[0]
    if b.flag():
        square = b.node("Pow", [centered, b.scalar(2.0, x.rank) if b.flag() else b.scalar_exact(2.0)])[0]
    else:
        square = b.node("Mul", [centered, centered])[0]
    var = b.reduce("ReduceMean", square, axes)
    eps = b.choice([1e-5, 1e-6, 1e-12])
    std = b.node("Sqrt", [b.node("Add", [var, b.scalar(eps, x.rank, grow=True)])[0]])[0]
    if b.flag():
        normalized = b.node("Div", [centered, std])[0]
    else:
        normalized = b.node("Mul", [centered, b.node("Reciprocal", [std])[0]])[0]
    return normalized, centered


def block_layer_norm(b: Builder) -> bool:
    x = b.pick(lambda v: v.rank >= 1 and v.shape[-1] >= 2)
    if x is None:
        return False
    if x not in b.root.inputs:
        # An intermediate value may hold equal values along the normalized axes (all-ones weights, a
        # broadcast); LayerNorm of such rows divides rounding noise by sqrt(eps), noise that the fused
        # kernel and the decomposition do not share. A random full-shape term keeps the rows apart.
        x = b.op("Add", [x.name, b.const(b.floats(x.shape), "spread")], x.shape)
    if b.flag():  # a residual Add first (SkipLayerNormalization at O3)
        y = b.pick(lambda v: v.shape == x.shape and v.name != x.name)
        skip = y.name if y is not None else b.const(b.floats(x.shape))
        x = b.op("Add", [x.name, skip] if b.flag() else [skip, x.name], x.shape)
    count = 1 if x.rank == 1 or not b.rarely() else 2
    variant = b.choice(["trailing", "trailing", "positive-axes", "leading-axis"])
    if variant == "leading-axis" and x.rank >= 2:
        axes = [0]
    elif variant == "positive-axes":
        axes = list(range(x.rank - count, x.rank))
    else:
        axes = list(range(-count, 0))
    normalized, centered = _layer_norm_core(b, x, axes)
    normalized_shape = tuple(x.shape[a] for a in axes)
    value = normalized
    leading = axes == [0]
    if b.flag():
        if leading:
            gamma_shape = (x.shape[0],) + (1,) * (x.rank - 1)
        else:
            gamma_shape = normalized_shape if b.flag() else (1,) * (count - 1) + normalized_shape[-1:]
            if b.rarely() and b.rarely() and x.rank < 4:  # more dims than x: broadcasts the result up
                gamma_shape = (1,) * (x.rank + 1 - len(gamma_shape)) + gamma_shape
        b.scalar_shapes.append(gamma_shape)
        value = b.node("Mul", [value, b.const(b.floats(gamma_shape, "positive"), "gamma")])[0]
    if b.flag():
        value = b.node("Add", [value, b.const(b.floats(x.shape[-1:] if leading else normalized_shape), "beta")])[0]
    b.pool.append(Value(value, b.grown(x.shape)))
    if b.rarely():  # the centered value is read elsewhere too (a graph output)
        b.pool.append(Value(centered, x.shape))
    if b.opset >= 17 and b.rarely():  # a native LayerNormalization too
        axis = -1
        b.op("LayerNormalization", [x.name, b.const(b.floats(x.shape[-1:], "positive"), "gamma"),
                                    b.const(b.floats(x.shape[-1:]), "beta")], x.shape, axis=axis, epsilon=1e-5)
    return True


def block_rms_norm(b: Builder) -> bool:
    x = b.pick(lambda v: v.rank >= 1 and v.shape[-1] >= 2)
    if x is None:
        return False
    source = x.name
    cast = b.rarely()
    if cast:
        source = b.node("Cast", [source], to=TensorProto.FLOAT)[0]
    square = b.node("Pow", [source, b.scalar(2.0, x.rank)])[0] if b.flag() else b.node("Mul", [source, source])[0]
    mean = b.reduce("ReduceMean", square, [-1])
    std = b.node("Sqrt", [b.node("Add", [mean, b.scalar(b.choice([1e-5, 1e-6]), x.rank, grow=True)])[0]])[0]
    form = b.choice(["div", "reciprocal", "one-over"])
    if form == "div":
        normalized = b.node("Div", [source, std])[0]
    elif form == "reciprocal":
        normalized = b.node("Mul", [source, b.node("Reciprocal", [std])[0]])[0]
    else:
        normalized = b.node("Mul", [source, b.node("Div", [b.scalar(1.0, x.rank, grow=True), std])[0]])[0]
    if cast:
        normalized = b.node("Cast", [normalized], to=TensorProto.FLOAT)[0]
    if b.flag():
        normalized = b.node("Mul", [b.const(b.floats(x.shape[-1:], "positive"), "gamma"), normalized])[0]
    b.pool.append(Value(normalized, b.grown(x.shape)))
    return True


def block_gelu(b: Builder) -> bool:
    x = b.pick()
    if b.rarely():  # a bias Add first (BiasGelu at O3)
        bias = b.const(b.floats(x.shape[-1:] if x.rank else ()), "bias")
        x = b.op("Add", [x.name, bias], x.shape)
    form = b.choice(["erf", "erf", "tanh"])
    wrong = b.rarely() and b.rarely()
    r = x.rank
    if form == "erf":
        if b.flag():
            scaled = b.node("Div", [x.name, b.scalar(2.0 if wrong else 1.4142135381698608, r)])[0]
        else:
            scaled = b.node("Mul", [x.name, b.scalar(0.7071067690849304, r)])[0]
        inner = b.node("Add", [b.node("Erf", [scaled])[0], b.scalar(1.0, r)])[0]
    else:
        if b.flag():
            cube = b.node("Pow", [x.name, b.scalar(3.0, r)])[0]
        else:
            cube = b.node("Mul", [x.name, b.node("Mul", [x.name, x.name])[0]])[0]
        poly = b.node("Add", [x.name, b.node("Mul", [cube, b.scalar(0.044715 if not wrong else 0.1, r)])[0]])[0]
        inner = b.node("Add", [b.node("Tanh", [b.node("Mul", [poly, b.scalar(0.7978845834732056, r)])[0]])[0], b.scalar(1.0, r)])[0]
    order = b.choice(["half-last", "half-first", "half-inner"])
    if order == "half-last":
        out = b.node("Mul", [b.node("Mul", [x.name, inner])[0], b.scalar(0.5, r, grow=True)])[0]
    elif order == "half-first":
        out = b.node("Mul", [b.node("Mul", [x.name, b.scalar(0.5, r, grow=True)])[0], inner])[0]
    else:
        out = b.node("Mul", [x.name, b.node("Mul", [inner, b.scalar(0.5, r, grow=True)])[0]])[0]
    b.pool.append(Value(out, b.grown(x.shape)))
    if b.opset >= 20 and b.rarely():
        b.op("Gelu", [x.name], x.shape, approximate=b.choice([None, "tanh"]))
    return True


def block_hard_activation(b: Builder) -> bool:
    x = b.pick()
    r = x.rank
    form = b.choice(["clip-affine", "relu6-div", "relu6-mul", "min-max", "hardswish", "hardswish-op"])
    if form == "clip-affine":
        affine = b.node("Add", [b.node("Mul", [x.name, b.scalar(0.2, r, grow=True)])[0], b.scalar(0.5, r, grow=True)])[0]
        b.pool.append(Value(b.clip(affine, 0.0, b.choice([1.0, 1.0, 2.0])), b.grown(x.shape)))
        return True
    if form == "hardswish-op":
        if b.opset < 14:
            return False
        b.op("Mul", [x.name, b.node("HardSigmoid", [x.name], alpha=1 / 6, beta=0.5)[0]], x.shape)
        return True
    shifted = b.node("Add", [x.name, b.scalar(3.0, r)])[0]
    if form == "min-max":
        clipped = b.node("Min", [b.node("Max", [shifted, b.scalar(0.0, r)])[0], b.scalar(6.0, r)])[0]
    else:
        clipped = b.clip(shifted, 0.0, 6.0)
    if form in ("relu6-div", "min-max") or form == "hardswish" and b.flag():
        scaled = b.node("Div", [clipped, b.scalar(6.0, r, grow=True)])[0]
    else:
        scaled = b.node("Mul", [clipped, b.scalar(1 / 6, r, grow=True)])[0]
    if form == "hardswish":
        scaled = b.node("Mul", [x.name, scaled] if b.flag() else [scaled, x.name])[0]
    b.pool.append(Value(scaled, b.grown(x.shape)))
    return True


def block_attention(b: Builder) -> bool:
    """A BERT-style self-attention block on a [B, S, H*D] value (made by Reshape when none exists)."""
    x = b.ensure_rank(3, lambda v: v.shape[2] <= 16 and v.shape[1] <= 8)
    if x is None:
        return False
    batch, seq, hidden_in = x.shape
    heads = b.integer(1, 2)
    head_size = b.integer(1, 4)
    hidden = heads * head_size
    packed = b.rarely()

    def project() -> str:
        projected = b.node("MatMul", [x.name, b.weight((hidden_in, hidden), hidden_in)])[0]
        if b.flag():
            projected = b.node("Add", [projected, b.const(b.floats((hidden,), "normal", 0.1), "bias")])[0]
        return projected

    if packed:
        qkv = b.node("MatMul", [x.name, b.weight((hidden_in, 3 * hidden), hidden_in)])[0]
        sizes = b.ints([hidden] * 3)
        q, k, v = b.node("Split", [qkv, sizes] if b.opset >= 13 else [qkv], 3, axis=2, split=[hidden] * 3 if b.opset < 13 else None)
    else:
        q, k, v = project(), project(), project()

    def split_heads(value: str, perm: list[int]) -> str:
        split = b.node("Reshape", [value, b.ints([batch if b.flag() else 0, seq if b.flag() else 0, heads, head_size])])[0]
        return b.node("Transpose", [split], perm=perm)[0]

    qh = split_heads(q, [0, 2, 1, 3])
    if b.flag():
        kt = split_heads(k, [0, 2, 3, 1])
    else:
        kt = b.node("Transpose", [split_heads(k, [0, 2, 1, 3])], perm=[0, 1, 3, 2])[0]
    vh = split_heads(v, [0, 2, 1, 3])
    scale = 1 / math.sqrt(head_size)
    where = b.choice(["scores-div", "scores-mul", "q", "none"])
    if where == "q":
        qh = b.node("Mul", [qh, b.scalar_exact(scale)])[0]
    scores = b.node("MatMul", [qh, kt])[0]
    if where == "scores-div":
        scores = b.node("Div", [scores, b.scalar_exact(math.sqrt(head_size))])[0]
    elif where == "scores-mul":
        scores = b.node("Mul", [scores, b.scalar_exact(scale)])[0]
    if b.flag():
        mask_shape = b.choice([(1, 1, 1, seq), (batch, 1, seq, seq), (1, heads, seq, seq), (1, seq)])
        mask = b.const(np.where(b.rng.uniform(size=mask_shape) < 0.2, -1e4, 0.0).astype(np.float32), "mask")
        scores = b.node("Add", [scores, mask] if b.flag() else [mask, scores])[0]
    probs = b.node("Softmax", [scores], axis=-1 if b.opset >= 13 and b.flag() else 3)[0]
    context = b.node("MatMul", [probs, vh])[0]
    merged = b.node("Transpose", [context], perm=[0, 2, 1, 3])[0]
    if b.rarely():
        b.op("Reshape", [merged, b.ints([batch * seq, hidden])], (batch * seq, hidden))
    else:
        b.op("Reshape", [merged, b.ints([batch, seq, hidden] if b.flag() else [0, 0, -1])], (batch, seq, hidden))
    return True


def block_duplicate(b: Builder) -> bool:
    """An earlier node emitted again with the same inputs (CSE), its output combined with the original's."""
    candidates = [n for n in b.nodes if n.op_type not in ("Constant", "Split", "If") and len(n.output) == 1 and n.output[0] in {v.name for v in b.pool}]
    if not candidates:
        return False
    node = candidates[-1 - b.integer(0, len(candidates) - 1)]
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.output[0] = b.fresh("dup")
    copy.name = ""
    b.nodes.append(copy)
    shape = next(v.shape for v in b.pool if v.name == node.output[0])
    b.op(b.choice(["Add", "Sub", "Mul"]), [node.output[0], copy.output[0]], shape)
    return True


def block_embedding(b: Builder) -> bool:
    """Token ids (an int64 graph input, values in [0, 100) as the verifier generates them) looking up a
    [100, D] table, as embeddings do; or a Gather of constant indices from a float value."""
    if b.parent is None and not b.root.int_inputs and b.flag():
        ids = Value("ids", (b.integer(1, 2), b.integer(1, 5)))
        b.root.int_inputs.append(ids)
        table = b.initializer(b.floats((100, b.integer(1, 8))), "table")
        d = b.root.initializers[-1].dims[1]
        b.op("Gather", [table, ids.name], ids.shape + (d,))
        return True
    x = b.pick(lambda v: v.rank >= 1)
    if x is None:
        return False
    axis = b.integer(0, x.rank - 1)
    dim = x.shape[axis]
    if b.flag():
        index = b.integer(-dim, dim - 1)
        b.op("Gather", [x.name, b.const(np.array(index, np.int64), "i")], x.shape[:axis] + x.shape[axis + 1:], axis=axis)
    else:
        indices = [b.integer(-dim, dim - 1) for _ in range(b.integer(1, 3))]
        b.op("Gather", [x.name, b.ints(indices)], x.shape[:axis] + (len(indices),) + x.shape[axis + 1:], axis=axis)
    return True


def block_integer_casts(b: Builder) -> bool:
    """A graph input scaled and cast through integer types and back (cast chains: an exact widening
    int32 -> int64 collapses, a narrowing int64 -> int32 stays). Only graph inputs: a float that a rewrite
    moved by an ulp could truncate to another integer."""
    x = b.pick(lambda v: v in b.root.inputs)
    if x is None:
        return False
    scaled = b.node("Mul", [x.name, b.scalar_exact(4.0)])[0]
    chain = b.choice([[TensorProto.INT32, TensorProto.INT64], [TensorProto.INT64, TensorProto.INT32], [TensorProto.INT32], [TensorProto.INT64, TensorProto.INT64]])
    value = scaled
    for to in chain:
        value = b.node("Cast", [value], to=to)[0]
    b.op("Cast", [value], x.shape, to=TensorProto.FLOAT)
    return True


def block_where_reduce(b: Builder) -> bool:
    """Where over a comparison (continuous: x where x > 0, else 0.1 x) or a reduction."""
    x = b.pick()
    if b.flag():
        condition = b.node("Greater", [x.name, b.scalar_exact(0.0)])[0]
        b.op("Where", [condition, x.name, b.node("Mul", [x.name, b.scalar_exact(0.1)])[0]], x.shape)
        return True
    if x.rank == 0:
        return False
    op = b.choice(["ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean"])
    axes = sorted(set(b.draw(st.lists(st.integers(0, x.rank - 1), min_size=1, max_size=x.rank))))
    keepdims = b.choice([None, 0, 1])
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims != 0 else tuple(d for i, d in enumerate(x.shape) if i not in axes)
    written = [a - x.rank if b.flag() else a for a in axes]
    b.pool.append(Value(b.reduce(op, x.name, written, keepdims=keepdims), shape))
    return True


def block_if(b: Builder) -> bool:
    if b.depth >= 1:
        return False
    x = b.pick(lambda v: v.size <= 256 and v.name not in b.root.from_double)
    if x is None:
        return False
    cond_kind = b.choice(["constant", "folded", "data"])
    if cond_kind == "constant":
        cond = b.const(np.array(b.flag()), "cond")
    elif cond_kind == "folded":
        cond = b.node("Greater", [b.const(np.array(b.floats(()))), b.const(np.array(b.floats(())))])[0]
    else:
        cond = b.node("Greater", [b.reduce("ReduceSum", x.name, list(range(x.rank)), keepdims=0) if x.rank else x.name, b.scalar_exact(0.0)])[0]
    branches = []
    for label in ("then", "else"):
        sub = Builder(b.draw, b.opset, b.rng, parent=b)
        sub.pool.append(x)
        for _ in range(b.integer(0, 2)):
            run_block(sub, b.choice(SHAPE_PRESERVING))
        last = sub.pick(lambda v: v.shape == x.shape)
        out = sub.node("Identity", [last.name])[0] if last.name == x.name or b.flag() else last.name
        info = helper.make_tensor_value_info(out, TensorProto.FLOAT, list(x.shape))
        branches.append(helper.make_graph(sub.nodes, b.fresh(label), [], [info]))
    b.op("If", [cond], x.shape, then_branch=branches[0], else_branch=branches[1])
    return True


BLOCKS = [
    block_unary, block_binary, block_matmul, block_gemm, block_dense_stack, block_conv, block_batchnorm, block_reshape, block_reshape_chain, block_concat,
    block_split, block_slice, block_constant_subgraph, block_shape_subgraph, block_layer_norm, block_rms_norm,
    block_gelu, block_hard_activation, block_attention, block_duplicate, block_if, block_embedding, block_integer_casts,
    block_where_reduce,
]
SHAPE_PRESERVING = [block_unary, block_layer_norm, block_gelu, block_hard_activation, block_rms_norm]


def run_block(b: Builder, block) -> bool:
    b.scalar_shapes = []
    return block(b)


def _input_shape(b: Builder) -> tuple[int, ...]:
    kind = b.choice(["image", "matrix", "sequence", "vector", "any"])
    if kind == "image":
        return (b.integer(1, 2), b.integer(1, 4), b.integer(1, 6), b.integer(1, 6))
    if kind == "matrix":
        return (b.integer(1, 6), b.integer(1, 8))
    if kind == "sequence":
        return (b.integer(1, 2), b.integer(1, 5), b.integer(1, 8))
    if kind == "vector":
        return (b.integer(1, 8),)
    return tuple(b.draw(st.lists(st.integers(1, 5), min_size=0, max_size=4)))


@st.composite
def models(draw, opsets=OPSETS, max_blocks: int = 8) -> onnx.ModelProto:
    """A random valid float32 model with static shapes (see the module docstring)."""
    opset = draw(st.sampled_from(list(opsets)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = Builder(draw, opset, rng)
    dynamic = b.rarely()  # the first input's batch dim declared symbolic ("N"), run with 1
    for i in range(b.integer(1, 2)):
        shape = _input_shape(b) if i == 0 or b.flag() else b.pool[0].shape
        if dynamic and i == 0 and shape:
            shape = (1,) + shape[1:]
        value = Value(f"input{i}", shape)
        b.root.inputs.append(value)
        b.pool.append(value)
    for _ in range(b.integer(1, max_blocks)):
        run_block(b, draw(st.sampled_from(BLOCKS)))
    outputs = [b.pool[-1]]
    for _ in range(b.integer(0, 2)):
        extra = b.pick()
        if extra.name not in {o.name for o in outputs}:
            if extra.name in {i.name for i in b.inputs}:  # an input read back out: through an Identity
                extra = b.op("Identity", [extra.name], extra.shape)
            outputs.append(extra)
    if outputs[0].name in {i.name for i in b.inputs}:
        outputs[0] = b.op("Identity", [outputs[0].name], outputs[0].shape)
    if b.rarely() and b.rarely():  # a shape as an output (int64; fold-shapes makes it a constant)
        measured = b.pick()
        b.int_outputs.append(Value(b.node("Shape", [measured.name])[0], (measured.rank,)))
    declared = {v.name: list(v.shape) for v in b.inputs}
    if dynamic and b.inputs[0].shape:
        declared[b.inputs[0].name][0] = "N"
    graph = helper.make_graph(
        b.nodes,
        "fuzz",
        [helper.make_tensor_value_info(v.name, TensorProto.FLOAT, declared[v.name]) for v in b.inputs]
        + [helper.make_tensor_value_info(v.name, TensorProto.INT64, list(v.shape)) for v in b.int_inputs],
        [helper.make_tensor_value_info(v.name, TensorProto.FLOAT, list(v.shape)) for v in outputs]
        + [helper.make_tensor_value_info(v.name, TensorProto.INT64, list(v.shape)) for v in b.int_outputs],
        b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fuzz")
    model.ir_version = ir_version_for(opset)
    return model
