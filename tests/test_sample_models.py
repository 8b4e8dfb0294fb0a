"""The sample models: rebuilt byte-identically, valid, runnable, and optimized with a passing verification."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from optimizer.api import optimize

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _load_builder():
    spec = importlib.util.spec_from_file_location("sample_models_build", SAMPLES / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_builder()
NAMES = sorted(build.MODELS)


def _io_names(path: Path) -> tuple[list[str], list[str]]:
    graph = onnx.load(str(path)).graph
    return [v.name for v in graph.input], [v.name for v in graph.output]


def _feeds(session: ort.InferenceSession, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else 2 for d in value.shape]
        if value.type == "tensor(int64)":
            feeds[value.name] = np.ones(shape, np.int64) if "mask" in value.name else rng.integers(0, 100, size=shape).astype(np.int64)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def test_model_list_is_complete():
    assert NAMES == sorted(
        ["cnn_bn.onnx", "transformer_block.onnx", "inception_block.onnx", "if_model.onnx", "initializer_inputs.onnx", "dynamic_dims.onnx"]
    )


def test_rebuild_is_byte_identical(tmp_path):
    written = build.build(tmp_path)
    assert sorted(p.name for p in written) == NAMES
    for name in NAMES:
        committed = SAMPLES / name
        assert committed.is_file(), f"{name} is missing; run python sample_models/build.py"
        assert (tmp_path / name).read_bytes() == committed.read_bytes(), f"{name} differs from a fresh build"


@pytest.mark.parametrize("name", NAMES)
def test_sample_is_valid_and_runs(name):
    path = SAMPLES / name
    assert path.stat().st_size < 300 * 1024
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    expected_ir = 3 if name == "initializer_inputs.onnx" else 10
    assert model.ir_version == expected_ir
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if name == "initializer_inputs.onnx":
        feeds = {"data": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    else:
        feeds = _feeds(session, np.random.default_rng(0))
    outputs = session.run(None, feeds)
    assert all(np.all(np.isfinite(o)) for o in outputs)


@pytest.mark.parametrize("name", NAMES)
def test_optimize_sample(name, tmp_path):
    source = SAMPLES / name
    out = tmp_path / "out.onnx"
    result = optimize(source, out, level="O2", force=True)

    assert result.verification is not None
    assert result.verification.status == "passed", result.verification.to_dict()
    assert result.dropped == []
    assert result.after.nodes <= result.before.nodes
    assert out.is_file()
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)

    inputs_before, outputs_before = _io_names(source)
    inputs_after, outputs_after = _io_names(out)
    converted = set(result.converted_initializer_inputs)
    assert inputs_after == [n for n in inputs_before if n not in converted]
    assert outputs_after == outputs_before

    if name == "initializer_inputs.onnx":
        assert result.converted_initializer_inputs, "initializer inputs were not turned into constants"
        assert inputs_after == ["data"]
        # the constant subgraph on the weights folds once they are constants
        assert "Reshape" not in result.after.op_counts and "Mul" not in result.after.op_counts, result.after.op_counts
    else:
        assert result.converted_initializer_inputs == []

    if name == "if_model.onnx":
        assert result.before.op_counts.get("If") == 2
        assert result.after.op_counts.get("If") == 1, result.after.op_counts

    if name == "dynamic_dims.onnx":
        graph = onnx.load(str(out)).graph
        dims = graph.output[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value")
        assert dims[1].dim_value == 4
        for value in graph.input:
            assert [d.dim_param for d in value.type.tensor_type.shape.dim] == ["batch", "seq"]


def test_keep_initializer_inputs(tmp_path):
    source = SAMPLES / "initializer_inputs.onnx"
    out = tmp_path / "out.onnx"
    result = optimize(source, out, level="O2", keep_initializer_inputs=True, force=True)
    assert result.verification.status == "passed", result.verification.to_dict()
    assert result.dropped == []
    assert result.converted_initializer_inputs == []
    assert _io_names(out) == _io_names(source)
    # never fold across a graph input: the Reshape of an overridable weight stays
    assert result.after.op_counts.get("Reshape") == 1, result.after.op_counts


DECOMPOSITIONS = ("ReduceMean", "Sub", "Pow", "Sqrt", "Div", "Erf", "Softmax")


@pytest.mark.parametrize("opset", [13, 17])
def test_o3_leaves_no_transformer_decomposition_and_runs_in_onnxruntime(opset, tmp_path):
    source = tmp_path / "block.onnx"
    onnx.save(build.transformer_block(opset=opset), str(source))
    out = tmp_path / "out.onnx"
    result = optimize(source, out, level="O3", force=True)
    assert result.verification.status == "passed", result.verification.to_dict()
    assert result.dropped == []
    left = {op: n for op, n in result.after.op_counts.items() if op in DECOMPOSITIONS}
    assert left == {}, left
    # a pre-LN block: the residual sums are read twice, so SkipLayerNormalization is declined (slower)
    assert result.introduced_ops == {"com.microsoft:Attention": 1, "com.microsoft:Gelu": 1}
    assert result.after.op_counts.get("LayerNormalization") == 2
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert all(np.all(np.isfinite(o)) for o in session.run(None, _feeds(session, np.random.default_rng(0))))


def test_o2_with_target_opset_leaves_no_layer_norm_or_gelu_decomposition(tmp_path):
    source = tmp_path / "block13.onnx"
    onnx.save(build.transformer_block(opset=13), str(source))
    out = tmp_path / "out.onnx"
    result = optimize(source, out, level="O2", target_opset=20, force=True)
    assert result.verification.status == "passed", result.verification.to_dict()
    assert result.dropped == []
    assert result.after.op_counts.get("LayerNormalization") == 2 and result.after.op_counts.get("Gelu") == 1, result.after.op_counts
    assert not {"ReduceMean", "Sqrt", "Erf", "Pow"} & set(result.after.op_counts)
    assert result.introduced_ops == {}
