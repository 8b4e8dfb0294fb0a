"""Large-model handling on small models: external data (mixed with embedded tensors, in two files) is
optimized and written correctly, loading reads no weights, reading a weight keeps nothing mapped, and
declared sizes that would exhaust memory are refused before anything runs.

The 2 GB benchmark itself is bench/large_model_bench.py (bench/results/2026-11-22-large-model.md).
"""

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from optimizer import io
from optimizer.api import optimize
from optimizer.cli import cli
from optimizer.verify import VerificationInputError, check_value_sizes
from tests.models import save, small_model

WIDTH = 64


def _external(name: str, array: np.ndarray, folder: Path, location: str, offset: int) -> onnx.TensorProto:
    """A TensorProto whose data is written at `offset` of `folder/location`."""
    path = folder / location
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "r+b" if path.exists() else "wb") as handle:
        handle.seek(offset)
        handle.write(array.tobytes())
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(array.shape), data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(array.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def mixed_model(folder: Path) -> Path:
    """x[2,64] -> Identity -> MatMul(W1, external a.bin) + b1 -> Relu -> MatMul(W2, external weights/b.bin at an
    offset) + b2 -> Relu -> MatMul(W3, embedded) * (s1*s2, folded) + c (a Constant node whose value is external,
    in weights/b.bin too) -> y; b1, b2, s1, s2 embedded."""
    rng = np.random.default_rng(0)
    weight = lambda: (rng.standard_normal((WIDTH, WIDTH)) / 8).astype(np.float32)  # noqa: E731
    constant = _external("c_value", rng.standard_normal((2, WIDTH)).astype(np.float32), folder, "weights/b.bin", 64)
    initializers = [
        _external("W1", weight(), folder, "a.bin", 0),
        _external("W2", weight(), folder, "weights/b.bin", 4096 + 12),  # not page-aligned, second file, subfolder
        numpy_helper.from_array(weight(), "W3"),
        numpy_helper.from_array(rng.standard_normal(WIDTH).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal(WIDTH).astype(np.float32), "b2"),
        numpy_helper.from_array(np.full(WIDTH, 0.5, np.float32), "s1"),
        numpy_helper.from_array(np.full(WIDTH, 3.0, np.float32), "s2"),
    ]
    nodes = [
        helper.make_node("Identity", ["x"], ["xi"]),
        helper.make_node("MatMul", ["xi", "W1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h1"]),
        helper.make_node("MatMul", ["h1", "W2"], ["m2"]),
        helper.make_node("Add", ["m2", "b2"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W3"], ["m3"]),
        helper.make_node("Mul", ["s1", "s2"], ["s"]),
        helper.make_node("Mul", ["m3", "s"], ["p"]),
        helper.make_node("Constant", [], ["c"], value=constant),
        helper.make_node("Add", ["p", "c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, WIDTH])], initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _outputs(path: Path) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(7).standard_normal((2, WIDTH)).astype(np.float32)
    return session.run(None, {"x": x})[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _external_locations(path: Path) -> dict[str, str]:
    proto = onnx.load_model(str(path), load_external_data=False)
    return {
        t.name: next(e.value for e in t.external_data if e.key == "location")
        for t in proto.graph.initializer
        if t.data_location == TensorProto.EXTERNAL
    }


def test_mixed_model_optimizes_to_an_embedded_model(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    path = mixed_model(source)
    before = _files(source)
    out = tmp_path / "out" / "o.onnx"
    out.parent.mkdir()
    result = optimize(path, out)
    assert result.verification.passed
    assert result.after.op_counts.get("Gemm") == 2 and "Identity" not in result.after.op_counts
    assert result.external_data_path is None
    assert sorted(p.name for p in out.parent.iterdir()) == ["o.onnx"]
    assert _external_locations(out) == {}
    np.testing.assert_allclose(_outputs(out), _outputs(path), rtol=1e-5, atol=1e-5)
    assert _files(source) == before  # the input and both of its data files untouched


def test_mixed_model_with_external_data_flag(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    path = mixed_model(source)
    before = _files(source)
    out = tmp_path / "o.onnx"
    result = CliRunner().invoke(cli, [str(path), "-o", str(out), "--external-data", "--no-tune", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no checker objection to the Constant's external value either
    assert (tmp_path / "o.onnx.data").is_file()
    locations = _external_locations(out)
    assert {"W1", "W2", "W3"} <= set(locations) and set(locations.values()) == {"o.onnx.data"}
    np.testing.assert_allclose(_outputs(out), _outputs(path), rtol=1e-5, atol=1e-5)
    assert _files(source) == before
    # and the written model reads back through the same path
    reloaded = optimize(out, tmp_path / "again.onnx", external_data=True)
    assert reloaded.verification.passed


def test_loading_reads_no_external_data(tmp_path):
    path = mixed_model(tmp_path)
    model = io.load(path)
    external = [v.const_value for v in model.graph.initializers.values() if isinstance(v.const_value, ir.ExternalTensor)]
    assert sorted(t.name for t in external) == ["W1", "W2"]
    assert all(isinstance(t, io.MappedExternalTensor) and t.raw is None for t in external)
    assert io.weight_bytes_by_dtype(model) == {"float": 3 * WIDTH * WIDTH * 4 + 4 * WIDTH * 4}
    assert all(t.raw is None for t in external)  # sizes come from shapes, not data


def test_reading_a_weight_maps_only_its_bytes_and_keeps_nothing(tmp_path):
    path = mixed_model(tmp_path)
    model = io.load(path)
    tensor = model.graph.initializers["W2"].const_value
    array = tensor.numpy()
    expected = np.frombuffer((tmp_path / "weights" / "b.bin").read_bytes()[4096 + 12:], np.float32).reshape(WIDTH, WIDTH)
    np.testing.assert_array_equal(array, expected)
    assert not array.flags.writeable
    mapping = array.base
    while not hasattr(mapping, "close") and getattr(mapping, "obj", None) is not None:
        mapping = mapping.obj  # memoryview -> mmap
    assert len(mapping) < WIDTH * WIDTH * 4 + 8192, "the mapping covers the tensor's pages, not the whole file"
    assert tensor.raw is None  # nothing cached on the tensor: dropping the array unmaps it
    assert tensor.tobytes() == expected.tobytes() and tensor.raw is None
    np.testing.assert_array_equal(np.asarray(tensor), expected)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from /proc")
def test_huge_sparse_external_weight_loads_without_reading_it(tmp_path):
    """A 4 GiB weight in a sparse file (no disk used): loading and sizing it read nothing."""
    dims = [1024, 1024, 1024]
    nbytes = 4 * 1024**3
    with open(tmp_path / "w.bin", "wb") as handle:
        handle.truncate(nbytes)
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, tmp_path / "m.onnx")

    def rss() -> int:
        with open("/proc/self/status", encoding="ascii") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))

    start = rss()
    loaded = io.load(tmp_path / "m.onnx")
    assert io.weight_bytes_by_dtype(loaded) == {"float": nbytes}
    assert io.model_file_bytes(loaded, tmp_path / "m.onnx") > nbytes
    assert rss() - start < 256 * 1024**2  # reading the weight would add 4 GiB
    assert loaded.graph.initializers["w"].const_value.raw is None


@pytest.mark.skipif(not hasattr(os, "link"), reason="needs hard links")
def test_hard_linked_external_data_is_refused_in_one_line(tmp_path):
    """onnx-ir will not read a data file with other hard links: refused at load (exit 2), not a crash later."""
    path = mixed_model(tmp_path)
    os.link(tmp_path / "a.bin", tmp_path / "copy.bin")
    result = CliRunner().invoke(cli, [str(path), "-o", str(tmp_path / "o.onnx"), "--no-tune"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {path}: external data file 'a.bin' for tensor 'W1' has other hard links; refused (use a copy of it)"]


# -- declared sizes that would exhaust memory: refused, one line, exit 2, nothing attempted -------------


def _graph_model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(initializers)), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


HUGE = [100000, 100000, 1000]  # 36 TiB of float32


def _huge_input():
    return _graph_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, HUGE)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, HUGE)],
    ), [], "generated inputs would take 36.4 TiB (input 'x' is [100000, 100000, 1000])"


def _huge_dynamic_input():
    model = small_model()
    return model, ["--input-shape", "x=100000000000,4"], "generated inputs would take"


def _constant_of_shape(through_constant_node: bool):
    def build():
        shape = numpy_helper.from_array(np.array(HUGE, np.int64), "shape")
        nodes = [helper.make_node("ConstantOfShape", ["shape"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])]
        if through_constant_node:
            nodes.insert(0, helper.make_node("Constant", [], ["shape"], value=shape))
        model = _graph_model(
            nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, HUGE)],
            [] if through_constant_node else [shape],
        )
        return model, [], "value 'c' (output of ConstantOfShape) would take 36.4 TiB"

    return build


def _declared_initializer(as_constant_node: bool):
    def build():
        tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=HUGE)
        nodes = [helper.make_node("Add", ["x", "w"], ["y"])]
        if as_constant_node:
            nodes.insert(0, helper.make_node("Constant", [], ["w"], value=tensor))
        model = _graph_model(
            nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, HUGE)],
            [] if as_constant_node else [tensor],
        )
        return model, [], "tensor 'w' declares shape [100000, 100000, 1000] but holds 0 values"

    return build


