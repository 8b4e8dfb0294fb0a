"""`--fix-shape`: static dims written into the model, checked against the original, folded through."""

import json
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner

from optimizer.cli import cli
from optimizer.fix_shape import FixShapeError, fix_input_shapes, parse_fixed_shapes, write_fixed_model

DYNAMIC = Path(__file__).resolve().parent.parent / "sample_models" / "dynamic_dims.onnx"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_parse():
    assert parse_fixed_shapes(["tokens=2,8", "x=1"]) == {"tokens": (2, 8), "x": (1,)}
    for bad in ("tokens", "tokens=2,a", "tokens=0,8", "=2"):
        with pytest.raises(FixShapeError, match="expected NAME=D1,D2"):
            parse_fixed_shapes([bad])


def test_fix_writes_inputs_and_outputs_and_drops_inferred_shapes():
    model = ir.load(DYNAMIC)
    old = fix_input_shapes(model, {"tokens": (2, 8), "mask": (2, 8)})
    assert old == {"tokens": "[batch, seq]", "mask": "[batch, seq]"}
    assert [list(v.shape) for v in model.graph.inputs] == [[2, 8], [2, 8]]
    assert list(model.graph.outputs[0].shape) == [2, 4]
    assert all(v.shape is None for node in model.graph for v in node.outputs if v not in model.graph.outputs)


@pytest.mark.parametrize("shapes, message", [
    ({"nope": (1,)}, "names no graph input: nope"),
    ({"tokens": (2, 8, 1)}, "3 dims, but the model declares rank 2"),
    ({"tokens": (2, 8), "mask": (3, 8)}, "dim 'batch' is 2 in one input and 3 in another"),
])
def test_fix_refuses(shapes, message):
    with pytest.raises(FixShapeError, match=message):
        fix_input_shapes(ir.load(DYNAMIC), shapes)


def test_fix_refuses_a_contradicted_static_dim(tmp_path):
    from tests.models import save, small_model

    model = small_model()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 4
    path = save(model, tmp_path / "m.onnx")
    with pytest.raises(FixShapeError, match="dim 1 is 4 in the model, not 5"):
        fix_input_shapes(ir.load(path), {"x": (1, 5)})


def test_written_copy_is_checked_against_the_original(tmp_path):
    fixed, lines = write_fixed_model(DYNAMIC, {"tokens": (2, 8), "mask": (2, 8)}, tmp_path)
    assert lines == ["tokens [batch, seq] -> [2, 8]", "mask [batch, seq] -> [2, 8]"]
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in onnx.load(fixed).graph.input]
    assert dims == [[2, 8], [2, 8]]


def test_run_fix_shape_folds_the_shape_arithmetic(tmp_path):
    plain = json.loads(invoke("run", DYNAMIC, "-o", tmp_path / "plain.onnx", "--no-tune", "--json").stdout)
    result = invoke("run", DYNAMIC, "-o", tmp_path / "fixed.onnx", "--no-tune", "--json", "--fix-shape", "tokens=2,8", "--fix-shape", "mask=2,8")
    assert result.exit_code == 0, result.output
    fixed = json.loads(result.stdout)
    assert fixed["verification"]["status"] == "passed"
    assert fixed["output"]["nodes"] < plain["output"]["nodes"]
    assert "Shape" not in fixed["output"]["op_counts"]
    assert fixed["input"]["path"] == str(DYNAMIC)
    before, after = fixed["summary"]["models"]
    assert before["inputs"][0]["shape"] == ["batch", "seq"] and after["inputs"][0]["shape"] == [2, 8]
    assert any("--fix-shape made dims static: tokens [batch, seq] -> [2, 8]" in w for w in fixed["warnings"])
    written = onnx.load(tmp_path / "fixed.onnx")
    assert [d.dim_value for d in written.graph.input[0].type.tensor_type.shape.dim] == [2, 8]


def test_run_fix_shape_bad_input_is_one_line(tmp_path):
    result = invoke("run", DYNAMIC, "-o", tmp_path / "o.onnx", "--no-tune", "--fix-shape", "tokens=2,8", "--input-shape", "tokens=2,8")
    assert result.exit_code == 2 and "--fix-shape and --input-shape both set tokens" in result.output
    result = invoke("run", DYNAMIC, "-o", tmp_path / "o.onnx", "--no-tune", "--fix-shape", "token=2,8")
    assert result.exit_code == 2 and "names no graph input: token (inputs: tokens, mask)" in result.output
