"""`optimize compare A B`: error per output, op-count and size diffs, latency in one run."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from optimizer.cli import cli
from optimizer.comparison import LatencyComparison, compare_models, op_count_diff
from optimizer.measure import LatencyStats
from tests.models import save, small_model


def invoke(*args):
    return CliRunner().invoke(cli, ["compare", *[str(a) for a in args]], catch_exceptions=False)


@pytest.fixture
def pair(tmp_path):
    """A: small_model; B: the same function with the Identity gone and the weight pre-scaled, one weight nudged."""
    a = save(small_model(), tmp_path / "a.onnx")
    model = small_model()
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0]) * 2
    weight[0, 0] += 0.05
    del model.graph.node[:]
    model.graph.node.extend([
        onnx.helper.make_node("MatMul", ["x", "w"], ["m"]),
        onnx.helper.make_node("Relu", ["m"], ["y"]),
    ])
    del model.graph.initializer[:]
    model.graph.initializer.append(onnx.numpy_helper.from_array(weight.astype(np.float32), "w"))
    return a, save(model, tmp_path / "b.onnx")


def test_compare_models(pair):
    a, b = pair
    inputs = {"x": np.ones((2, 4), np.float32)}
    body = compare_models(a, b, inputs=inputs, latency=False)
    assert body["a"]["nodes"] == 4 and body["b"]["nodes"] == 2
    (output,) = body["outputs"]
    assert output["name"] == "y"
    assert output["max_abs"] == pytest.approx(0.05, abs=1e-6)  # x = ones: y[:, 0] moves by the 0.05 nudge
    assert 0 < output["rel"] < 0.01
    changed = {row["op"]: row["delta"] for row in body["op_counts"] if row["delta"]}
    assert changed == {"Identity": -1, "Mul": -1}
    assert body["size"]["ratio"] == pytest.approx(body["b"]["file_bytes"] / body["a"]["file_bytes"])
    assert body["latency"] is None


def test_compare_times_both_in_one_run(pair):
    a, b = pair
    body = compare_models(a, b, budget_s=1)
    latency = body["latency"]
    assert {"a", "b", "control", "ratio_median", "ratio_min", "noise", "verdict"} <= set(latency)
    assert latency["ratio_median"] == pytest.approx(latency["b"]["median_ms"] / latency["a"]["median_ms"])
    assert latency["noise"] >= 0.02


def _stats(median: float, minimum: float) -> LatencyStats:
    return LatencyStats(100, 5, minimum, minimum, median, median, median, median, median)


@pytest.mark.parametrize("b_median, b_min, expected", [
    (0.5, 0.5, "B is faster"),
    (2.0, 2.0, "B is slower"),
    (1.01, 0.99, "no difference beyond the noise"),
    (0.5, 1.0, "no difference beyond the noise"),  # median and minimum disagree: no claim
])
def test_latency_verdict_needs_median_and_minimum_to_agree(b_median, b_min, expected):
    comparison = LatencyComparison(_stats(1.0, 1.0), _stats(b_median, b_min), _stats(1.0, 1.0), 0.03, {})
    assert comparison.verdict().startswith(expected)


def test_op_count_diff_orders_changes_first():
    rows = op_count_diff({"Add": 2, "Mul": 1, "Relu": 3}, {"Add": 2, "Relu": 1, "Gelu": 1})
    assert [r["op"] for r in rows] == ["Relu", "Gelu", "Mul", "Add"]
    assert rows[0] == {"op": "Relu", "a": 3, "b": 1, "delta": -2}


def test_cli_compare(pair, tmp_path):
    a, b = pair
    result = invoke(a, b, "--no-latency", "--json", "--report", tmp_path / "cmp.md")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["kind"] == "compare" and document["outputs"][0]["name"] == "y"
    markdown = (tmp_path / "cmp.md").read_text()
    assert "### optimize compare" in markdown and "| y |" in markdown
    text = invoke(a, b, "--budget", "1")
    assert text.exit_code == 0
    assert "A (control copy)" in text.output and "Op counts that differ" in text.output


def test_cli_compare_bad_input(pair, tmp_path):
    a, _ = pair
    other = small_model()
    other.graph.output[0].name = "z"
    other.graph.node[3].output[0] = "z"
    other_path = save(other, tmp_path / "other.onnx")
    for args in ([a, other_path], [a, tmp_path / "missing.onnx"], [a, a, "--report", tmp_path / "r.txt"]):
        result = invoke(*args, "--no-latency")
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