ABSURD = {
    "graph_input": _huge_input,
    "bound_dynamic_input": _huge_dynamic_input,
    "constant_of_shape_initializer": _constant_of_shape(False),
    "constant_of_shape_constant_node": _constant_of_shape(True),
    "initializer": _declared_initializer(False),
    "constant_node": _declared_initializer(True),
}


@pytest.mark.parametrize("case", sorted(ABSURD))
def test_absurd_declared_sizes_are_refused_in_one_line(case, tmp_path):
    model, extra, expected = ABSURD[case]()
    path = save(model, tmp_path / "m.onnx")
    out = tmp_path / "o.onnx"
    result = CliRunner().invoke(cli, [path, "-o", str(out), "--no-tune", *extra], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() and not [p for p in tmp_path.rglob(".optimize-*")]


def test_value_size_check_is_against_the_limit(tmp_path):
    """A value over the limit is refused; the same model under a larger limit is not."""
    model, _, _ = _constant_of_shape(False)()
    path = save(model, tmp_path / "m.onnx")
    loaded = io.load(path, validate=False)
    with pytest.raises(VerificationInputError, match="value 'c'"):
        check_value_sizes(loaded, limit=1024**3)
    check_value_sizes(loaded, limit=1 << 50)
    small = io.load(save(small_model(), tmp_path / "s.onnx"))
    check_value_sizes(small, limit=1024)  # dynamic dims: nothing static to refuse


def test_embedded_output_over_protobufs_limit_is_refused(tmp_path):
    """--no-external-data on 2.1 GiB of weights (a sparse file: no disk used, nothing read): exit 2, nothing written."""
    nbytes = 2 * 1024**3 + 64 * 1024**2
    with open(tmp_path / "w.bin", "wb") as handle:
        handle.truncate(nbytes)
    dims = [nbytes // 4 // 32768, 32768]  # 2-D: onnx's data propagation holds an entry per element of 1-D values
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims, data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    model = _graph_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], [tensor],
    )
    path = save(model, tmp_path / "m.onnx")
    out = tmp_path / "o.onnx"
    result = CliRunner().invoke(cli, [path, "-o", str(out), "--no-external-data", "--no-verify", "--no-tune", "--passes", "eliminate-dead-code"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "more than the 2 GiB one ONNX file can hold" in lines[0], result.stderr
    assert not out.exists() and not [p for p in tmp_path.rglob(".optimize-*")]


def test_value_size_check_leaves_the_model_as_it_was(tmp_path):
    """onnx-ir's helper for onnx's C API re-adds large initializers last: the check puts them back (determinism)."""
    model = io.load(mixed_model(tmp_path))
    before = ir.serde.serialize_model(model).SerializeToString()
    check_value_sizes(model, limit=1 << 50)
    assert ir.serde.serialize_model(model).SerializeToString() == before


def test_shape_inference_of_a_long_1d_value_stays_small():
    """onnx's data propagation would hold ~140 bytes per element of a 10M-element bias (1.4 GB):
    the passes' shape inference must run it without, under a 1 GiB address-space cap."""
    script = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import numpy as np, onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper
from optimizer.graph.shapes import infer_shapes
n = 10_000_000
bias = numpy_helper.from_array(np.ones(n, np.float32), "b")
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])], "g", [x], [y], [bias])
model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
infer_shapes(model)
print(list(model.graph.outputs[0].shape))
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1000:]
    assert done.stdout.strip() == "[10000000]"


def test_result_model_reads_the_published_weights_after_an_in_place_run(tmp_path):
    """After `-o IN --force` with external data, the returned model reads the new data file's layout."""
    rng = np.random.default_rng(0)
    arrays = {name: rng.random((64, 64), dtype=np.float32) for name in ("unused", "w", "w2")}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(a, n) for n, a in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path / "f.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="f.onnx.data", size_threshold=0)
    result = optimize(path, path, force=True, external_data=True, tune=False)
    for name in ("w", "w2"):
        assert np.array_equal(result.model.graph.initializers[name].const_value.numpy(), arrays[name]), name
