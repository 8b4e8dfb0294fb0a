"""optimize(): pipeline to a fixed point, verification, bisection to the pass that broke a model."""

import collections

import numpy as np
import onnx
import onnx_ir as ir
import pytest

import passes
from optimizer.api import VerificationFailedError, optimize
from optimizer.pipeline import OptimizationPass
from tests.models import save, small_model


class BreakReluPass(OptimizationPass):
    """A deliberately wrong rewrite: Relu -> Sigmoid."""

    name = "break-relu"
    description = "test only"

    def apply(self, model):
        count = 0
        for node in model.graph:
            if node.op_type == "Relu":
                node.op_type = "Sigmoid"
                count += 1
        return collections.Counter(Relu=count)


class CrashPass(OptimizationPass):
    name = "crash"
    description = "test only"

    def apply(self, model):
        raise ValueError("boom")


@pytest.fixture
def model_path(tmp_path):
    return save(small_model(), tmp_path / "m.onnx")


def test_optimizes_verifies_and_writes(model_path, tmp_path):
    out = tmp_path / "o.onnx"
    result = optimize(model_path, out)
    assert result.verification.status == "passed"
    assert out.exists()
    assert result.before.op_counts == {"Identity": 1, "MatMul": 1, "Mul": 1, "Relu": 1}
    assert result.after.op_counts == {"MatMul": 1, "Relu": 1}
    written = onnx.load(out)
    assert [i.name for i in written.graph.input] == ["x"]
    assert written.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert result.to_dict()["schema_version"] == 2


def test_in_memory_model_and_no_output(model_path):
    result = optimize(ir.load(model_path))
    assert result.output_path is None and result.verification.passed
    assert result.after.nodes == 2


def test_second_run_changes_nothing(model_path, tmp_path):
    first = tmp_path / "a.onnx"
    second = tmp_path / "b.onnx"
    optimize(model_path, first)
    result = optimize(first, second)
    assert all(not r.modified for r in result.records)
    assert first.read_bytes() == second.read_bytes()


def test_deterministic_output(model_path, tmp_path):
    optimize(model_path, tmp_path / "a.onnx")
    optimize(model_path, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_bisects_and_drops_breaking_pass(model_path, tmp_path, monkeypatch):
    monkeypatch.setitem(passes.REGISTRY, BreakReluPass.name, BreakReluPass)
    result = optimize(model_path, tmp_path / "o.onnx", passes=["fold-constants", "break-relu", "eliminate-no-ops"])
    assert [d.name for d in result.dropped] == ["break-relu"]
    assert result.verification.passed
    assert "Sigmoid" not in result.after.op_counts
    assert any("break-relu" in w for w in result.warnings)


def test_strict_fails_naming_the_pass(model_path, tmp_path, monkeypatch):
    monkeypatch.setitem(passes.REGISTRY, BreakReluPass.name, BreakReluPass)
    with pytest.raises(VerificationFailedError, match="break-relu"):
        optimize(model_path, tmp_path / "o.onnx", passes=["break-relu", "eliminate-no-ops"], strict=True)
    assert not (tmp_path / "o.onnx").exists()


def test_crashing_pass_is_dropped_and_named(model_path, tmp_path, monkeypatch):
    monkeypatch.setitem(passes.REGISTRY, CrashPass.name, CrashPass)
    result = optimize(model_path, tmp_path / "o.onnx", passes=["crash", "eliminate-no-ops"])
    assert result.dropped[0].name == "crash" and "boom" in result.dropped[0].reason
    assert result.verification.passed


def test_given_inputs_are_used(model_path, tmp_path):
    inputs = {"x": np.ones((3, 4), np.float32)}
    result = optimize(model_path, tmp_path / "o.onnx", inputs=inputs)
    assert result.verification.inputs_source == "--inputs"


def test_input_shape_binds_dynamic_dims(model_path, tmp_path):
    result = optimize(model_path, tmp_path / "o.onnx", input_shapes={"x": (5, 4)})
    assert "x=[5, 4]" in result.verification.inputs_source


def test_external_data_round_trip(model_path, tmp_path):
    out = tmp_path / "o.onnx"
    result = optimize(model_path, out, external_data=True)
    assert result.external_data_path == tmp_path / "o.onnx.data"
    assert (tmp_path / "o.onnx.data").exists()
    assert optimize(out, tmp_path / "again.onnx").verification.passed


def test_keep_initializer_inputs(tmp_path):
    model = small_model(ir_version=3, opset=9)
    model.graph.input.extend(
        [
            onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [4, 4]),
            onnx.helper.make_tensor_value_info("two", onnx.TensorProto.FLOAT, [1]),
        ]
    )
    path = save(model, tmp_path / "old.onnx")
    converted = optimize(path, tmp_path / "a.onnx")
    assert converted.converted_initializer_inputs == ["w", "two"]
    kept = optimize(path, tmp_path / "b.onnx", keep_initializer_inputs=True)
    assert kept.converted_initializer_inputs == []
    assert [i.name for i in onnx.load(tmp_path / "b.onnx").graph.input] == ["x", "w", "two"]
    assert kept.verification.passed and converted.verification.passed
    assert "Mul" in kept.after.op_counts  # W*2 reads an overridable input: never folded
    assert "Mul" not in converted.after.op_counts
