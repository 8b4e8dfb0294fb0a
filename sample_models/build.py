"""Build the small, deterministic sample models used by the tests and the docs.

    python sample_models/build.py [--out DIR]      (default: this file's folder)

Every model is built with `onnx.helper` and numpy from fixed seeds, with the IR version pinned, so two
runs write byte-identical files. Each model mimics a pattern that exporters emit and that the
optimizer should clean up, fold or fuse; see README.md in this folder.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10
OPSET = 17
FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
PRODUCER = "optimize-sample-models"


# --------------------------------------------------------------------------- helpers

class _Builder:
    """Collects nodes and initializers; names nodes deterministically."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: dict[str, int] = {}

    def weight(self, name: str, shape: tuple[int, ...], scale: float = 0.1) -> str:
        array = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        return self.const(name, array)

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int | list[str] = 1, **attrs) -> list[str]:
        index = self._counts.get(op, 0)
        self._counts[op] = index + 1
        name = f"/{op}_{index}" if index else f"/{op}"
        if isinstance(outputs, int):
            outputs = [f"{name}_output_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs

    def op(self, op: str, *inputs: str, **attrs) -> str:
        return self.node(op, list(inputs), 1, **attrs)[0]

    def constant(self, array: np.ndarray) -> str:
        """A Constant node, as exporters emit them."""
        index = self._counts.get("Constant", 0)
        name = f"/Constant_{index}" if index else "/Constant"
        tensor = numpy_helper.from_array(np.asarray(array), f"{name}_value")
        return self.node("Constant", [], 1, value=tensor)[0]


def _model(graph: onnx.GraphProto, opset: int = OPSET, ir_version: int = IR_VERSION) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)], producer_name=PRODUCER, producer_version="1")
    model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------- models

