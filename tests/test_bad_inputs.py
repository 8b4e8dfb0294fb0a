"""Bad input: one line on stderr, exit 2, no traceback, no output file, the input untouched."""

import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from optimizer.cli import cli
from tests.models import small_model


def _external_model(folder, location: str) -> onnx.ModelProto:
    model = small_model()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


def _write(folder, name, content) -> str:
    path = folder / name
    if isinstance(content, onnx.ModelProto):
        path.write_bytes(content.SerializeToString())
    else:
        path.write_bytes(content)
    return str(path)


def case_missing(folder):
    return str(folder / "nope.onnx"), "no such file"


def case_zero_bytes(folder):
    return _write(folder, "m.onnx", b""), "empty file"


def case_random_bytes(folder):
    return _write(folder, "m.onnx", np.random.default_rng(0).bytes(4096)), "not an ONNX model"


def case_text(folder):
    return _write(folder, "m.onnx", b"this is not a model\n" * 20), "not an ONNX model"


def case_truncated(folder):
    data = small_model().SerializeToString()
    return _write(folder, "m.onnx", data[: len(data) // 2]), "not an ONNX model"


def case_protobuf_not_a_model(folder):
    tensor = numpy_helper.from_array(np.ones(8, np.float32), "t")
    return _write(folder, "m.onnx", tensor.SerializeToString()), "not an ONNX model"


def case_undefined_value(folder):
    model = small_model()
    model.graph.node[2].input[0] = "nowhere"
    return _write(folder, "m.onnx", model), "invalid ONNX model"


def case_duplicate_names(folder):
    model = small_model()
    model.graph.node[1].output[0] = "w2"
    model.graph.node[2].input[0] = "w2"
    return _write(folder, "m.onnx", model), "invalid ONNX model"


def case_cycle(folder):
    model = small_model()
    model.graph.node[1].input[0] = "m"
    return _write(folder, "m.onnx", model), "invalid ONNX model"


def case_unknown_default_op(folder):
    model = small_model()
    model.graph.node[3].op_type = "NoSuchOp"
    return _write(folder, "m.onnx", model), "invalid ONNX model"


def case_ir_too_new(folder):
    model = small_model()
    model.ir_version = 99
    return _write(folder, "m.onnx", model), "IR version 99 is newer"


def case_opset_too_new(folder):
    model = small_model()
    model.opset_import[0].version = 99
    return _write(folder, "m.onnx", model), "opset 99 is newer"


def case_mismatched_initializer(folder):
    model = small_model()
    model.graph.initializer[0].dims[:] = [8, 8]
    return _write(folder, "m.onnx", model), "shape [8, 8]"


def case_external_missing(folder):
    return _write(folder, "m.onnx", _external_model(folder, "weights.bin")), "is missing"


def case_external_absolute(folder):
    (folder / "weights.bin").write_bytes(bytes(64))
    return _write(folder, "m.onnx", _external_model(folder, str(folder / "weights.bin"))), "outside the model's folder"


def case_external_dotdot(folder):
    (folder.parent / "weights.bin").write_bytes(bytes(64))
    return _write(folder, "m.onnx", _external_model(folder, "../weights.bin")), "outside the model's folder"


def case_external_symlink(folder):
    outside = folder.parent / "secret.bin"
    outside.write_bytes(bytes(64))
    os.symlink(outside, folder / "weights.bin")
    return _write(folder, "m.onnx", _external_model(folder, "weights.bin")), "symlink"


def case_external_too_short(folder):
    (folder / "weights.bin").write_bytes(bytes(10))
    return _write(folder, "m.onnx", _external_model(folder, "weights.bin")), "too short"


CASES = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_model_file(case, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    path, expected = CASES[case](folder)
    before = open(path, "rb").read() if os.path.exists(path) else None
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(cli, [path, "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.rglob(".optimize-*")], "staging files left behind"
    if before is not None:
        assert open(path, "rb").read() == before


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
