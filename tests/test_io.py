"""io: the streaming writer produces the model ir.save would; staging and publishing are atomic."""

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from optimizer import io
from tests.models import small_model


def _model_with_big_weight() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])
    big = numpy_helper.from_array(np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32), "big")
    small = numpy_helper.from_array(np.ones(256, np.float32), "small")
    nodes = [helper.make_node("MatMul", ["x", "big"], ["m"]), helper.make_node("Add", ["m", "small"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [big, small]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def test_streamed_file_matches_ir_save(tmp_path):
    onnx.save(_model_with_big_weight(), tmp_path / "m.onnx")
    model = io.load(tmp_path / "m.onnx")
    io.save(model, tmp_path / "streamed.onnx")
    ir.save(model, tmp_path / "reference.onnx")
    streamed, reference = onnx.load(tmp_path / "streamed.onnx"), onnx.load(tmp_path / "reference.onnx")
    onnx.checker.check_model(streamed)
    assert sorted(t.SerializeToString() for t in streamed.graph.initializer) == sorted(t.SerializeToString() for t in reference.graph.initializer)
    assert list(streamed.graph.node) == list(reference.graph.node)
    assert list(streamed.graph.input) == list(reference.graph.input) and list(streamed.graph.output) == list(reference.graph.output)
    assert streamed.opset_import == reference.opset_import and streamed.ir_version == reference.ir_version
    assert len(model.graph.initializers) == 2  # the model is left as it was


def test_stage_and_discard_leave_nothing(tmp_path):
    onnx.save(_model_with_big_weight(), tmp_path / "m.onnx")
    staged = io.stage(io.load(tmp_path / "m.onnx"), tmp_path, "out.onnx")
    assert staged.exists() and staged.parent.name.startswith(".optimize-")
    io.discard(staged)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_staging_area_publishes_the_model_with_its_companion_and_discards_the_rest(tmp_path):
    from optimizer.io import StagingArea

    model = ir.from_proto(small_model())
    area = StagingArea(tmp_path, "o.onnx", None)
    kept, dropped = area.stage(model), area.stage(model)
    settings = tmp_path / ".settings.tmp"
    settings.write_text("{}")
    assert area.publish(kept, tmp_path / "o.onnx", companions={settings: tmp_path / "o.onnx.json"}) is None
    assert (tmp_path / "o.onnx").exists() and (tmp_path / "o.onnx.json").read_text() == "{}" and not settings.exists()
    assert dropped.exists()
    area.close()
    assert not dropped.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["o.onnx", "o.onnx.json"]