def cnn_bn() -> onnx.ModelProto:
    """Conv+BN+Relu twice, an exporter-style flatten (Shape/Gather/Unsqueeze/Concat/Reshape), Gemm, noise."""
    b = _Builder(1)

    def conv_bn_relu(x: str, cin: int, cout: int, tag: str) -> str:
        w = b.weight(f"{tag}.conv.weight", (cout, cin, 3, 3), 0.2)
        bias = b.weight(f"{tag}.conv.bias", (cout,), 0.1)
        y = b.op("Conv", x, w, bias, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        scale = b.const(f"{tag}.bn.weight", (1.0 + 0.1 * b.rng.standard_normal(cout)).astype(np.float32))
        shift = b.weight(f"{tag}.bn.bias", (cout,), 0.1)
        mean = b.weight(f"{tag}.bn.running_mean", (cout,), 0.1)
        var = b.const(f"{tag}.bn.running_var", (0.5 + b.rng.random(cout)).astype(np.float32))
        y = b.op("BatchNormalization", y, scale, shift, mean, var, epsilon=1e-5)
        return b.op("Relu", y)

    x = conv_bn_relu("image", 3, 8, "block1")
    x = b.op("Identity", x)  # exporter noise
    x = b.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
    one = b.constant(np.array(1.0, dtype=np.float32))
    x = b.op("Mul", x, one)  # exporter noise: multiply by 1
    x = conv_bn_relu(x, 8, 8, "block2")
    x = b.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])  # [batch, 8, 8, 8]
    x = b.node("Dropout", [x], 1)[0]  # inference-mode Dropout: a no-op
    # flatten as torch.onnx emits x.view(x.size(0), -1)
    shape = b.op("Shape", x)
    dim0 = b.op("Gather", shape, b.constant(np.array(0, dtype=np.int64)), axis=0)
    dim0 = b.op("Unsqueeze", dim0, b.constant(np.array([0], dtype=np.int64)))
    target = b.op("Concat", dim0, b.constant(np.array([-1], dtype=np.int64)), axis=0)
    x = b.op("Reshape", x, target)
    x = b.op("Cast", x, to=FLOAT)  # exporter noise: float -> float
    w = b.weight("fc.weight", (10, 8 * 8 * 8), 0.05)
    bias = b.weight("fc.bias", (10,), 0.1)
    x = b.op("Gemm", x, w, bias, alpha=1.0, beta=1.0, transB=1)
    b.node("Identity", [x], ["logits"])  # the exporter's output Identity

    graph = helper.make_graph(
        b.nodes,
        "cnn_bn",
        [helper.make_tensor_value_info("image", FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", FLOAT, ["batch", 10])],
        b.initializers,
    )
    return _model(graph)


def _layer_norm(b: _Builder, x: str, tag: str, dim: int) -> str:
    mean = b.op("ReduceMean", x, axes=[-1], keepdims=1)
    centered = b.op("Sub", x, mean)
    squared = b.op("Pow", centered, b.constant(np.array(2.0, dtype=np.float32)))
    var = b.op("ReduceMean", squared, axes=[-1], keepdims=1)
    var = b.op("Add", var, b.constant(np.array(1e-5, dtype=np.float32)))
    std = b.op("Sqrt", var)
    normed = b.op("Div", centered, std)
    gamma = b.const(f"{tag}.weight", (1.0 + 0.1 * b.rng.standard_normal(dim)).astype(np.float32))
    beta = b.weight(f"{tag}.bias", (dim,), 0.1)
    return b.op("Add", b.op("Mul", normed, gamma), beta)


def _linear(b: _Builder, x: str, tag: str, fan_in: int, fan_out: int) -> str:
    w = b.weight(f"{tag}.weight", (fan_in, fan_out), 1.0 / math.sqrt(fan_in))
    bias = b.weight(f"{tag}.bias", (fan_out,), 0.05)
    return b.op("Add", b.op("MatMul", x, w), bias)


def transformer_block(opset: int = OPSET) -> onnx.ModelProto:
    """One pre-LN encoder block as exporters emit it: decomposed LayerNorm, attention, erf Gelu
    (opset 13 is what tf2onnx and older PyTorch emit; the bundled file is opset 17)."""
    hidden_size, heads, head_dim, ffn = 64, 4, 16, 128
    b = _Builder(2)
    x = "hidden"

    ln = _layer_norm(b, x, "ln1", hidden_size)
    # Q: reshape target built from the input's shape, as exporters do for dynamic axes
    shape = b.op("Shape", ln)
    batch = b.op("Unsqueeze", b.op("Gather", shape, b.constant(np.array(0, dtype=np.int64)), axis=0), b.constant(np.array([0], dtype=np.int64)))
    seq = b.op("Unsqueeze", b.op("Gather", shape, b.constant(np.array(1, dtype=np.int64)), axis=0), b.constant(np.array([0], dtype=np.int64)))
    heads_shape = b.op("Concat", batch, seq, b.constant(np.array([heads, head_dim], dtype=np.int64)), axis=0)
    q = b.op("Reshape", _linear(b, ln, "attn.q", hidden_size, hidden_size), heads_shape)
    # K and V: constant reshape targets with 0 (copy) entries
    k = b.op("Reshape", _linear(b, ln, "attn.k", hidden_size, hidden_size), b.constant(np.array([0, 0, heads, head_dim], dtype=np.int64)))
    v = b.op("Reshape", _linear(b, ln, "attn.v", hidden_size, hidden_size), b.constant(np.array([0, 0, heads, head_dim], dtype=np.int64)))
    q = b.op("Transpose", q, perm=[0, 2, 1, 3])
    k = b.op("Transpose", k, perm=[0, 2, 3, 1])
    v = b.op("Transpose", v, perm=[0, 2, 1, 3])
    scores = b.op("Div", b.op("MatMul", q, k), b.constant(np.array(math.sqrt(head_dim), dtype=np.float32)))
    probs = b.op("Softmax", scores, axis=-1)
    context = b.op("Transpose", b.op("MatMul", probs, v), perm=[0, 2, 1, 3])
    context = b.op("Reshape", context, b.constant(np.array([0, 0, hidden_size], dtype=np.int64)))
    attn = _linear(b, context, "attn.out", hidden_size, hidden_size)
    x = b.op("Add", x, attn)

    ln = _layer_norm(b, x, "ln2", hidden_size)
    h = _linear(b, ln, "mlp.fc1", hidden_size, ffn)
    erf = b.op("Erf", b.op("Div", h, b.constant(np.array(1.4142135, dtype=np.float32))))
    gelu = b.op("Mul", b.op("Mul", h, b.op("Add", erf, b.constant(np.array(1.0, dtype=np.float32)))), b.constant(np.array(0.5, dtype=np.float32)))
    h = _linear(b, gelu, "mlp.fc2", ffn, hidden_size)
    b.node("Add", [x, h], ["out"])

    graph = helper.make_graph(
        b.nodes,
        "transformer_block",
        [helper.make_tensor_value_info("hidden", FLOAT, ["batch", "seq", hidden_size])],
        [helper.make_tensor_value_info("out", FLOAT, ["batch", "seq", hidden_size])],
        b.initializers,
    )
    return _model(graph, opset=opset)


def inception_block() -> onnx.ModelProto:
    """Four parallel branches from one input, concatenated, then a 1x1 conv."""
    b = _Builder(3)

    def conv_relu(x: str, cin: int, cout: int, k: int, tag: str) -> str:
        w = b.weight(f"{tag}.weight", (cout, cin, k, k), 1.0 / math.sqrt(cin * k * k))
        bias = b.weight(f"{tag}.bias", (cout,), 0.05)
        pad = k // 2
        return b.op("Relu", b.op("Conv", x, w, bias, kernel_shape=[k, k], pads=[pad] * 4))

    x = "x"
    b1 = conv_relu(x, 16, 8, 1, "branch1x1")
    b2 = conv_relu(conv_relu(x, 16, 8, 1, "branch3x3_reduce"), 8, 8, 3, "branch3x3")
    b3 = conv_relu(conv_relu(x, 16, 4, 1, "branch5x5_reduce"), 4, 8, 5, "branch5x5")
    pooled = b.op("MaxPool", x, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    b4 = conv_relu(pooled, 16, 8, 1, "branch_pool")
    cat = b.op("Concat", b1, b2, b3, b4, axis=1)
    w = b.weight("project.weight", (16, 32, 1, 1), 1.0 / math.sqrt(32))
    bias = b.weight("project.bias", (16,), 0.05)
    b.node("Conv", [cat, w, bias], ["out"], kernel_shape=[1, 1])

    graph = helper.make_graph(
        b.nodes,
        "inception_block",
        [helper.make_tensor_value_info("x", FLOAT, [1, 16, 16, 16])],
        [helper.make_tensor_value_info("out", FLOAT, [1, 16, 16, 16])],
        b.initializers,
    )
    return _model(graph)


def if_model() -> onnx.ModelProto:
    """An If on a constant condition (inlinable) and an If on a data-dependent condition (must stay)."""
    b = _Builder(4)
    scale = b.weight("scale", (4,), 1.0)  # outer-scope initializer used inside a branch
    cond = b.constant(np.array(True))

    then_graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["then_two"], name="then/Constant", value=numpy_helper.from_array(np.array(2.0, dtype=np.float32), "then_two_value")),
            helper.make_node("Mul", ["x", scale], ["then_scaled"], name="then/Mul"),
            helper.make_node("Add", ["then_scaled", "then_two"], ["then_out"], name="then/Add"),
        ],
        "then_branch",
        [],
        [helper.make_tensor_value_info("then_out", FLOAT, [2, 4])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Sub", ["x", scale], ["else_out"], name="else/Sub")],
        "else_branch",
        [],
        [helper.make_tensor_value_info("else_out", FLOAT, [2, 4])],
    )
    y = b.node("If", [cond], 1, then_branch=then_graph, else_branch=else_graph)[0]
    b.node("Relu", [y], ["y"])

    total = b.op("ReduceSum", "x", keepdims=0)
    positive = b.op("Greater", total, b.constant(np.array(0.0, dtype=np.float32)))
    then_graph = helper.make_graph(
        [helper.make_node("Tanh", ["x"], ["pos_out"], name="pos/Tanh")],
        "positive_branch",
        [],
        [helper.make_tensor_value_info("pos_out", FLOAT, [2, 4])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["neg_out"], name="neg/Neg")],
        "negative_branch",
        [],
        [helper.make_tensor_value_info("neg_out", FLOAT, [2, 4])],
    )
    b.node("If", [positive], ["z"], then_branch=then_graph, else_branch=else_graph)

    graph = helper.make_graph(
        b.nodes,
        "if_model",
        [helper.make_tensor_value_info("x", FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 4]), helper.make_tensor_value_info("z", FLOAT, [2, 4])],
        b.initializers,
    )
    return _model(graph)


