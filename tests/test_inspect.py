"""`optimize inspect`: interface, composition, the cost model and parallelism, as tables and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer.cli import cli
from optimizer.inspection import inspect_model

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_json_has_the_keys_other_tools_read():
    result = invoke("inspect", SAMPLES / "inception_block.onnx", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    analysis = summary["analysis"]
    assert analysis["work_flops"] > analysis["span_flops"] > 0
    assert analysis["parallelism"] == pytest.approx(analysis["work_flops"] / analysis["span_flops"])
    (region,) = analysis["regions"]
    assert len(region["branches"]) == 4 and all({"nodes", "flops"} <= set(b) for b in region["branches"])
    assert sum(b["flops"] for b in region["branches"]) <= analysis["work_flops"]
    model = summary["model"]
    assert model["op_counts"]["Conv"] == 7 and model["nodes"] == 15
    assert model["weight_bytes_by_dtype"] == {"float": model["parameters"] * 4}
    assert model["inputs"] == [{"name": "x", "dtype": "float", "shape": [1, 16, 16, 16], "dynamic": False}]


def test_dynamic_dims_are_shown_and_bound_by_input_shape():
    free = inspect_model(SAMPLES / "dynamic_dims.onnx")
    assert free.inputs[0]["shape"] == ["batch", "seq"] and free.inputs[0]["dynamic"]
    bound = inspect_model(SAMPLES / "dynamic_dims.onnx", {"tokens": (4, 32), "mask": (4, 32)})
    small = inspect_model(SAMPLES / "dynamic_dims.onnx", {"tokens": (1, 32), "mask": (1, 32)})
    assert bound.analysis.work_flops == pytest.approx(4 * small.analysis.work_flops, rel=0.01)
    assert bound.to_dict()["input_shapes"] == {"tokens": [4, 32], "mask": [4, 32]}


def test_a_chain_has_parallelism_one_and_no_regions():
    result = inspect_model(SAMPLES / "cnn_bn.onnx")
    assert result.analysis.parallelism == pytest.approx(1.0)
    assert result.analysis.regions == []
    text = invoke("inspect", SAMPLES / "cnn_bn.onnx").output
    assert "parallel regions: none" in text and "average parallelism 1.00" in text


def test_terminal_report_lists_costs_path_and_regions():
    text = invoke("inspect", SAMPLES / "inception_block.onnx").output
    for words in ("Inputs and outputs", "Cost by op type", "critical path:", "Parallel regions", "could give at most 1.76x"):
        assert words in text
    assert "Most expensive nodes" in invoke("inspect", SAMPLES / "inception_block.onnx", "-v").output


@pytest.mark.parametrize("args, words", [
    (["--input-shape", "nope=1,2"], "names no graph input: nope"),
    (["--input-shape", "x=a,b"], "dims must be integers"),
])
def test_bad_shapes_exit_2(args, words):
    result = invoke("inspect", SAMPLES / "inception_block.onnx", *args)
    assert result.exit_code == 2 and words in result.stderr


def test_bad_file_exits_2_in_one_line(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    result = invoke("inspect", tmp_path / "bad.onnx")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
