"""`optimize check`: each gate passes and fails on real measurements; exit codes 0 / 1 / 2."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from optimizer import gates
from optimizer.cli import cli
from optimizer.error_budget import ErrorBudget
from tests.models import save, small_model


def invoke(*args):
    return CliRunner().invoke(cli, ["check", *[str(a) for a in args]], catch_exceptions=False)


@pytest.fixture
def model_path(tmp_path):
    return save(small_model(), tmp_path / "m.onnx")


def _scaled(tmp_path, factor: float, name: str) -> str:
    """small_model with its weight scaled: same interface, outputs off by `factor`."""
    model = small_model()
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0]) * factor
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weight.astype(np.float32), "w"))
    return save(model, tmp_path / name)


@pytest.mark.parametrize("text, expected", [
    ("50MB", 50 * 1024**2), ("1.5GiB", int(1.5 * 1024**3)), ("200k", 200 * 1024), ("1048576", 1048576), ("12 kb", 12288),
])
def test_parse_size(text, expected):
    assert gates.parse_size(text) == expected


@pytest.mark.parametrize("text", ["abc", "5XB", "-1MB", "", "9" * 400])
def test_parse_size_refuses(text):
    with pytest.raises(gates.GateInputError, match="--max-size"):
        gates.parse_size(text)


def test_parse_ratio():
    assert gates.parse_ratio("5%", "--max-regression") == pytest.approx(0.05)
    assert gates.parse_ratio("0.1", "--max-regression") == pytest.approx(0.1)
    for bad in ("-5%", "five", "nan"):
        with pytest.raises(gates.GateInputError):
            gates.parse_ratio(bad, "--max-regression")


def test_static_gates_pass_and_fail(model_path):
    result = gates.run_check(model_path, gates.CheckOptions(max_size=10_000, max_params=17, require_ops=["MatMul"], forbid_ops=["Conv"]))
    assert [g.gate for g in result.gates] == ["size", "params", "require-op", "forbid-op"]
    assert result.passed
    assert result.gates[1].measured == 17  # 4x4 weight + the scalar two
    failing = gates.run_check(model_path, gates.CheckOptions(max_size=100, max_params=16, require_ops=["Conv"], forbid_ops=["Relu"]))
    assert [g.passed for g in failing.gates] == [False, False, False, False]
    assert not failing.passed


def test_ops_match_with_or_without_domain():
    counts = {"com.microsoft:Attention": 2, "MatMul": 3}
    assert gates._op_present(counts, "Attention") == 2
    assert gates._op_present(counts, "com.microsoft:Attention") == 2
    assert gates._op_present(counts, "ai.onnx.ml:Attention") == 0
    assert gates._op_present(counts, "MatMul") == 3
    assert gates._op_present(counts, "ai.onnx:MatMul") == gates._op_present(counts, ":MatMul") == 3


def test_latency_gate_reports_the_noise_margin(model_path):
    generous = gates.run_check(model_path, gates.CheckOptions(max_latency_ms=1000.0, budget_s=1))
    gate = generous.gates[0]
    assert gate.gate == "latency" and gate.passed
    assert "noise margin" in gate.detail
    assert generous.latency["noise"] >= 0.02
    impossible = gates.run_check(model_path, gates.CheckOptions(max_latency_ms=1e-6, budget_s=1))
    assert not impossible.gates[0].passed


def test_error_gate_against_baseline(model_path, tmp_path):
    close = _scaled(tmp_path, 1.001, "close.onnx")
    far = _scaled(tmp_path, 1.5, "far.onnx")
    budget = ErrorBudget.parse(["rel=0.01"])
    ok = gates.run_check(close, gates.CheckOptions(baseline=model_path, error_budget=budget))
    assert [g.gate for g in ok.gates] == ["outputs", "error"] and ok.passed
    assert ok.errors[0]["rel"] == pytest.approx(0.001, rel=0.05)
    bad = gates.run_check(far, gates.CheckOptions(baseline=model_path, error_budget=budget))
    assert not bad.passed
    assert "rel error" in bad.gates[1].detail


def test_regression_gates_time_both_models_in_one_run(model_path, tmp_path):
    same = _scaled(tmp_path, 1.0, "same.onnx")
    result = gates.run_check(same, gates.CheckOptions(baseline=model_path, max_regression=0.5, budget_s=1))
    names = [g.gate for g in result.gates]
    assert names == ["regression-size", "outputs", "regression-latency"]
    assert result.passed  # the same graph: neither larger nor slower beyond 50% + noise
    assert {"model", "baseline", "control", "noise"} <= set(result.latency)


def test_size_regression_fails_for_a_bigger_model(model_path, tmp_path):
    model = small_model()
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(4096, np.float32), "unused_padding"))
    bigger = save(model, tmp_path / "bigger.onnx")
    result = gates.run_check(bigger, gates.CheckOptions(baseline=model_path, max_regression=0.05, budget_s=1))
    size_gate = result.gates[0]
    assert size_gate.gate == "regression-size" and not size_gate.passed


@pytest.mark.parametrize("options, message", [
    (gates.CheckOptions(), "no gate given"),
    (gates.CheckOptions(max_regression=0.05), "add --baseline"),
    (gates.CheckOptions(error_budget=ErrorBudget.parse([])), "add --baseline"),
    (gates.CheckOptions(baseline="x.onnx", max_size=1), "add one of them"),
    (gates.CheckOptions(max_latency_ms=0.0), "must be positive"),
])
def test_options_refused(options, message):
    with pytest.raises(gates.GateInputError, match=message):
        options.validate()


def test_cli_exit_codes(model_path, tmp_path):
    passing = invoke(model_path, "--max-size", "1MB", "--require-op", "MatMul")
    assert passing.exit_code == 0, passing.output
    assert "all 2 gate(s) pass" in passing.output
    failing = invoke(model_path, "--max-size", "10", "--forbid-op", "Relu")
    assert failing.exit_code == 1
    assert "2 of 2 gate(s) failed" in failing.output
    for args in (["--max-size", "lots"], [], ["--max-error", "rel=0.1"], ["--max-regression", "5%", "--baseline", tmp_path / "nope.onnx"]):
        bad = invoke(model_path, *args)
        assert bad.exit_code == 2, (args, bad.output)
        assert "Traceback" not in bad.output and len(bad.output.strip().splitlines()) == 1


def test_cli_bad_model_is_bad_input(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    result = invoke(junk, "--max-size", "1MB")
    assert result.exit_code == 2
    assert "not an ONNX model" in result.output


def test_cli_incompatible_baseline_is_bad_input(model_path, tmp_path):
    other = small_model()
    other.graph.input[0].name = "z"
    other.graph.node[1].input[0] = "z"
    other_path = save(other, tmp_path / "other.onnx")
    result = invoke(model_path, "--baseline", other_path, "--max-error", "rel=0.1")
    assert result.exit_code == 2
    assert "different inputs" in result.output


def test_cli_json_and_reports(model_path, tmp_path):
    result = invoke(model_path, "--max-params", "5", "--json", "--report", tmp_path / "gates.md", "--report", tmp_path / "gates.json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["kind"] == "check" and document["passed"] is False
    assert document["gates"][0]["gate"] == "params" and document["gates"][0]["measured"] == 17
    assert json.loads((tmp_path / "gates.json").read_text())["gates"] == document["gates"]
    markdown = (tmp_path / "gates.md").read_text()
    assert "❌ 1 of 1 gates failed" in markdown and "| params |" in markdown


def test_cli_quiet_prints_only_failures(model_path):
    result = invoke(model_path, "--max-size", "1MB", "--max-params", "5", "-q")
    assert result.exit_code == 1
    assert "params" in result.output and "size" not in result.output.split("gate(s)")[0].replace("params", "")


def _two_outputs(tmp_path, name: str, keep_second: bool = True) -> str:
    """small_model with a second output z = Relu's input, optionally left out."""
    model = small_model()
    if keep_second:
        model.graph.output.append(onnx.helper.make_tensor_value_info("m", onnx.TensorProto.FLOAT, ["N", 4]))
    return save(model, tmp_path / name)


