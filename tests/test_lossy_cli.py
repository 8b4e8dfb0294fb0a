"""`optimize --quantize/--max-error/--calibration/--prune-*` through click's runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from optimizer.cli import cli
from tests.test_lossy import outlier_mlp, plain_mlp, small_cnn


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("args, words", [
    (["--quantize", "static"], "--quantize static needs calibration data"),
    (["--quantize", "dynamic", "--max-error", "abs=1"], "--max-error 'abs=1'"),
    (["--quantize", "dynamic", "--max-error", "cos=2"], "the cos limit must be"),
    (["--prune-weights", "random:0.5"], "expected magnitude:RATIO"),
    (["--prune-weights", "magnitude:2"], "between 0 and 1"),
    (["--quantize", "static", "--calibration", "missing.npz"], "no such file or folder"),
    (["--quantize", "dynamic", "--no-verify"], "drop --no-verify"),
    (["--prune-outputs", "nope"], "--prune-outputs: "),
])
def test_bad_lossy_options_exit_2_in_one_line_and_write_nothing(tmp_path, args, words):
    model = plain_mlp(tmp_path / "m.onnx")
    before = model.read_bytes()
    result = invoke(model, "-o", tmp_path / "o.onnx", "--no-tune", *args)
    assert result.exit_code == 2, result.output
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.onnx").exists() and model.read_bytes() == before


def test_static_calibration_file_unreadable_exits_2(tmp_path):
    model = small_cnn(tmp_path / "cnn.onnx")
    (tmp_path / "bad.npz").write_text("text")
    result = invoke(model, "-o", tmp_path / "o.onnx", "--no-tune", "--quantize", "static", "--calibration", tmp_path / "bad.npz")
    assert result.exit_code == 2 and "not a readable .npz" in result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_quantize_dynamic_reports_variants_and_errors(tmp_path):
    model = outlier_mlp(tmp_path / "m.onnx")
    result = invoke(model, "-o", tmp_path / "o.onnx", "--no-tune", "--quantize", "dynamic", "--max-error", "rel=0.05")
    assert result.exit_code == 0, result.output
    assert "Lossy variants (error budget rel=0.05" in result.output
    assert "mm_outlier (MatMul" in result.output  # the node left float, with its sensitivity
    assert ("shipping dynamic int8" in result.output) or ("no lossy variant ships" in result.output)


def test_quantize_json_has_the_lossy_section_and_weight_bytes_by_dtype(tmp_path):
    model = small_cnn(tmp_path / "cnn.onnx")
    calibration = tmp_path / "calib.npz"
    np.savez(calibration, x=np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32))
    result = invoke(model, "-o", tmp_path / "o.onnx", "--no-tune", "--quantize", "auto", "--calibration", calibration, "--max-error", "cos=0.99", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    lossy = summary["lossy"]
    assert lossy["budget"] == "cos=0.99"
    methods = {v["method"]: v for v in lossy["variants"]}
    assert methods["dynamic"]["status"] == "skipped" and methods["static"]["status"] in ("kept", "discarded")
    assert methods["static"]["errors"][0]["name"] == "y"
    assert summary["input"]["weight_bytes_by_dtype"] == {"float": (16 * 27 + 16 + 8 * 144 + 8) * 4}


def test_prune_outputs_flag(tmp_path):
    from tests.test_lossy import _save
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"), helper.make_node("Neg", ["x"], ["b"], name="neg")]
    model = _save(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]), helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])], {}, tmp_path / "m.onnx")
    result = invoke(model, "-o", tmp_path / "o.onnx", "--no-tune", "--prune-outputs", "b")
    assert result.exit_code == 0, result.output
    assert "--prune-outputs: removed 1 output(s), 1 node(s)" in result.output


def test_lossy_flags_without_quantize_warn(tmp_path):
    model = plain_mlp(tmp_path / "m.onnx")
    result = invoke(model, "-o", tmp_path / "o.onnx", "--no-tune", "--max-error", "rel=0.1", "--exclude-nodes", "mm1")
    assert result.exit_code == 0
    assert "warning: --max-error, --exclude-nodes have no effect without --quantize" in result.stderr
