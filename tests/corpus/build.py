"""The bad-input corpus: files `optimize` must refuse with one line and exit 2.

    python -m tests.corpus.build DIR      # writes DIR/<case>/m.onnx (+ neighbours) and DIR/manifest.json

Each case is a function `case_<name>(folder) -> (path, expected)`: it writes its file(s) into its own
folder and returns the model path and a fragment the one-line error must contain. The tests
(tests/test_bad_inputs.py) build the corpus into a temporary folder and run every command on it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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


def _rewired(edits: list[tuple[int, str, int, str]], expected: str):
    """A case: the small model with node inputs/outputs renamed, `(node, "input"|"output", position, new name)`."""

    def case(folder):
        model = small_model()
        for node, field, position, name in edits:
            getattr(model.graph.node[node], field)[position] = name
        return _write(folder, "m.onnx", model), expected

    return case


case_undefined_value = _rewired([(2, "input", 0, "nowhere")], "invalid ONNX model")
case_duplicate_names = _rewired([(1, "output", 0, "w2"), (2, "input", 0, "w2")], "invalid ONNX model")
case_cycle = _rewired([(1, "input", 0, "m")], "invalid ONNX model")


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


def case_huge_declared_input(folder):
    model = small_model()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value = 1 << 40
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1 << 40
    return _write(folder, "m.onnx", model), "generated inputs would take"


def case_subgraph_undefined_value(folder):
    model = small_model()
    branch = helper.make_graph([helper.make_node("Identity", ["nowhere"], ["b"])], "branch", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)])
    cond = numpy_helper.from_array(np.array(True), "cond")
    model.graph.initializer.append(cond)
    model.graph.node.append(helper.make_node("If", ["cond"], ["unused"], then_branch=branch, else_branch=branch))
    return _write(folder, "m.onnx", model), "invalid ONNX model"


def case_no_graph(folder):
    model = onnx.ModelProto()
    model.ir_version = 8
    model.opset_import.add().version = 17
    return _write(folder, "m.onnx", model), "no graph"


def case_location_twice(folder):
    (folder / "weights.bin").write_bytes(bytes(64))
    (folder.parent / "secret.txt").write_bytes(bytes(64))
    model = _external_model(folder, "../secret.txt")
    entry = model.graph.initializer[0].external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    return _write(folder, "m.onnx", model), "declares external data key 'location' twice"


def case_location_nul_byte(folder):
    return _write(folder, "m.onnx", _external_model(folder, "weights\x00.bin")), "NUL"


def case_string_tensor_lies(folder):
    model = small_model()
    tensor = helper.make_tensor("s", TensorProto.STRING, [1], [b"a"])
    tensor.dims[:] = [10**9]
    model.graph.initializer.append(tensor)
    model.graph.node.append(helper.make_node("Identity", ["s"], ["s_out"]))
    model.graph.output.append(helper.make_tensor_value_info("s_out", TensorProto.STRING, ["S"]))
    return _write(folder, "m.onnx", model), "holds 1 values"


def case_undefined_elem_type(folder):
    model = small_model()
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.UNDEFINED
    return _write(folder, "m.onnx", model), "UNDEFINED"


def case_unknown_tensor_type(folder):
    model = small_model()
    model.graph.initializer[1].data_type = 99
    return _write(folder, "m.onnx", model), "element type 99, not an ONNX element type"


def case_initializer_input_dtype(folder):
    model = small_model()
    model.graph.input.append(helper.make_tensor_value_info("two", TensorProto.INT64, [1]))
    return _write(folder, "m.onnx", model), "type"


def case_value_info_contradicts(folder):
    model = small_model()
    model.graph.value_info.append(helper.make_tensor_value_info("m", TensorProto.INT64, ["N", 4]))
    return _write(folder, "m.onnx", model), "type"


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (tag, length, payload): messages too deep for protobuf to build."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def case_nested_ifs(folder):
    model = small_model()
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    out = helper.make_tensor_value_info("b", TensorProto.FLOAT, None)
    leaf = helper.make_graph([helper.make_node("Identity", ["two"], ["b"])], "leaf", [], [out])
    body = leaf.SerializeToString()
    for depth in range(500):  # NodeProto.attribute = 5, AttributeProto.g = 6, GraphProto.node = 1
        node = helper.make_node("If", ["cond"], ["b" if depth < 499 else "deep"], else_branch=leaf).SerializeToString()
        then = onnx.AttributeProto(name="then_branch", type=onnx.AttributeProto.GRAPH).SerializeToString() + _field(6, body)
        node += _field(5, then)
        body = helper.make_graph([], f"level{depth}", [], [out]).SerializeToString() + _field(1, node)
    data = model.SerializeToString() + _field(7, _field(1, node))  # ModelProto.graph = 7: merged into the graph
    return _write(folder, "m.onnx", data), "nested too deeply"


def case_invalid_utf8_name(folder):
    model = small_model()
    model.graph.node[1].name = "NAMEMARK"
    data = model.SerializeToString().replace(b"NAMEMARK", b"NAME\xff\xfeRK")
    return _write(folder, "m.onnx", data), "not valid UTF-8"


def case_sparse_huge_dense(folder):
    model = small_model()
    values = numpy_helper.from_array(np.ones(1, np.float32), "big")
    indices = numpy_helper.from_array(np.zeros(1, np.int64), "big_indices")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [10**6, 10**6]))
    return _write(folder, "m.onnx", model), "sparse initializer 'big'"


def case_attribute_reference_outside_function(folder):
    model = small_model()
    attr = helper.make_attribute("alpha", 1.0)
    attr.ref_attr_name = "alpha"
    model.graph.node[3].attribute.append(attr)
    return _write(folder, "m.onnx", model), "outside any function"


CASES = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}


def build(root: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """Write every case under `root/<case>/`; {case: (model path, expected error fragment)}."""
    root = Path(root)
    built = {}
    for name in sorted(CASES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        built[name] = CASES[name](folder)
    (root / "manifest.json").write_text(json.dumps({k: {"path": p, "expected": e} for k, (p, e) in built.items()}, indent=2) + "\n")
    return built


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.corpus.build DIR")
    for case, (path, expected) in build(sys.argv[1]).items():
        print(f"{case:28} {path}  (expects: {expected})")