def test_a_baseline_output_the_model_lacks_fails(tmp_path):
    baseline = _two_outputs(tmp_path, "base.onnx")
    dropped = _two_outputs(tmp_path, "dropped.onnx", keep_second=False)
    result = gates.run_check(dropped, gates.CheckOptions(baseline=baseline, error_budget=ErrorBudget.parse(["rel=0.01"])))
    outputs = next(g for g in result.gates if g.gate == "outputs")
    assert not outputs.passed and outputs.detail == "missing: m"
    assert not result.passed


def test_an_error_limit_that_applies_to_no_output_fails(model_path, tmp_path):
    model = small_model()
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[1].dim_value = 1
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(np.ones((1, 1), np.float32), "w"))
    narrow = save(model, tmp_path / "narrow.onnx")
    result = gates.run_check(narrow, gates.CheckOptions(baseline=narrow, error_budget=ErrorBudget.parse(["top1=0.99"])))
    error = next(g for g in result.gates if g.gate == "error")
    assert not error.passed and "applies to none of the outputs" in error.detail


def test_ops_inside_model_local_functions_count(tmp_path):
    function = onnx.helper.make_function("local", "MyFn", ["a"], ["b"], [onnx.helper.make_node("Relu", ["a"], ["b"])], [onnx.helper.make_opsetid("", 17)])
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    graph = onnx.helper.make_graph([onnx.helper.make_node("MyFn", ["x"], ["y"], domain="local")], "g", [x], [y])
    model = onnx.helper.make_model(graph, functions=[function], opset_imports=[onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("local", 1)])
    model.ir_version = 10
    path = save(model, tmp_path / "fn.onnx")
    result = gates.run_check(path, gates.CheckOptions(forbid_ops=["Relu"], require_ops=["local:MyFn"]))
    assert [g.passed for g in result.gates] == [True, False]


def test_a_baseline_with_other_input_dtype_is_bad_input(model_path, tmp_path):
    model = small_model()
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    other = save(model, tmp_path / "double.onnx")
    result = invoke(model_path, "--baseline", other, "--max-error", "rel=0.1")
    assert result.exit_code == 2
    assert "input 'x' differs: double" in result.output


def test_a_report_cannot_overwrite_the_model_or_its_settings(model_path, tmp_path):
    baseline = save(small_model(), tmp_path / "base.onnx")
    for target in (model_path + ".json", baseline + ".json"):
        result = invoke(model_path, "--baseline", baseline, "--max-regression", "5%", "--report", target)
        assert result.exit_code == 2 and "would overwrite" in result.output, result.output
    assert onnx.load(model_path).graph.node, "the model is intact"
