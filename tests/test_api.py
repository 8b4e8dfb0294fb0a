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


# -- stage boundaries ----------------------------------------------------------------------------


def _pipeline_stage(model_path, tmp_path, *, verify=True, strict=False):
    from optimizer import io
    from optimizer.options import VerifyOptions
    from optimizer.stages.pipeline import PipelineStage
    from optimizer.stages.reference import load_reference, make_verifier

    reference = load_reference(model_path, tmp_path, None, None)
    verifier = make_verifier(VerifyOptions(enabled=verify), reference, [])
    staging = io.StagingArea(tmp_path, "o.onnx", None)
    make = lambda names: [passes.REGISTRY[name]() for name in names]  # noqa: E731
    return PipelineStage(reference.load_fresh, make, verifier, staging, strict=strict), staging


def test_pipeline_stage_bisects_drops_and_returns_the_pass_typed(model_path, tmp_path, monkeypatch):
    from optimizer.result import DroppedPass
    from optimizer.stages.pipeline import PipelineOutcome

    monkeypatch.setitem(passes.REGISTRY, BreakReluPass.name, BreakReluPass)
    stage, staging = _pipeline_stage(model_path, tmp_path)
    try:
        outcome = stage.run(["fold-constants", "break-relu", "eliminate-no-ops"])
        assert isinstance(outcome, PipelineOutcome)
        assert outcome.dropped == [DroppedPass("break-relu", outcome.dropped[0].reason)]
        assert "outputs differ" in outcome.dropped[0].reason
        assert outcome.dropped_notes == [f"dropped pass 'break-relu': with it the optimized model's {outcome.dropped[0].reason}"]
        assert outcome.verification.passed and outcome.notes == []
        assert "Sigmoid" not in {node.op_type for node in outcome.attempt.model.graph}
        assert outcome.staged.exists() and outcome.staged.parent.parent == tmp_path
    finally:
        staging.close()
    assert not outcome.staged.exists()


def test_pipeline_stage_under_strict_raises_naming_the_pass(model_path, tmp_path, monkeypatch):
    monkeypatch.setitem(passes.REGISTRY, BreakReluPass.name, BreakReluPass)
    stage, staging = _pipeline_stage(model_path, tmp_path, strict=True)
    with pytest.raises(VerificationFailedError, match="pass 'break-relu' is responsible") as error:
        stage.run(["break-relu"])
    assert error.value.verification.status == "failed"
    staging.close()


def test_pipeline_stage_drops_a_crashing_pass_with_its_error(model_path, tmp_path, monkeypatch):
    monkeypatch.setitem(passes.REGISTRY, CrashPass.name, CrashPass)
    stage, staging = _pipeline_stage(model_path, tmp_path, verify=False)
    outcome = stage.run(["crash", "eliminate-no-ops"])
    staging.close()
    assert [d.name for d in outcome.dropped] == ["crash"] and outcome.verification is None
    assert outcome.dropped_notes[0].startswith("dropped pass 'crash': it raised an error (") and "boom" in outcome.dropped_notes[0]


def test_options_object_and_keywords_give_the_same_run(model_path, tmp_path):
    from optimizer.options import OptimizeOptions, PassSelection

    by_keywords = optimize(model_path, tmp_path / "a.onnx", level="O1", skip_passes=["fold-constants"])
    options = OptimizeOptions(passes=PassSelection(level="O1", skip_passes=("fold-constants",)))
    by_options = optimize(model_path, tmp_path / "b.onnx", options=options)
    assert by_options.passes == by_keywords.passes and "fold-constants" not in by_options.passes
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert OptimizeOptions.from_keywords(tmp_path / "a.onnx", level="O1", skip_passes=["fold-constants"]).passes == options.passes
    with pytest.raises(TypeError, match="not both"):
        optimize(model_path, options=options, level="O2")
    with pytest.raises(TypeError):
        optimize(model_path, levle="O2")


def test_a_lower_level_ships_with_its_own_records_and_dropped_passes(model_path, tmp_path):
    """The shipping decision is one typed choice: the winner's records, verification and dropped passes come with it."""
    from optimizer import io
    from optimizer.result import DroppedPass
    from optimizer.stages.variants import Variant, ship_tuned

    model = ir.load(model_path)
    staging = io.StagingArea(tmp_path, "o.onnx", None)
    lossless = Variant("O2", model, staging.stage(model), [], [], None, [], [])
    lower = Variant("O1", ir.load(model_path), None, [], ["w"], None, [DroppedPass("p", "why")], ["dropped pass 'p': why"])
    warnings: list[str] = []
    shipped = ship_tuned("O1", lossless, lossless, {"O1": lower}, None, staging, model_path, warnings)
    assert shipped.label == "O1" and shipped.dropped == [DroppedPass("p", "why")] and shipped.dropped_notes == ["dropped pass 'p': why"]
    assert shipped.converted == ["w"] and shipped.staged.exists() and not lossless.staged.exists()
    assert ship_tuned("O1", shipped, lossless, {"O1": lower}, None, staging, model_path, warnings) is shipped
    original = ship_tuned("original", shipped, lossless, {}, None, staging, model_path, warnings)
    assert original.label == "original" and original.records == [] and original.staged.exists() and not shipped.staged.exists()
    assert warnings == []
    staging.close()
    assert not original.staged.exists()


def test_library_errors_name_options_not_flags(model_path, tmp_path):
    from optimizer import io
    from optimizer.verify import VerificationInputError

    with pytest.raises(VerificationInputError) as error:
        optimize(model_path, tmp_path / "o.onnx", inputs={"x": np.zeros((1, 4), np.float32)}, batch=2)
    assert str(error.value) == "batch applies to generated inputs; with inputs, the arrays set the batch"
    assert error.value.option == "batch"
    (tmp_path / "o.onnx").write_bytes(b"")
    with pytest.raises(io.ModelInputError) as error:
        optimize(model_path, tmp_path / "o.onnx")
    assert str(error.value).endswith("exists; pass force to overwrite it") and error.value.option == "force"
    assert error.value.render({"force": "--force"}).endswith("exists; pass --force to overwrite it")
    with pytest.raises(VerificationInputError) as error:
        optimize(model_path, tmp_path / "p.onnx", inputs={"y": np.zeros((1, 4), np.float32)})
    assert "--" not in str(error.value) and error.value.option == "inputs"
