"""The cost model (FLOPs and bytes against hand counts), work/span, fork-join regions, and robustness."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizer import io
from optimizer.analysis import OUTPUTS_JOIN, GraphAnalysis, analyze
from optimizer.analysis import shapes as analysis_shapes

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
FLOAT = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers=(), opsets=(("", 17),)) -> ir.Model:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    proto.ir_version = 10
    return ir.serde.deserialize_model(proto)


def _tensor(name: str, shape, elem_type=FLOAT):
    return helper.make_tensor_value_info(name, elem_type, shape)


def _weight(name: str, shape) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _cost(analysis: GraphAnalysis, name: str):
    return next(n for n in analysis.nodes if n.name == name)


def _sample(name: str) -> ir.Model:
    return io.load(str(SAMPLES / f"{name}.onnx"))


# --------------------------------------------------------------------------- cost model

def test_grouped_conv_flops_match_hand_count():
    # X[1, 8, 10, 10], W[16, 8/4, 3, 3], group 4, same padding: Y[1, 16, 10, 10]
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", group=4, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    model = _model([conv], [_tensor("x", [1, 8, 10, 10])], [_tensor("y", [1, 16, 10, 10])], [_weight("w", (16, 2, 3, 3)), _weight("b", (16,))])
    cost = _cost(analyze(model), "conv")
    macs = 1 * 16 * 10 * 10 * (8 // 4) * 3 * 3
    assert cost.flops == 2 * macs + 16 * 10 * 10  # + the bias add
    assert cost.known
    assert cost.bytes_moved == 4 * (8 * 100 + 16 * 2 * 9 + 16 + 16 * 100)


def test_strided_conv_without_bias_and_conv_transpose():
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], strides=[2, 2])
    up = helper.make_node("ConvTranspose", ["y", "wt"], ["z"], name="up", kernel_shape=[2, 2], strides=[2, 2])
    model = _model(
        [conv, up],
        [_tensor("x", [2, 3, 9, 9])],
        [_tensor("z", None)],
        [_weight("w", (4, 3, 3, 3)), _weight("wt", (4, 5, 2, 2))],
    )
    analysis = analyze(model)
    assert _cost(analysis, "conv").flops == 2 * (2 * 4 * 4 * 4) * (3 * 3 * 3)  # Y[2, 4, 4, 4]
    assert _cost(analysis, "up").flops == 2 * (2 * 4 * 4 * 4) * (5 * 2 * 2)  # each input scattered over Cout*k*k


def test_batched_and_broadcast_matmul_flops():
    nodes = [
        helper.make_node("MatMul", ["a", "b"], ["ab"], name="batched"),  # [2, 3, 4, 5] x [3, 5, 6]
        helper.make_node("MatMul", ["ab", "w"], ["y"], name="weights"),  # [2, 3, 4, 6] x [6, 7]
    ]
    model = _model(nodes, [_tensor("a", [2, 3, 4, 5]), _tensor("b", [3, 5, 6])], [_tensor("y", None)], [_weight("w", (6, 7))])
    analysis = analyze(model)
    assert _cost(analysis, "batched").flops == 2 * (2 * 3) * 4 * 6 * 5
    assert _cost(analysis, "weights").flops == 2 * (2 * 3) * 4 * 7 * 6
    assert _cost(analysis, "batched").bytes_moved == 4 * (2 * 3 * 4 * 5 + 3 * 5 * 6 + 2 * 3 * 4 * 6)


def test_gemm_flops_with_transposes_and_bias():
    gemm = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm", transA=1, transB=1)
    plain = helper.make_node("Gemm", ["y", "d"], ["z"], name="plain")
    model = _model(
        [gemm, plain],
        [_tensor("a", [8, 4])],  # transA: M=4, K=8
        [_tensor("z", None)],
        [_weight("b", (16, 8)), _weight("c", (16,)), _weight("d", (16, 3))],  # transB: N=16
    )
    analysis = analyze(model)
    assert _cost(analysis, "gemm").flops == 2 * 4 * 16 * 8 + 4 * 16
    assert _cost(analysis, "plain").flops == 2 * 4 * 3 * 16


def test_elementwise_and_data_movement_costs():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Tanh", ["r"], ["t"], name="tanh"),
        helper.make_node("Reshape", ["t", "shape"], ["y"], name="reshape"),
    ]
    shape = numpy_helper.from_array(np.array([6], np.int64), "shape")
    model = _model(nodes, [_tensor("x", [2, 3])], [_tensor("y", [6])], [shape])
    analysis = analyze(model)
    assert _cost(analysis, "relu").flops == 6
    assert _cost(analysis, "tanh").flops == 6 * 4  # a transcendental costs a few FLOPs per element
    reshape = _cost(analysis, "reshape")
    assert reshape.flops == 0 and reshape.known
    assert reshape.bytes_moved == 6 * 4 + 8 + 6 * 4  # read the data and the target, write the data


def test_einsum_rnn_pooling_and_unnamed_nodes():
    nodes = [
        helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik"),
        helper.make_node("LSTM", ["x", "W", "R"], ["h"], hidden_size=5),
        helper.make_node("AveragePool", ["img"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Sum", ["a", "a", "a"], ["s"]),
    ]
    model = _model(
        nodes,
        [_tensor("a", [2, 3, 4]), _tensor("b", [2, 4, 5]), _tensor("x", [7, 2, 3]), _tensor("img", [1, 3, 8, 8])],
        [_tensor(n, None) for n in ("y", "h", "p", "s")],
        [_weight("W", (1, 4 * 5, 3)), _weight("R", (1, 4 * 5, 5))],
    )
    analysis = analyze(model)
    assert [n.name for n in analysis.nodes] == ["Einsum_0", "LSTM_1", "AveragePool_2", "Sum_3"]  # named by position
    assert _cost(analysis, "Einsum_0").flops == 2 * 2 * 3 * 4 * 5
    steps = 7 * 2
    assert _cost(analysis, "LSTM_1").flops == 2 * steps * 20 * (3 + 5) + 10 * steps * 5
    assert _cost(analysis, "AveragePool_2").flops == (3 * 4 * 4) * (2 * 2)
    assert _cost(analysis, "Sum_3").flops == 2 * 24  # three inputs: two additions per element


def test_com_microsoft_attention_is_costed():
    node = helper.make_node("Attention", ["x", "w", "b"], ["y"], name="attention", domain="com.microsoft", num_heads=2)
    model = _model(
        [node], [_tensor("x", [1, 8, 16])], [_tensor("y", [1, 8, 16])], [_weight("w", (16, 48)), _weight("b", (48,))],
        opsets=(("", 17), ("com.microsoft", 1)),
    )
    cost = _cost(analyze(model), "attention")
    projection = 2 * 8 * 16 * 48
    scores_and_context = 2 * 8 * 8 * (16 + 16)
    softmax = 5 * 2 * 8 * 8
    assert cost.known
    assert cost.flops == projection + scores_and_context + softmax


def test_loop_body_is_counted_per_iteration():
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body/Identity"),
            helper.make_node("Add", ["v_in", "v_in"], ["v_out"], name="body/Add"),
        ],
        "body",
        [_tensor("i", [], TensorProto.INT64), _tensor("cond_in", [], TensorProto.BOOL), _tensor("v_in", [4])],
        [_tensor("cond_out", [], TensorProto.BOOL), _tensor("v_out", [4])],
    )
    trips = numpy_helper.from_array(np.array(3, np.int64), "trips")
    keep_going = numpy_helper.from_array(np.array(True), "keep_going")
    loop = helper.make_node("Loop", ["trips", "keep_going", "x"], ["y"], name="loop", body=body)
    model = _model([loop], [_tensor("x", [4])], [_tensor("y", [4])], [trips, keep_going])
    cost = _cost(analyze(model), "loop")
    assert cost.flops == 3 * 4
    assert cost.known


# --------------------------------------------------------------------------- work, span, regions

def test_pure_chain_has_no_parallelism():
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="mm1"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("MatMul", ["b", "w"], ["y"], name="mm2"),
    ]
    model = _model(nodes, [_tensor("x", [4, 8])], [_tensor("y", [4, 8])], [_weight("w", (8, 8))])
    analysis = analyze(model)
    assert analysis.work_flops == pytest.approx(analysis.span_flops)
    assert analysis.parallelism == pytest.approx(1.0)
    assert analysis.inter_op_speedup_bound == pytest.approx(1.0)
    assert analysis.regions == []
    assert analysis.critical_path == ["mm1", "relu", "mm2"]


def test_diamond_is_one_region_with_two_branches():
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="stem"),
        helper.make_node("MatMul", ["h", "w1"], ["a"], name="left"),
        helper.make_node("MatMul", ["h", "w2"], ["b1"], name="right"),
        helper.make_node("Relu", ["b1"], ["b"], name="right_relu"),
        helper.make_node("Add", ["a", "b"], ["y"], name="join"),
    ]
    model = _model(nodes, [_tensor("x", [4, 8])], [_tensor("y", [4, 8])], [_weight("w1", (8, 8)), _weight("w2", (8, 8))])
    analysis = analyze(model)
    matmul = 2 * 4 * 8 * 8
    assert analysis.work_flops == 32 + 2 * matmul + 32 + 32
    assert analysis.span_flops == 32 + matmul + 32 + 32
    assert analysis.critical_path == ["stem", "right", "right_relu", "join"]
    assert analysis.parallelism == pytest.approx(analysis.work_flops / analysis.span_flops)
    assert 1.0 < analysis.inter_op_speedup_bound <= analysis.parallelism
    [region] = analysis.regions
    assert (region.fork, region.join) == ("stem", "join")
    assert [b["nodes"] for b in region.branches] == [["left"], ["right", "right_relu"]]
    assert [b["flops"] for b in region.branches] == [matmul, matmul + 32]


def test_shared_weights_are_not_a_fork():
    """Two inputs each through a MatMul with the same initializer: parallel work, but no fork-join region."""
    nodes = [helper.make_node("MatMul", ["x1", "w"], ["y1"], name="a"), helper.make_node("MatMul", ["x2", "w"], ["y2"], name="b")]
    model = _model(nodes, [_tensor("x1", [4, 8]), _tensor("x2", [4, 8])], [_tensor("y1", None), _tensor("y2", None)], [_weight("w", (8, 8))])
    analysis = analyze(model)
    assert analysis.parallelism == pytest.approx(2.0)
    assert analysis.regions == []


def test_inception_block_has_one_region_of_four_branches():
    analysis = analyze(_sample("inception_block"))
    assert analysis.unknown_cost_nodes == 0
    [region] = analysis.regions
    assert (region.fork, region.join) == ("x", "/Concat")
    assert len(region.branches) == 4
    assert sorted(b["nodes"][0] for b in region.branches) == ["/Conv", "/Conv_1", "/Conv_3", "/MaxPool"]
    # 1x1 conv 16 -> 8 on 16x16 (+ bias), then its Relu
    assert region.branches[0] == {"nodes": ["/Conv", "/Relu"], "flops": 2 * 8 * 256 * 16 + 8 * 256 + 8 * 256}
    heaviest = max(b["flops"] for b in region.branches)
    tail = _cost(analysis, "/Concat").flops + _cost(analysis, "/Conv_6").flops
    assert analysis.span_flops == pytest.approx(heaviest + tail)
    assert analysis.parallelism > 1.5
    assert 1.0 < analysis.inter_op_speedup_bound <= analysis.parallelism


def test_transformer_block_attention_branches():
    analysis = analyze(_sample("transformer_block"))
    assert analysis.work_flops > 0
    assert analysis.unknown_cost_nodes == 0
    assert analysis.critical_path and analysis.critical_path[-1] == "/Add_12"
    assert analysis.parallelism > 1.0
    # Q and K meet at Q.K^T (/MatMul_3), then V joins at P.V (/MatMul_4): two nested regions
    joins = {r.join: r for r in analysis.regions}
    assert set(joins) == {"/MatMul_3", "/MatMul_4"}
    q_and_k = [set(b["nodes"]) for b in joins["/MatMul_3"].branches]
    assert any("/MatMul" in nodes for nodes in q_and_k) and any("/MatMul_1" in nodes for nodes in q_and_k)
    assert any("/MatMul_2" in b["nodes"] for b in joins["/MatMul_4"].branches)


def test_deep_stack_is_fast_and_finds_every_attention():
    """A 1,000+ node graph (BERT-sized in nodes) is analysed in well under a few seconds."""
    layers, nodes = 100, []
    x = "x"
    for i in range(layers):
        p = f"l{i}/"
        nodes += [
            helper.make_node("MatMul", [x, "wq"], [p + "q"], name=p + "q"),
            helper.make_node("MatMul", [x, "wk"], [p + "k"], name=p + "k"),
            helper.make_node("MatMul", [x, "wv"], [p + "v"], name=p + "v"),
            helper.make_node("Transpose", [p + "k"], [p + "kt"], name=p + "kt", perm=[1, 0]),
            helper.make_node("MatMul", [p + "q", p + "kt"], [p + "s"], name=p + "scores"),
            helper.make_node("Softmax", [p + "s"], [p + "p"], name=p + "softmax", axis=-1),
            helper.make_node("MatMul", [p + "p", p + "v"], [p + "c"], name=p + "context"),
            helper.make_node("Add", [x, p + "c"], [p + "r"], name=p + "residual"),
            helper.make_node("Relu", [p + "r"], [p + "out"], name=p + "relu"),
            helper.make_node("Mul", [p + "out", p + "out"], [p + "sq"], name=p + "square"),
            helper.make_node("Add", [p + "sq", p + "out"], [p + "y"], name=p + "mix"),
        ]
        x = p + "y"
    nodes.append(helper.make_node("Identity", [x], ["y"], name="output"))
    weights = [_weight(n, (16, 16)) for n in ("wq", "wk", "wv")]
    model = _model(nodes, [_tensor("x", [32, 16])], [_tensor("y", [32, 16])], weights)
    assert len(nodes) > 1000
    start = time.perf_counter()
    analysis = analyze(model)
    assert time.perf_counter() - start < 5.0
    assert len(analysis.regions) == 2 * layers  # Q/K at the scores, then V at the context, in every layer
    assert analysis.unknown_cost_nodes == 0
    assert analysis.parallelism > 1.0


# --------------------------------------------------------------------------- robustness and binding

def test_if_model_counts_the_costlier_branch():
    analysis = analyze(_sample("if_model"))
    assert _cost(analysis, "/If").flops == 8 + 8  # then: Mul + Add on [2, 4]; else: one Sub
    assert _cost(analysis, "/If_1").flops == 4 * 8  # Tanh beats Neg
    assert analysis.unknown_cost_nodes == 0
    [region] = analysis.regions
    assert (region.fork, region.join) == ("x", OUTPUTS_JOIN)


def test_dynamic_dims_binding_scales_flops():
    model = _sample("dynamic_dims")
    before = ir.serde.serialize_model(model).SerializeToString()
    default = analyze(model)
    assert _cost(default, "/MatMul").flops == 2 * 1 * 16 * 4  # batch -> 1
    assert _cost(default, "/Mul").flops == 1 * 128 * 16  # seq -> 128
    small = analyze(model, {"tokens": [2, 64]})
    large = analyze(model, {"tokens": [4, 64]})
    assert _cost(large, "/MatMul").flops == 2 * _cost(small, "/MatMul").flops
    assert _cost(small, "/Mul").flops == 2 * 64 * 16  # "mask" shares tokens' symbols
    assert large.work_flops > small.work_flops
    assert ir.serde.serialize_model(model).SerializeToString() == before  # the caller's model is untouched
    assert [str(d) for d in model.graph.inputs[0].shape] == ["batch", "seq"]


def test_unknown_input_name_is_refused():
    with pytest.raises(ValueError, match="nope"):
        analyze(_sample("dynamic_dims"), {"nope": [1, 2]})


def test_model_without_nodes():
    model = _model([], [_tensor("x", [2])], [_tensor("x", [2])])
    analysis = analyze(model)
    assert analysis.nodes == [] and analysis.work_flops == 0 and analysis.span_flops == 0
    assert analysis.parallelism == 1.0 and analysis.inter_op_speedup_bound == 1.0
    assert analysis.critical_path == [] and analysis.regions == []
    json.dumps(analysis.to_dict())


def test_custom_op_and_missing_shapes_are_unknown_not_fatal(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # onnxruntime's shape inference, left to fail, writes a file here
    nodes = [
        helper.make_node("MyOp", ["x"], ["a"], name="custom", domain="com.example"),
        helper.make_node("MatMul", ["a", "w"], ["b"], name="after_custom"),
        helper.make_node("Relu", ["u"], ["c"], name="unshaped"),
    ]
    model = _model(
        nodes,
        [_tensor("x", [4, 8]), helper.make_tensor_value_info("u", FLOAT, None)],
        [_tensor("b", None), _tensor("c", None)],
        [_weight("w", (8, 8))],
        opsets=(("", 17), ("com.example", 1)),
    )
    analysis = analyze(model)
    assert not _cost(analysis, "custom").known
    assert not _cost(analysis, "unshaped").known
    assert analysis.unknown_cost_nodes >= 2
    assert analysis.unknown_cost_nodes == sum(1 for n in analysis.nodes if not n.known)
    json.dumps(analysis.to_dict())
    assert list(tmp_path.iterdir()) == []


def test_shape_arithmetic_is_resolved_for_costing(monkeypatch):
    """An Expand target computed from shapes (as exporters build attention masks) defeats onnx's shape
    inference; the fallback (onnxruntime's symbolic shape inference) resolves it for the MatMul after it."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Shape", ["s"], ["rank"], name="rank"),
        helper.make_node("ConstantOfShape", ["rank"], ["ones"], name="ones", value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Equal", ["s", "minus_one"], ["is_neg"], name="equal"),
        helper.make_node("Where", ["is_neg", "ones", "s"], ["target"], name="where"),
        helper.make_node("Expand", ["m", "target"], ["mask"], name="expand"),
        helper.make_node("MatMul", ["mask", "w"], ["y"], name="matmul"),
    ]
    minus_one = numpy_helper.from_array(np.array([-1], np.int64), "minus_one")
    model = _model(nodes, [_tensor("x", ["batch", 4, 8]), _tensor("m", [1, 1, 8])], [_tensor("y", None)], [minus_one, _weight("w", (8, 3))])
    analysis = analyze(model, {"x": [2, 4, 8]})
    assert _cost(analysis, "matmul").flops == 2 * (2 * 4) * 3 * 8
    assert analysis.unknown_cost_nodes == 0
    monkeypatch.setattr(analysis_shapes, "_infer_symbolic_shapes", lambda model: None)
    assert not _cost(analyze(model, {"x": [2, 4, 8]}), "matmul").known  # onnx's inference alone cannot


def test_tiny_parallel_nodes_do_not_raise_the_speedup_bound():
    """A heavy MatMul beside a branch of tiny nodes: work/span says >1x, the bound says nothing to gain."""
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="stem"), helper.make_node("MatMul", ["h", "w"], ["big"], name="big")]
    tail = "h"
    for i in range(10):
        nodes.append(helper.make_node("Neg", [tail], [f"n{i}"], name=f"tiny{i}"))
        tail = f"n{i}"
    nodes.append(helper.make_node("Add", ["big", tail], ["y"], name="join"))
    model = _model(nodes, [_tensor("x", [1, 512])], [_tensor("y", [1, 512])], [_weight("w", (512, 512))])
    analysis = analyze(model)
    assert analysis.parallelism > 1.0
    assert analysis.inter_op_speedup_bound == pytest.approx(1.0)
    [region] = analysis.regions  # the branches are there, but each Neg is below 0.1% of the work
    assert [len(b["nodes"]) for b in region.branches] == [1, 10]


