"""Models as third parties ship them: custom domains, quantized, wrong declared shapes, subgraphs."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from optimizer.api import optimize


def _model(nodes, inputs, outputs, initializers=(), opsets=(("", 17),), ir_version=10):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = ir_version
    return model


def _save(model, tmp_path, name="m.onnx"):
    path = str(tmp_path / name)
    onnx.save(model, path)
    return path


def test_custom_domain_passes_through_and_verification_is_skipped(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("MyOp", ["a"], ["b"], domain="com.example", alpha=2.0),
        helper.make_node("Relu", ["b"], ["y"]),
    ]
    path = _save(_model(nodes, [x], [y], opsets=(("", 17), ("com.example", 1))), tmp_path)
    result = optimize(path, tmp_path / "o.onnx")
    assert result.verification.status == "skipped"
    assert any("verification skipped" in w for w in result.warnings)
    written = onnx.load(tmp_path / "o.onnx")
    assert [n.op_type for n in written.graph.node] == ["MyOp", "Relu"]
    assert written.graph.node[0].domain == "com.example"
    assert {o.domain for o in written.opset_import} >= {"", "com.example"}


def test_quantized_model_keeps_qdq_pairs(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    weights = numpy_helper.from_array(np.arange(12, dtype=np.int8).reshape(4, 3), "wq")
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zero")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "scale", "zero"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
    ]
    path = _save(_model(nodes, [x], [y], [weights, scale, zero]), tmp_path)
    result = optimize(path, tmp_path / "o.onnx")
    assert result.verification.passed
    assert result.verification.tolerance.rtol == 1e-2  # quantized models get the looser default
    assert result.after.op_counts["DequantizeLinear"] == 2  # weights stay int8 for the int8 kernels


def test_wrong_declared_output_shape_is_kept(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 99])  # wrong: really [1, 4]
    nodes = [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    path = _save(_model(nodes, [x], [y]), tmp_path)
    result = optimize(path, tmp_path / "o.onnx")
    assert result.verification.passed
    dims = [d.dim_value for d in onnx.load(tmp_path / "o.onnx").graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 99]


def test_if_with_lstm_subgraph_is_optimized_recursively(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1, 2])
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((1, 12, 2)).astype(np.float32), "W")
    r = numpy_helper.from_array(rng.standard_normal((1, 12, 3)).astype(np.float32), "R")
    then_out = helper.make_tensor_value_info("t", TensorProto.FLOAT, None)
    then_graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["xi"]),
            helper.make_node("LSTM", ["xi", "W", "R"], ["", "h"], hidden_size=3),
            helper.make_node("Identity", ["h"], ["t"]),
        ],
        "then",
        [],
        [then_out],
    )
    else_out = helper.make_tensor_value_info("e", TensorProto.FLOAT, None)
    else_graph = helper.make_graph([helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(np.zeros((1, 1, 3), np.float32)))], "else", [], [else_out])
    nodes = [helper.make_node("If", ["flag"], ["y"], then_branch=then_graph, else_branch=else_graph)]
    path = _save(_model(nodes, [x, flag], [y], [w, r]), tmp_path)
    np.savez(tmp_path / "in.npz", x=rng.standard_normal((3, 1, 2)).astype(np.float32), flag=np.array(True))
    inputs = dict(np.load(tmp_path / "in.npz"))
    result = optimize(path, tmp_path / "o.onnx", inputs=inputs)
    assert result.verification.passed
    assert result.after.op_counts.get("Identity", 0) < result.before.op_counts["Identity"]
    assert result.after.op_counts["LSTM"] == 1 and result.after.op_counts["If"] == 1


def test_fully_dynamic_image_model(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["a", 3, "c", "d"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", 4, "e", "f"])
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])]
    path = _save(_model(nodes, [x], [y], [weight]), tmp_path)
    result = optimize(path, tmp_path / "o.onnx")
    assert result.verification.passed
    dims = onnx.load(tmp_path / "o.onnx").graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["a", 3, "c", "d"]


def test_unknown_rank_input_needs_input_shape(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    path = _save(_model([helper.make_node("Relu", ["x"], ["y"])], [x], [y]), tmp_path)
    result = optimize(path, tmp_path / "o.onnx", input_shapes={"x": (2, 3)})
    assert result.verification.passed


def test_old_opset_9_model(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [helper.make_node("Upsample", ["x", "scales"], ["u"], mode="nearest"), helper.make_node("Dropout", ["u"], ["y"], ratio=0.5)]
    path = _save(_model(nodes, [x], [y], [scales], opsets=(("", 9),), ir_version=4), tmp_path)
    result = optimize(path, tmp_path / "o.onnx")
    assert result.verification.passed
    assert "Dropout" not in result.after.op_counts
