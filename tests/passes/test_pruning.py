"""Output pruning and magnitude pruning: what goes, what stays, exact counts, and the errors."""

import math

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizer.lossy.magnitude import compressed_weight_bytes, prune_weights_by_magnitude
from passes.pruning import prune_outputs
from optimizer.lossy.magnitude import MIN_ELEMENTS
from tests.helpers import ops, random_feeds, run

RNG = np.random.default_rng(0)


def _info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(nodes, inputs, outputs, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    initializers = [numpy_helper.from_array(array, name) for name, array in weights.items()]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializers), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def _branches() -> onnx.ModelProto:
    """x -> MatMul(w1) -> Relu -> y1;  x -> MatMul(w2) -> y2;  x -> Add(x, one) -> y3."""
    weights = {name: RNG.standard_normal((4, 3)).astype(np.float32) for name in ("w1", "w2")}
    weights["one"] = np.ones(1, np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["y1"]),
        helper.make_node("MatMul", ["x", "w2"], ["y2"]),
        helper.make_node("Add", ["x", "one"], ["y3"]),
    ]
    outputs = [_info("y1", [2, 3]), _info("y2", [2, 3]), _info("y3", [2, 4])]
    return _model(nodes, [_info("x", [2, 4])], outputs, weights)


# prune_outputs


def test_prune_outputs_keeps_one():
    proto = _branches()
    model = ir.serde.deserialize_model(proto)
    counts = prune_outputs(model, ["y1"])
    assert counts == {"outputs_removed": 2, "nodes_removed": 2, "initializers_removed": 2}
    assert [v.name for v in model.graph.outputs] == ["y1"]
    assert ops(model) == ["MatMul", "Relu"]
    assert list(model.graph.initializers) == ["w1"]
    assert [v.name for v in model.graph.inputs] == ["x"]
    feeds = random_feeds(x=(2, 4))
    np.testing.assert_array_equal(run(model, feeds)[0], run(ir.serde.deserialize_model(proto), feeds)[0])


def test_prune_outputs_keeps_original_order():
    model = ir.serde.deserialize_model(_branches())
    counts = prune_outputs(model, ["y3", "y1", "y3"])
    assert [v.name for v in model.graph.outputs] == ["y1", "y3"]
    assert counts == {"outputs_removed": 1, "nodes_removed": 1, "initializers_removed": 1}
    assert ops(model) == ["MatMul", "Relu", "Add"]


def test_prune_outputs_keeping_all_changes_nothing():
    proto = _branches()
    model = ir.serde.deserialize_model(proto)
    assert prune_outputs(model, ["y1", "y2", "y3"]) == {"outputs_removed": 0, "nodes_removed": 0, "initializers_removed": 0}
    assert onnx.printer.to_text(ir.serde.serialize_model(model).graph) == onnx.printer.to_text(ir.serde.serialize_model(ir.serde.deserialize_model(proto)).graph)