@pytest.mark.parametrize("name", ["cnn_bn", "inception_block", "transformer_block", "dynamic_dims", "if_model", "initializer_inputs"])
def test_to_dict_is_json_ready(name):
    analysis = analyze(_sample(name))
    data = json.loads(json.dumps(analysis.to_dict()))
    for key in ("work_flops", "span_flops", "parallelism", "regions", "critical_path", "by_op_type", "inter_op_speedup_bound"):
        assert key in data
    for region in data["regions"]:
        assert all(set(b) == {"nodes", "flops"} for b in region["branches"])
    assert sum(s["count"] for s in data["by_op_type"].values()) == len(analysis.nodes)
    assert sum(s["flops"] for s in data["by_op_type"].values()) == pytest.approx(data["work_flops"])
    assert data["span_flops"] <= data["work_flops"] * (1 + 1e-9)
    assert 1.0 <= data["inter_op_speedup_bound"] <= data["parallelism"]


# --------------------------------------------------------------------------- the modules on their own

def test_structure_takes_flops_from_any_cost_model():
    """parallelism_of needs only the graph and a FLOP count per node: no shapes, no cost model."""
    from optimizer.analysis.structure import parallelism_of

    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="stem"),
        helper.make_node("Neg", ["h"], ["a"], name="left"),
        helper.make_node("Abs", ["h"], ["b"], name="right"),
        helper.make_node("Add", ["a", "b"], ["y"], name="join"),
    ]
    graph = _model(nodes, [_tensor("x", None)], [_tensor("y", None)]).graph
    found = parallelism_of(graph, list(graph), [n.name for n in graph], [1.0, 10.0, 20.0, 1.0])
    assert found.span_flops == 22.0 and found.critical_path == ["stem", "right", "join"]
    assert found.parallelism == pytest.approx(32 / 22)
    [region] = found.regions
    assert (region.fork, region.join) == ("stem", "join")
    assert [b["flops"] for b in region.branches] == [10.0, 20.0]