def initializer_inputs() -> onnx.ModelProto:
    """IR 3 / opset 9: every initializer is also a graph input, and a constant subgraph hangs off them."""
    b = _Builder(5)
    w1 = b.weight("conv1.weight", (4, 3, 3, 3), 0.3)
    b1 = b.weight("conv1.bias", (4,), 0.1)
    w2_flat = b.weight("conv2.weight_flat", (2 * 4 * 3 * 3,), 0.3)
    w2_shape = b.const("conv2.weight_shape", np.array([2, 4, 3, 3], dtype=np.int64))
    b2 = b.weight("conv2.bias", (2,), 0.1)

    w1_scaled = b.op("Mul", w1, b.constant(np.array(1.0, dtype=np.float32)))
    w2 = b.op("Reshape", w2_flat, w2_shape)
    x = b.op("Relu", b.op("Conv", "data", w1_scaled, b1, kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    b.node("Conv", [x, w2, b2], ["out"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])

    inputs = [helper.make_tensor_value_info("data", FLOAT, [1, 3, 8, 8])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.initializers]
    graph = helper.make_graph(
        b.nodes,
        "initializer_inputs",
        inputs,
        [helper.make_tensor_value_info("out", FLOAT, [1, 2, 8, 8])],
        b.initializers,
    )
    return _model(graph, opset=9, ir_version=3)


def dynamic_dims() -> onnx.ModelProto:
    """Embedding + mask + reshape targets built from Shape(tokens): the batch and seq dims must stay symbolic."""
    vocab, dim, outputs = 100, 16, 4
    b = _Builder(6)
    table = b.weight("embedding.weight", (vocab, dim), 1.0)
    emb = b.op("Gather", table, "tokens", axis=0)  # [batch, seq, 16]
    mask = b.op("Unsqueeze", b.op("Cast", "mask", to=FLOAT), b.constant(np.array([-1], dtype=np.int64)))
    x = b.op("Mul", emb, mask)

    shape = b.op("Shape", "tokens")
    batch = b.op("Unsqueeze", b.op("Gather", shape, b.constant(np.array(0, dtype=np.int64)), axis=0), b.constant(np.array([0], dtype=np.int64)))
    seq = b.op("Unsqueeze", b.op("Gather", shape, b.constant(np.array(1, dtype=np.int64)), axis=0), b.constant(np.array([0], dtype=np.int64)))
    split_target = b.op("Concat", batch, seq, b.constant(np.array([4, dim // 4], dtype=np.int64)), axis=0)
    x = b.op("Reshape", x, split_target)  # [batch, seq, 4, 4]
    x = b.op("ReduceMean", x, axes=[1], keepdims=0)  # [batch, 4, 4]
    flat_target = b.op("Concat", batch, b.constant(np.array([dim], dtype=np.int64)), axis=0)
    x = b.op("Reshape", x, flat_target)  # [batch, 16]
    w = b.weight("head.weight", (dim, outputs), 0.25)
    b.node("MatMul", [x, w], ["pooled"])

    graph = helper.make_graph(
        b.nodes,
        "dynamic_dims",
        [helper.make_tensor_value_info("tokens", INT64, ["batch", "seq"]), helper.make_tensor_value_info("mask", INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("pooled", FLOAT, ["batch", outputs])],
        b.initializers,
    )
    return _model(graph)


MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "cnn_bn.onnx": cnn_bn,
    "transformer_block.onnx": transformer_block,
    "inception_block.onnx": inception_block,
    "if_model.onnx": if_model,
    "initializer_inputs.onnx": initializer_inputs,
    "dynamic_dims.onnx": dynamic_dims,
}


def build(out: str | Path | None = None) -> list[Path]:
    """Write every sample model into `out` (default: this folder); returns the paths written."""
    folder = Path(out) if out is not None else Path(__file__).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, make in MODELS.items():
        path = folder / file_name
        path.write_bytes(make().SerializeToString(deterministic=True))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="output folder (default: this script's folder)")
    args = parser.parse_args(argv)
    for path in build(args.out):
        print(f"{path}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
