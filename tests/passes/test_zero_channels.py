"""prune-zero-channels (TVM style): before, op sequence and weight shapes after, equivalence, and each decline."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from passes.pruning import PruneZeroChannelsPass
from tests.helpers import ops, random_feeds, run, run_pass

RNG = np.random.default_rng(0)


def _weight(*shape: int, zero: tuple[int, ...] = (), axis: int = 0) -> np.ndarray:
    array = RNG.standard_normal(shape).astype(np.float32)
    index = [slice(None)] * len(shape)
    index[axis] = list(zero)
    array[tuple(index)] = 0
    return array


def _info(name: str, shape, dtype=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _model(nodes, inputs, outputs, weights: dict[str, np.ndarray], value_info=(), opset: int = 17) -> onnx.ModelProto:
    initializers = [numpy_helper.from_array(array, name) for name, array in weights.items()]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers, value_info=list(value_info))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def _prune(proto: onnx.ModelProto) -> tuple[ir.Model, PruneZeroChannelsPass]:
    model = ir.serde.deserialize_model(proto)
    return model, run_pass(PruneZeroChannelsPass, model)


def _shape(model: ir.Model, name: str) -> tuple:
    value = ir.convenience.create_value_mapping(model.graph)[name]
    return tuple(value.shape) if value.shape is not None else None


def _assert_equivalent(proto: onnx.ModelProto, after: ir.Model, feeds: dict[str, np.ndarray]) -> None:
    """Same outputs in onnxruntime, and shapes/types consistent under strict shape inference."""
    serialized = ir.serde.serialize_model(after)
    onnx.checker.check_model(serialized)
    onnx.shape_inference.infer_shapes(serialized, check_type=True, strict_mode=True)
    expected = run(ir.serde.deserialize_model(proto), feeds)
    actual = run(after, feeds)
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


def _assert_unchanged(proto: onnx.ModelProto, after: ir.Model) -> None:
    before = ir.serde.serialize_model(ir.serde.deserialize_model(proto)).graph
    now = ir.serde.serialize_model(after).graph
    assert onnx.printer.to_text(now) == onnx.printer.to_text(before)


X = _info("x", [1, 3, 8, 8])


def _conv_chain(chain: list[str] = ("Relu",), w1=None, b1="zeros-match", w2=None, group2: int = 1, outputs=None, extra_nodes=()):
    """x -> Conv(w1, b1) -> [chain...] -> Conv(w2) -> y, with value_info for every intermediate."""
    weights = {"w1": _weight(4, 3, 3, 3, zero=(1, 3)) if w1 is None else w1}
    if isinstance(b1, str):
        bias = RNG.standard_normal(4).astype(np.float32)
        bias[[1, 3]] = 0
        weights["b1"] = bias
    elif b1 is not None:
        weights["b1"] = b1
    weights["w2"] = _weight(5, 4 // group2, 3, 3) if w2 is None else w2
    conv1_inputs = ["x", "w1", "b1"] if "b1" in weights else ["x", "w1"]
    nodes = [helper.make_node("Conv", conv1_inputs, ["c"], pads=[1, 1, 1, 1])]
    previous, value_info = "c", [_info("c", [1, 4, 8, 8])]
    for index, op in enumerate(chain):
        name = f"a{index}"
        nodes.append(helper.make_node(op, [previous], [name]))
        previous = name
        value_info.append(_info(name, [1, 4, 8, 8]))
    nodes.append(helper.make_node("Conv", [previous, "w2"], ["y"], pads=[1, 1, 1, 1], group=group2))
    nodes.extend(extra_nodes)
    outputs = outputs or [_info("y", [1, 5, 8, 8])]
    return _model(nodes, [X], outputs, weights, value_info)


def test_conv_relu_conv():
    proto = _conv_chain()
    model, applied = _prune(proto)
    assert applied.stats == {"layers": 1, "channels": 2}
    assert applied.declined == {}
    assert ops(model) == ["Conv", "Relu", "Conv"]
    initializers = model.graph.initializers
    assert initializers["w1"].const_value.shape == (2, 3, 3, 3)
    assert initializers["b1"].const_value.shape == (2,)
    assert initializers["w2"].const_value.shape == (5, 2, 3, 3)
    assert _shape(model, "c") == (1, 2, 8, 8) and _shape(model, "a0") == (1, 2, 8, 8)
    assert [v.name for v in model.graph.outputs] == ["y"] and _shape(model, "y") == (1, 5, 8, 8)
    _assert_equivalent(proto, model, random_feeds(x=(1, 3, 8, 8)))


def test_conv_conv_without_bias():
    proto = _conv_chain(chain=[], b1=None)
    model, applied = _prune(proto)
    assert applied.stats == {"layers": 1, "channels": 2}
    assert ops(model) == ["Conv", "Conv"]
    assert model.graph.initializers["w1"].const_value.shape == (2, 3, 3, 3)
    assert model.graph.initializers["w2"].const_value.shape == (5, 2, 3, 3)
    _assert_equivalent(proto, model, random_feeds(x=(1, 3, 8, 8)))


def test_zero_preserving_chain_and_two_consumers():
    clip = helper.make_node("Clip", ["a1", "lo", "hi"], ["a2"])
    proto = _conv_chain(chain=["Relu", "LeakyRelu"])
    graph = proto.graph
    # a1 -> Clip(-1, 6) -> a2 -> Conv(w2); a1 also feeds a second Conv(w3) -> z.
    graph.node[-1].input[0] = "a2"
    graph.node.insert(len(graph.node) - 1, clip)
    graph.node.append(helper.make_node("Conv", ["a1", "w3"], ["z"]))
    graph.initializer.extend([numpy_helper.from_array(np.float32(-1), "lo"), numpy_helper.from_array(np.float32(6), "hi"), numpy_helper.from_array(_weight(2, 4, 1, 1), "w3")])
    graph.value_info.append(_info("a2", [1, 4, 8, 8]))
    graph.output.append(_info("z", [1, 2, 8, 8]))
    model, applied = _prune(proto)
    assert applied.stats == {"layers": 1, "channels": 2}
    assert ops(model) == ["Conv", "Relu", "LeakyRelu", "Clip", "Conv", "Conv"]
    assert model.graph.initializers["w3"].const_value.shape == (2, 2, 1, 1)
    assert all(_shape(model, name) == (1, 2, 8, 8) for name in ("c", "a0", "a1", "a2"))
    _assert_equivalent(proto, model, random_feeds(x=(1, 3, 8, 8)))


def test_constant_node_weight():
    proto = _conv_chain(chain=[])
    graph = proto.graph
    w1 = next(t for t in graph.initializer if t.name == "w1")
    graph.node.insert(0, helper.make_node("Constant", [], ["w1"], value=w1))
    graph.initializer.remove(w1)
    model, applied = _prune(proto)
    assert applied.stats == {"layers": 1, "channels": 2}
    assert ops(model) == ["Constant", "Conv", "Conv"]
    assert tuple(model.graph.node(0).outputs[0].shape) == (2, 3, 3, 3)
    _assert_equivalent(proto, model, random_feeds(x=(1, 3, 8, 8)))


GEMM_CASES = {
    "transB-C-row": dict(trans_b=1, c=(1, 6)),
    "plain-C-vector": dict(trans_b=0, c=(6,)),
    "alpha-beta-column-C": dict(trans_b=0, c=(2, 1), alpha=0.5, beta=2.0, c_zero=True),
    "no-C": dict(trans_b=1, c=None),
}


@pytest.mark.parametrize("case", GEMM_CASES.values(), ids=GEMM_CASES.keys())
@pytest.mark.parametrize("consumer_trans_b", [0, 1], ids=["consumer", "consumer-transB"])
def test_gemm_gemm(case, consumer_trans_b):
    trans_b, c_shape = case["trans_b"], case["c"]
    b1 = _weight(6, 3, zero=(0, 4)) if trans_b else _weight(3, 6, zero=(0, 4), axis=1)
    weights = {"b1": b1, "b2": _weight(5, 6) if consumer_trans_b else _weight(6, 5)}
    inputs = ["x", "b1"]
    if c_shape is not None:
        c = RNG.standard_normal(c_shape).astype(np.float32)
        if case.get("c_zero"):
            c[:] = 0
        elif len(c_shape) and c_shape[-1] == 6:
            c[..., [0, 4]] = 0
        weights["c1"] = c
        inputs.append("c1")
    attrs = {k: case[k] for k in ("alpha", "beta") if k in case}
    nodes = [
        helper.make_node("Gemm", inputs, ["h"], transB=trans_b, **attrs),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "b2"], ["y"], transB=consumer_trans_b),
    ]
    proto = _model(nodes, [_info("x", [2, 3])], [_info("y", [2, 5])], weights, [_info("h", [2, 6]), _info("r", [2, 6])])
    model, applied = _prune(proto)
    assert applied.stats == {"layers": 1, "channels": 2}
    assert ops(model) == ["Gemm", "Relu", "Gemm"]
    initializers = model.graph.initializers
    assert initializers["b1"].const_value.shape == ((4, 3) if trans_b else (3, 4))
    assert initializers["b2"].const_value.shape == ((5, 4) if consumer_trans_b else (4, 5))
    if c_shape is not None:
        assert initializers["c1"].const_value.shape == tuple(4 if d == 6 else d for d in c_shape)
    assert _shape(model, "h") == (2, 4) and _shape(model, "r") == (2, 4)
    _assert_equivalent(proto, model, random_feeds(x=(2, 3)))


def test_matmul_matmul():
    weights = {"w1": _weight(8, 6, zero=(1, 2, 5), axis=1), "w2": _weight(6, 4)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    proto = _model(nodes, [_info("x", ["B", 5, 8])], [_info("y", ["B", 5, 4])], weights, [_info("h", ["B", 5, 6])])
    model, applied = _prune(proto)
    assert applied.stats == {"layers": 1, "channels": 3}
    assert ops(model) == ["MatMul", "MatMul"]
    assert model.graph.initializers["w1"].const_value.shape == (8, 3)
    assert model.graph.initializers["w2"].const_value.shape == (3, 4)
    assert _shape(model, "h") == ("B", 5, 3)
    assert _shape(model, "y") == ("B", 5, 4)  # the interface, dynamic dim included, is untouched
    _assert_equivalent(proto, model, random_feeds(x=(3, 5, 8)))


def test_matmul_tanh_gemm_reaches_a_fixed_point():
    weights = {"w1": _weight(8, 6, zero=(3,), axis=1), "b2": _weight(4, 6)}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("Gemm", ["t", "b2"], ["y"], transB=1),
    ]
    proto = _model(nodes, [_info("x", [2, 8])], [_info("y", [2, 4])], weights)
    model, applied = _prune(proto)
    assert applied.stats == {"layers": 1, "channels": 1}
    assert model.graph.initializers["b2"].const_value.shape == (4, 5)
    _assert_equivalent(proto, model, random_feeds(x=(2, 8)))
    assert run_pass(PruneZeroChannelsPass, model).stats == {}  # a fixed point: a second run changes nothing


def _decline(proto: onnx.ModelProto, reasons: str | dict[str, int]) -> None:
    """The pass declines for `reasons` (one reason, or counts by reason) and leaves the model as it was."""
    model, applied = _prune(proto)
    assert applied.stats == {}
    assert applied.declined == ({reasons: 1} if isinstance(reasons, str) else reasons)
    _assert_unchanged(proto, model)


def test_declines_shared_weight():
    proto = _conv_chain(chain=[], b1=None)
    # A second user of w2: w2's input channels cannot be dropped for one of them.
    proto.graph.node.append(helper.make_node("Conv", ["c", "w2"], ["z"]))
    proto.graph.output.append(_info("z", [1, 5, 6, 6]))
    _decline(proto, "Conv: a weight or bias is shared with other nodes or is a graph output")


def test_declines_shared_producer_weight():
    proto = _conv_chain(chain=[], b1=None)
    proto.graph.node.append(helper.make_node("Conv", ["x", "w1"], ["z"]))
    proto.graph.output.append(_info("z", [1, 4, 6, 6]))
    _decline(proto, {"Conv: a weight or bias is shared with other nodes or is a graph output": 1, "Conv: output is a graph output": 1})


@pytest.mark.parametrize("output", ["c", "a0"], ids=["producer", "chain"])
def test_declines_graph_output(output):
    proto = _conv_chain(outputs=[_info("y", [1, 5, 8, 8]), _info(output, [1, 4, 8, 8])])
    _decline(proto, "Conv: output is a graph output" if output == "c" else "Conv: Relu output is a graph output")


def test_declines_depthwise_producer():
    w1 = _weight(4, 1, 3, 3, zero=(1,))
    proto = _conv_chain(w1=w1, b1=None)
    proto.graph.node[0].attribute.append(helper.make_attribute("group", 4))
    proto.graph.input[0].CopyFrom(_info("x", [1, 4, 8, 8]))
    _decline(proto, "Conv: grouped Conv producer")


def test_declines_depthwise_consumer():
    _decline(_conv_chain(w2=_weight(4, 1, 3, 3), group2=4, outputs=[_info("y", [1, 4, 8, 8])]), "Conv: consumer Conv is grouped")


def test_declines_nonzero_bias():
    _decline(_conv_chain(b1=np.ones(4, np.float32)), "Conv: zero-weight channels have a nonzero bias")


def test_declines_all_channels_zero():
    _decline(_conv_chain(w1=np.zeros((4, 3, 3, 3), np.float32), b1=None), "Conv: every output channel is zero")


@pytest.mark.parametrize(
    "op, reason",
    [("Sigmoid", "Conv: output is read by Sigmoid"), ("Softplus", "Conv: output is read by Softplus")],
)
def test_declines_non_zero_preserving_chain(op, reason):
    _decline(_conv_chain(chain=[op]), reason)


def test_declines_clip_excluding_zero():
    proto = _conv_chain(chain=["Clip"])
    proto.graph.node[1].input.extend(["lo"])
    proto.graph.initializer.append(numpy_helper.from_array(np.float32(0.5), "lo"))
    _decline(proto, "Conv: Clip does not keep zero")


def test_declines_batchnorm_consumer():
    params = {name: np.full(4, value, np.float32) for name, value in (("s", 1.5), ("t", 0.1), ("m", 0.2), ("v", 0.9))}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"]),
        helper.make_node("BatchNormalization", ["c", "s", "t", "m", "v"], ["y"]),
    ]
    proto = _model(nodes, [X], [_info("y", [1, 4, 6, 6])], {"w1": _weight(4, 3, 3, 3, zero=(2,)), **params})
    _decline(proto, "Conv: output is read by BatchNormalization")


def test_declines_weight_graph_input():
    proto = _conv_chain(chain=[], b1=None)
    proto.graph.input.append(_info("w2", [5, 4, 3, 3]))  # an overridable default, not a constant
    _decline(proto, {"Conv: consumer Conv weight is not a constant": 1, "Conv: weight is not a constant": 1})


def test_declines_computed_producer_weight():
    nodes = [
        helper.make_node("Relu", ["w0"], ["w1"]),
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["y"]),
    ]
    proto = _model(nodes, [_info("x", [2, 8])], [_info("y", [2, 4])], {"w0": _weight(8, 6, zero=(1,), axis=1), "w2": _weight(6, 4)})
    _decline(proto, "MatMul: weight is not a constant")


def test_declines_integer_weights():
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    w1 = np.arange(12, dtype=np.int32).reshape(3, 4)
    w1[:, 2] = 0
    proto = _model(nodes, [_info("x", [2, 3], TensorProto.INT32)], [_info("y", [2, 2], TensorProto.INT32)], {"w1": w1, "w2": np.ones((4, 2), np.int32)})
    _decline(proto, "MatMul: weight is not float")


def test_declines_gemm_consumer_with_trans_a():
    nodes = [helper.make_node("Gemm", ["x", "b1"], ["h"]), helper.make_node("Gemm", ["h", "b2"], ["y"], transA=1)]
    proto = _model(nodes, [_info("x", [6, 3])], [_info("y", [4, 5])], {"b1": _weight(3, 4, zero=(1,), axis=1), "b2": _weight(6, 5)})
    _decline(proto, "Gemm: consumer Gemm has transA")


def test_declines_gemm_nonzero_c():
    nodes = [helper.make_node("Gemm", ["x", "b1", "c1"], ["h"]), helper.make_node("Gemm", ["h", "b2"], ["y"])]
    weights = {"b1": _weight(3, 4, zero=(1,), axis=1), "c1": np.ones(4, np.float32), "b2": _weight(4, 5)}
    proto = _model(nodes, [_info("x", [2, 3])], [_info("y", [2, 5])], weights)
    _decline(proto, "Gemm: zero-weight columns have a nonzero C")


def test_declines_activation_as_weight():
    # h feeds the weight side of the second MatMul: its rows, not its columns, would have to go.
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["x2", "h"], ["y"])]
    proto = _model(nodes, [_info("x", [6, 8]), _info("x2", [2, 6])], [_info("y", [2, 6])], {"w1": _weight(8, 6, zero=(0,), axis=1)})
    _decline(proto, {"MatMul: output is read by MatMul (input 1)": 1, "MatMul: weight is not a constant": 1})


def test_no_zero_channels_is_silent():
    proto = _conv_chain(w1=_weight(4, 3, 3, 3))
    model, applied = _prune(proto)
    assert applied.stats == {} and applied.declined == {}
    _assert_unchanged(proto, model)