def test_prune_outputs_shared_trunk_stays():
    """A node both kept and dropped outputs need stays."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y1"]), helper.make_node("Abs", ["r"], ["y2"])]
    model = ir.serde.deserialize_model(_model(nodes, [_info("x", [2])], [_info("y1", [2]), _info("y2", [2])], {}))
    assert prune_outputs(model, ["y2"]) == {"outputs_removed": 1, "nodes_removed": 1, "initializers_removed": 0}
    assert ops(model) == ["Relu", "Abs"]


@pytest.mark.parametrize(
    "keep, message",
    [
        (["y9"], "unknown output(s) 'y9'; the graph's outputs are 'y1', 'y2', 'y3'"),
        (["y1", "nope"], "unknown output(s) 'nope'"),
        ([], "keep at least one output"),
    ],
    ids=["unknown", "one-unknown", "empty"],
)
def test_prune_outputs_rejects(keep, message):
    proto = _branches()
    model = ir.serde.deserialize_model(proto)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        prune_outputs(model, keep)
    assert "\n" not in str(error.value)
    assert [v.name for v in model.graph.outputs] == ["y1", "y2", "y3"]  # nothing changed


# prune_weights_by_magnitude


def _layers() -> onnx.ModelProto:
    """Conv (288-entry W, bias) -> Flatten -> Gemm (512-entry B, bias) -> MatMul (small, 32 entries); a shared MatMul weight."""
    weights = {
        "w": RNG.standard_normal((8, 4, 3, 3)).astype(np.float32),
        "b": RNG.standard_normal(8).astype(np.float32),
        "g": RNG.standard_normal((32, 16)).astype(np.float32),
        "c": RNG.standard_normal(16).astype(np.float32),
        "small": RNG.standard_normal((16, 2)).astype(np.float32),
        "shared": RNG.standard_normal((16, 16)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c1"]),
        helper.make_node("Flatten", ["c1"], ["f"]),
        helper.make_node("Gemm", ["f", "g", "c"], ["h"]),
        helper.make_node("MatMul", ["h", "shared"], ["s1"]),
        helper.make_node("MatMul", ["s1", "shared"], ["s2"]),
        helper.make_node("MatMul", ["s2", "small"], ["y"]),
    ]
    return _model(nodes, [_info("x", [1, 4, 4, 4])], [_info("y", [1, 2])], weights)


@pytest.mark.parametrize("ratio", [0.1, 0.29, 0.5, 0.9])
def test_magnitude_exact_zero_counts(ratio):
    model = ir.serde.deserialize_model(_layers())
    before = {name: v.const_value.numpy().copy() for name, v in model.graph.initializers.items()}
    stats = prune_weights_by_magnitude(model, ratio)
    after = {name: v.const_value.numpy() for name, v in model.graph.initializers.items()}
    pruned = {"w": 288, "g": 512, "shared": 256}
    assert stats == {
        "tensors_pruned": 3,
        "elements": sum(pruned.values()),
        "zeros_before": 0,
        "zeros_after": sum(math.floor(round(ratio * n, 9)) for n in pruned.values()),
    }
    for name, size in pruned.items():
        zeroed = after[name] == 0
        assert zeroed.sum() == math.floor(round(ratio * size, 9))
        assert after[name].shape == before[name].shape
        # the smallest entries went, the rest are untouched
        assert np.abs(before[name][zeroed]).max() <= np.abs(before[name][~zeroed]).min()
        np.testing.assert_array_equal(after[name][~zeroed], before[name][~zeroed])
    for name in ("b", "c", "small"):  # biases and tiny tensors stay
        np.testing.assert_array_equal(after[name], before[name])
    assert run(model, random_feeds(x=(1, 4, 4, 4)))[0].shape == (1, 2)


def test_magnitude_ties_and_existing_zeros():
    weights = {"w": np.ones((16, 16), np.float32), "z": np.zeros((16, 16), np.float32)}
    weights["z"][0, :4] = [1, 2, 3, 4]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "z"], ["y"])]
    model = ir.serde.deserialize_model(_model(nodes, [_info("x", [1, 16])], [_info("y", [1, 16])], weights))
    stats = prune_weights_by_magnitude(model, 0.3)
    w = model.graph.initializers["w"].const_value.numpy()
    z = model.graph.initializers["z"].const_value.numpy()
    assert (w == 0).sum() == 76  # floor(0.3 * 256): all equal, ties broken by position
    assert (w.reshape(-1)[:76] == 0).all()
    assert (z != 0).sum() == 4  # already sparser than asked: nothing more to zero
    assert stats == {"tensors_pruned": 2, "elements": 512, "zeros_before": 252, "zeros_after": 76 + 252}


def test_magnitude_is_deterministic():
    first, second = ir.serde.deserialize_model(_layers()), ir.serde.deserialize_model(_layers())
    # the same builder draws new random weights; copy the first model's instead
    for name, value in first.graph.initializers.items():
        second.graph.initializers[name].const_value = ir.tensor(value.const_value.numpy().copy(), name=name)
    prune_weights_by_magnitude(first, 0.4)
    prune_weights_by_magnitude(second, 0.4)
    assert ir.serde.serialize_model(first).SerializeToString() == ir.serde.serialize_model(second).SerializeToString()


def test_magnitude_shrinks_compressed_size():
    model = ir.serde.deserialize_model(_layers())
    before = compressed_weight_bytes(model)
    raw = sum(v.const_value.nbytes for v in model.graph.initializers.values())
    prune_weights_by_magnitude(model, 0.75)
    after = compressed_weight_bytes(model)
    assert after < 0.6 * before
    assert sum(v.const_value.nbytes for v in model.graph.initializers.values()) == raw  # dense size unchanged


def test_magnitude_skips_small_and_non_float_weights():
    weights = {"w": RNG.standard_normal((MIN_ELEMENTS - 1, 1)).astype(np.float32), "i": np.arange(1024, dtype=np.int32).reshape(32, 32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["xi", "i"], ["yi"])]
    inputs = [_info("x", [1, MIN_ELEMENTS - 1]), helper.make_tensor_value_info("xi", TensorProto.INT32, [1, 32])]
    outputs = [_info("y", [1, 1]), helper.make_tensor_value_info("yi", TensorProto.INT32, [1, 32])]
    model = ir.serde.deserialize_model(_model(nodes, inputs, outputs, weights))
    assert prune_weights_by_magnitude(model, 0.5) == {"tensors_pruned": 0, "elements": 0, "zeros_before": 0, "zeros_after": 0}


@pytest.mark.parametrize("ratio", [0, 1, 1.0, -0.1, 1.5, float("nan"), True, "0.5"])
def test_magnitude_rejects_bad_ratio(ratio):
    model = ir.serde.deserialize_model(_layers())
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        prune_weights_by_magnitude(model, ratio)