def test_cost_of_one_node_reads_its_inferred_shapes():
    from optimizer.analysis.cost import cost_of

    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [_tensor("x", [3, 8])],
                   [_tensor("y", [3, 4])], [_weight("w", (8, 4))])
    node = next(iter(model.graph))
    cost = cost_of(node, "mm")
    assert (cost.name, cost.op_type, cost.flops, cost.known) == ("mm", "MatMul", 2 * 3 * 8 * 4, True)
    assert cost.bytes_moved == 4 * (3 * 8 + 8 * 4 + 3 * 4)


def test_binding_gives_dynamic_inputs_defaults_and_shared_symbols():
    from optimizer.analysis.shapes import bind_inputs, known_dims

    model = _model([helper.make_node("Add", ["a", "b"], ["y"], name="add")],
                   [_tensor("a", ["batch", "seq"]), _tensor("b", ["batch", "seq"])], [_tensor("y", None)])
    bind_inputs(model.graph, {"a": [2, 5]})
    assert [known_dims(v) for v in model.graph.inputs] == [(2, 5), (2, 5)]
    other = _model([helper.make_node("Relu", ["a"], ["y"], name="relu")], [_tensor("a", ["batch", "seq"])], [_tensor("y", None)])
    bind_inputs(other.graph, {})
    assert known_dims(other.graph.inputs[0]) == (1, 128)
