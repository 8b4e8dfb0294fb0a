"""Per-op profiling in real onnxruntime sessions: what the trace holds, how it is summed, what is left behind."""

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizer.profile import NodeTiming, ProfileResult, profile_model, read_trace

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}


def feeds_for(path, dim: int = 2) -> dict[str, np.ndarray]:
    """Inputs from the session's declared inputs, dynamic dims bound to `dim`, ints small and in range."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.get_inputs():
        shape = [d if isinstance(d, int) else dim for d in spec.shape]
        dtype = DTYPES[spec.type]
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


@pytest.fixture
def clean_dirs(tmp_path, monkeypatch):
    """An empty working directory and an empty temporary-files directory; both must stay empty."""
    cwd, temp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    temp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield cwd, temp
    assert list(cwd.iterdir()) == []
    assert list(temp.iterdir()) == []


def profile_sample(name: str, **kwargs) -> ProfileResult:
    path = SAMPLES / name
    return profile_model(path, feeds_for(path), **kwargs)


def assert_consistent(result: ProfileResult) -> None:
    assert result.nodes and result.by_op_type
    assert math.isclose(sum(n.share for n in result.nodes), 1.0, abs_tol=1e-9)
    assert math.isclose(sum(t.share for t in result.by_op_type), 1.0, abs_tol=1e-9)
    assert math.isclose(sum(n.mean_ms for n in result.nodes), result.kernel_ms, rel_tol=1e-9)
    for entry in result.by_op_type:
        members = [n for n in result.nodes if n.op_type == entry.op_type]
        assert entry.nodes == len(members)
        assert math.isclose(entry.mean_ms, sum(n.mean_ms for n in members), rel_tol=1e-9)
    assert [n.mean_ms for n in result.nodes] == sorted((n.mean_ms for n in result.nodes), reverse=True)
    assert [t.mean_ms for t in result.by_op_type] == sorted((t.mean_ms for t in result.by_op_type), reverse=True)
    assert all(n.provider == "CPUExecutionProvider" and not n.name.endswith("_kernel_time") for n in result.nodes)
    # sequential execution: kernels are disjoint intervals inside the run (1 µs rounding per event)
    assert 0 < result.kernel_ms <= result.run_ms + 1e-3 * len(result.nodes)


@pytest.mark.parametrize("name", ["cnn_bn.onnx", "transformer_block.onnx", "inception_block.onnx", "dynamic_dims.onnx"])
def test_profile_sums_and_order(name, clean_dirs):
    result = profile_sample(name, runs=5, warmup=2)
    assert result.runs == 5
    assert_consistent(result)


def test_cnn_reports_the_kernels_onnxruntime_ran(clean_dirs):
    result = profile_sample("cnn_bn.onnx", runs=5, warmup=1)
    op_types = {t.op_type for t in result.by_op_type}
    assert {"Conv", "Gemm", "MaxPool"} <= op_types
    # onnxruntime folds BatchNormalization into Conv and fuses the Relu: neither runs on its own
    assert "BatchNormalization" in {n.op_type for n in onnx.load(SAMPLES / "cnn_bn.onnx").graph.node}
    assert not {"BatchNormalization", "Relu", "Identity", "Dropout"} & op_types


def test_transformer_reports_onnxruntime_fused_ops(clean_dirs):
    result = profile_sample("transformer_block.onnx", runs=5, warmup=1)
    op_types = {t.op_type for t in result.by_op_type}
    assert {"MatMul", "Softmax", "LayerNormalization"} <= op_types
    assert "LayerNormalization" not in {n.op_type for n in onnx.load(SAMPLES / "transformer_block.onnx").graph.node}
    layer_norms = [n for n in result.nodes if n.op_type == "LayerNormalization"]
    assert len(layer_norms) == 2 and next(t for t in result.by_op_type if t.op_type == "LayerNormalization").nodes == 2


def test_subgraph_nodes_are_not_counted_twice(clean_dirs):
    result = profile_sample("if_model.onnx", runs=5, warmup=1)
    assert "If" in {n.op_type for n in result.nodes}
    assert "Tanh" in {n.op_type for n in result.nodes}  # inside the If that stays; runs for positive sums
    assert_consistent(result)


def test_top_is_sorted_and_limited(clean_dirs):
    result = profile_sample("transformer_block.onnx", runs=3, warmup=1)
    assert len(result.nodes) > 5
    top = result.top(5)
    assert top == result.nodes[:5] and len(top) == 5
    assert all(a.mean_ms >= b.mean_ms for a, b in zip(top, top[1:]))
    assert result.top(10_000) == result.nodes
    assert result.top(0) == [] and result.top(-1) == []


def test_to_dict_is_json_ready(clean_dirs):
    result = profile_sample("cnn_bn.onnx", runs=3, warmup=1)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["runs"] == 3 and data["kernel_ms"] == result.kernel_ms and data["run_ms"] == result.run_ms
    assert set(data["nodes"][0]) == {"name", "op_type", "provider", "mean_ms", "share"}
    assert set(data["by_op_type"][0]) == {"op_type", "nodes", "mean_ms", "share"}
    assert len(data["nodes"]) == len(result.nodes)


def test_given_session_options_are_used_and_restored(clean_dirs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.profile_file_prefix = "mine"
    result = profile_sample("cnn_bn.onnx", session_options=options, runs=4, warmup=0)
    assert result.runs == 4
    assert_consistent(result)
    assert options.enable_profiling is False and options.profile_file_prefix == "mine"
    assert options.intra_op_num_threads == 1


def test_providers_and_provider_options_are_passed(clean_dirs):
    result = profile_sample("cnn_bn.onnx", providers=["CPUExecutionProvider"], provider_options=[{}], runs=2, warmup=1)
    assert {n.provider for n in result.nodes} == {"CPUExecutionProvider"}


def test_a_failing_run_leaves_nothing_behind(clean_dirs):
    path = SAMPLES / "cnn_bn.onnx"
    feeds = {name: value.astype(np.float64) for name, value in feeds_for(path).items()}
    with pytest.raises(Exception, match="(?i)type"):
        profile_model(path, feeds, runs=2, warmup=1)


def test_a_missing_model_leaves_nothing_behind(clean_dirs):
    with pytest.raises(Exception):
        profile_model(clean_dirs[0] / "missing.onnx", {}, runs=1)


def test_a_model_without_kernels_is_a_clear_error(tmp_path, clean_dirs):
    # Add of two initializers: onnxruntime folds it at session creation, so no kernel ever runs
    c = numpy_helper.from_array(np.ones(3, np.float32), "c")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    graph = helper.make_graph([helper.make_node("Add", ["c", "c"], ["y"])], "folded", [x], [y], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path / "folded.onnx"
    onnx.save(model, path)
    with pytest.raises(ValueError, match="no node events") as error:
        profile_model(path, {"x": np.ones(3, np.float32)}, runs=2, warmup=1)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"warmup": -1}])
def test_bad_run_counts_are_refused(kwargs, clean_dirs):
    with pytest.raises(ValueError):
        profile_sample("cnn_bn.onnx", **kwargs)


# -- the trace arithmetic on a hand-written trace (the shape onnxruntime 1.31 writes) ----------------


def _event(cat, name, ts, dur, tid=1, **args):
    return {"cat": cat, "pid": 7, "tid": tid, "ph": "X", "name": name, "ts": ts, "dur": dur, "args": args}


def _node(name, op, ts, dur, tid=1):
    return _event("Node", f"{name}_kernel_time", ts, dur, tid, op_name=op, provider="CPUExecutionProvider")


TRACE = [
    _event("Session", "model_loading_uri", 0, 50),
    _event("Session", "session_initialization", 60, 100),
    # warm-up run: slow first kernels, must not count
    _node("conv", "Conv", 205, 900),
    _node("relu", "Relu", 1110, 90),
    _event("Session", "model_run", 200, 1100),
    # timed run 1: an If whose subgraph node runs inside it
    _node("conv", "Conv", 2005, 300),
    _node("if", "If", 2310, 100),
    _node("then/relu", "Relu", 2320, 60),
    _event("Session", "SequentialExecutor::Execute", 2319, 62),
    _event("Session", "model_run", 2000, 500),
    # timed run 2
    _node("conv", "Conv", 3005, 500),
    _node("if", "If", 3510, 50),
    _node("then/relu", "Relu", 3520, 20),
    _event("Session", "model_run", 3000, 700),
    # outside any run (a run cut short by the event cap): ignored
    _node("conv", "Conv", 5000, 9999),
    _event("Node", "conv_fence_before", 3004, 1, op_name="Conv"),
]


def test_read_trace_skips_warmup_and_charges_control_flow_its_own_time(tmp_path):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(TRACE))
    result = read_trace(path, skip_runs=1)
    assert result.runs == 2
    assert math.isclose(result.run_ms, (500 + 700) / 2 / 1e3)
    means = {n.name: n.mean_ms for n in result.nodes}
    assert means == pytest.approx({"conv": 0.4, "if": (40 + 30) / 2 / 1e3, "then/relu": 0.04})
    assert math.isclose(result.kernel_ms, 0.4 + 0.035 + 0.04)
    assert [n.name for n in result.nodes] == ["conv", "then/relu", "if"]
    assert {t.op_type: t.nodes for t in result.by_op_type} == {"Conv": 1, "Relu": 1, "If": 1}
    assert all(isinstance(n, NodeTiming) and n.provider == "CPUExecutionProvider" for n in result.nodes)


def test_read_trace_without_skipping_counts_the_first_run(tmp_path):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": TRACE}))
    result = read_trace(path)
    assert result.runs == 3
    assert math.isclose(next(t.mean_ms for t in result.by_op_type if t.op_type == "Relu"), (90 + 60 + 20) / 3 / 1e3)


def test_read_trace_with_no_run_left_is_a_clear_error(tmp_path):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(TRACE))
    with pytest.raises(ValueError, match="3 model runs"):
        read_trace(path, skip_runs=3)
