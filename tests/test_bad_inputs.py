"""Bad input: one line on stderr, exit 2, no traceback, no output file, the input untouched."""

import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from optimizer.cli import cli
from tests.corpus.build import CASES, build as build_corpus
from tests.models import save, small_model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The bad-input corpus (tests/corpus/build.py), built once per run."""
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def _one_line_refusal(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_file(case, corpus, tmp_path):
    path, expected = corpus[case]
    before = open(path, "rb").read() if os.path.exists(path) else None
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(cli, [path, "-o", str(out), "--report", str(tmp_path / "r.json")], catch_exceptions=False)
    _one_line_refusal(result, expected)
    assert not out.exists() and not (tmp_path / "r.json").exists()
    assert not [p for p in tmp_path.rglob(".optimize-*")], "staging files left behind"
    if before is not None:
        assert open(path, "rb").read() == before


@pytest.mark.parametrize(
    "command",
    [["inspect"], ["check", "--max-size", "1GB"], ["compare", "BASELINE", "--no-latency"], ["profile"], ["partition", "--parts", "2", "-o", "PARTS"], ["tune", "--budget", "1"]],
    ids=lambda c: c[0],
)
@pytest.mark.parametrize("case", sorted(set(CASES) - {"huge_declared_input"}))
def test_every_command_refuses_the_corpus(case, command, corpus, tmp_path):
    """The other commands load models the same way: the same one-line refusal, nothing written."""
    path, expected = corpus[case]
    baseline = save(small_model(), tmp_path / "baseline.onnx")
    args = [{"BASELINE": path, "PARTS": str(tmp_path / "parts")}.get(c, c) for c in command]
    if command[0] == "compare":
        args = ["compare", baseline, path, *command[2:]]
    else:
        args = [command[0], path, *command[1:]]
    before = sorted(p.name for p in tmp_path.iterdir())
    beside = sorted(p.name for p in os.scandir(os.path.dirname(path))) if os.path.exists(path) else None
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    _one_line_refusal(result, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if beside is not None:
        assert sorted(p.name for p in os.scandir(os.path.dirname(path))) == beside, "nothing written beside the model"


def test_output_is_input_without_force(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(small_model(), path)
    before = open(path, "rb").read()
    result = CliRunner().invoke(cli, [path, "-o", path])
    assert result.exit_code == 2 and "the output is the input" in result.stderr
    assert open(path, "rb").read() == before


def test_force_overwrites_input_safely(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(small_model(), path)
    result = CliRunner().invoke(cli, [path, "-o", path, "--force", "-q", "--no-tune"])
    assert result.exit_code == 0
    assert len(onnx.load(path).graph.node) == 2


def test_unwritable_output(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(small_model(), path)
    result = CliRunner().invoke(cli, [path, "-o", str(tmp_path / "no" / "such" / "dir.onnx")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_original_failing_on_generated_inputs_asks_for_inputs(tmp_path):
    x = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    table = numpy_helper.from_array(np.ones((3, 2), np.float32), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"])], "g", [x], [y], [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    # ids are generated in [0, 100) then as zeros: zeros work, so this model must verify.
    path = str(tmp_path / "gather.onnx")
    onnx.save(model, path)
    assert CliRunner().invoke(cli, [path, "-o", str(tmp_path / "o.onnx"), "-q", "--no-tune"]).exit_code == 0
    # A Reshape to a fixed size fails for every generated input size except the right one.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [7, 1])
    shape = numpy_helper.from_array(np.array([7, 1], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = str(tmp_path / "reshape.onnx")
    onnx.save(model, path)
    result = CliRunner().invoke(cli, [path, "-o", str(tmp_path / "r.onnx")])
    assert result.exit_code == 2
    assert "ORIGINAL model fails" in result.stderr and "--input-shape" in result.stderr
    assert CliRunner().invoke(cli, [path, "-o", str(tmp_path / "r.onnx"), "--input-shape", "x=7", "-q"]).exit_code == 0
