"""Hostile input beyond malformed files: control characters, inflating inputs, runs that do not end,
settings files that lie, values too large to compute (issue 19)."""

import io as text_io
import json
import os
import time
import zipfile

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from optimizer import io, verify
from optimizer.cli import cli
from optimizer.runtime import RunTimeoutError, run_interruptibly
from optimizer.sanitize import SanitizingConsole, sanitize_line, sanitize_markdown, sanitize_text
from tests.models import save, small_model

HOSTILE = "a\x1b[2Jb\x1b]0;title\x07c\x1b]8;;https://evil.example\x1b\\link\x00\u202e\u2066\u200b\x85\u2028\rz"
RAW = ("\x1b", "\x00", "\x07", "\u202e", "\u2066", "\u200b", "\x85", "\u2028", "\r")


def _raw_controls(text: str) -> list[str]:
    return [char for char in RAW if char in text]


def loop_model(trips: int = 10**15) -> onnx.ModelProto:
    """x -> Loop(trips) { v + v } -> y: runs as long as its trip count says."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cin"], ["cout"]), helper.make_node("Add", ["v", "v"], ["v2"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cin", TensorProto.BOOL, []), helper.make_tensor_value_info("v", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("cout", TensorProto.BOOL, []), helper.make_tensor_value_info("v2", TensorProto.FLOAT, [4])],
    )
    trips_tensor = numpy_helper.from_array(np.array(trips, np.int64), "trips")
    cond = numpy_helper.from_array(np.array(True), "cond")
    graph = helper.make_graph([helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)], "loop", [x], [y], [trips_tensor, cond])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


# -- sanitizing --------------------------------------------------------------------------------


def test_sanitize_text_escapes_every_unsafe_character_visibly():
    clean = sanitize_text(HOSTILE)
    assert _raw_controls(clean) == []
    for escape in ("\\x1b[2J", "\\x1b]0;", "\\x00", "\\u202e", "\\u2066", "\\u200b", "\\x85", "\\u2028", "\\x0d"):
        assert escape in clean
    assert sanitize_text("plain name/with:ascii 1.0\n\tok") == "plain name/with:ascii 1.0\n\tok"
    assert sanitize_text("ünïcødé 名前") == "ünïcødé 名前"
    assert "\n" not in sanitize_line("one\ntwo") and sanitize_line("one\ntwo") == "one\\ntwo"


def test_sanitize_markdown_stops_pings_references_and_autolinks():
    text = sanitize_markdown("ask @maintainer about #123 at https://evil.example or www.evil.example\x1b")
    assert "@maintainer" not in text and "#123" not in text
    assert "https://" not in text and "www.evil" not in text and "\x1b" not in text
    assert sanitize_markdown("a@b and C#") == "a@b and C#"


def test_sanitizing_console_escapes_text_in_tables_and_keeps_styles():
    from rich.table import Table

    buffer = text_io.StringIO()
    console = SanitizingConsole(file=buffer, force_terminal=True, width=200, highlight=False)
    table = Table("name")
    table.add_row(HOSTILE)
    console.print(f"[bold]{HOSTILE}[/bold]")
    console.print(table)
    written = buffer.getvalue()
    assert "\x1b[1m" in written, "rich's own styling stays"
    assert "\x1b[2J" not in written and "\x1b]" not in written and _raw_controls(written.replace("\x1b[", "")) == []
    assert "\\u202e" in written and "\\x1b]8;;" in written


def _hostile_model(tmp_path) -> str:
    model = small_model()
    model.graph.node[1].name = HOSTILE
    model.graph.doc_string = HOSTILE
    model.graph.node[2].op_type = "NoSuchOp" + HOSTILE  # the one-line error names it
    return save(model, tmp_path / "hostile.onnx")


def test_hostile_names_never_reach_the_terminal_raw(tmp_path):
    good = small_model()
    good.graph.node[1].name = HOSTILE
    good.graph.node[2].name = "\r\x1b]0;pwned\x07"
    path = save(good, tmp_path / "names.onnx")
    for args in (["inspect", path, "-v"], [path, "-o", str(tmp_path / "o.onnx"), "--no-tune", "-v"]):
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert _raw_controls(result.stdout) == [] and _raw_controls(result.stderr) == []
    bad = _hostile_model(tmp_path)
    result = CliRunner().invoke(cli, ["inspect", bad], catch_exceptions=False)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, "a CR or line separator does not split the error"
    assert _raw_controls(result.stderr) == []
    assert "\\x1b" in result.stderr


def test_json_stays_exact(tmp_path):
    model = small_model()
    for index, node in enumerate(model.graph.node):
        node.name = f"{HOSTILE}{index}"
    path = save(model, tmp_path / "names.onnx")
    result = CliRunner().invoke(cli, ["inspect", path, "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    assert _raw_controls(result.stdout) == [], "JSON escapes them itself"

    def strings(value):
        if isinstance(value, dict):
            return [s for item in value.values() for s in strings(item)]
        if isinstance(value, list):
            return [s for item in value for s in strings(item)]
        return [value] if isinstance(value, str) else []

    assert f"{HOSTILE}3" in strings(json.loads(result.stdout)), "the names are exact, not sanitized"


# -- inputs that inflate -------------------------------------------------------------------------


def _npz_with_header(path, name: str, shape: tuple, dtype: str = "<f4", data: bytes = b"\0" * 16) -> str:
    """An .npz whose member declares `shape` but holds only `data` (what a zip bomb's header says)."""
    header = text_io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.npy", header.getvalue() + data)  # the header writer writes the magic too
    return str(path)


def test_npz_headers_are_read_without_the_data(tmp_path):
    path = tmp_path / "x.npz"
    np.savez_compressed(path, x=np.ones((2, 4), np.float32), ids=np.arange(3))
    headers = verify.read_npz_headers(path)
    assert headers["x"] == verify.ArrayHeader((2, 4), np.dtype(np.float32)) and headers["ids"].shape == (3,)
    inputs = verify.load_inputs(path)
    assert inputs._arrays == {}, "nothing decompressed yet"
    assert inputs["x"].shape == (2, 4) and sorted(inputs) == ["ids", "x"]


def test_npz_declaring_more_than_memory_is_refused_before_loading(tmp_path):
    path = _npz_with_header(tmp_path / "bomb.npz", "x", (10**12,))
    started = time.monotonic()
    with pytest.raises(verify.VerificationInputError, match="nothing was loaded"):
        verify.load_inputs(path)
    assert time.monotonic() - started < 5
    with pytest.raises(verify.VerificationInputError, match="over the 1000 B limit|over the"):
        verify.load_inputs(path, max_bytes=1000)


def test_npz_the_model_cannot_take_is_refused_from_its_header(tmp_path):
    model = save(small_model(), tmp_path / "m.onnx")
    wrong_dims = tmp_path / "dims.npz"
    np.savez(wrong_dims, x=np.ones((2, 5), np.float32))
    result = CliRunner().invoke(cli, [model, "-o", str(tmp_path / "o.onnx"), "--inputs", str(wrong_dims), "--no-tune"], catch_exceptions=False)
    assert result.exit_code == 2 and "'x' is [2, 5], the model declares" in result.stderr
    bomb = _npz_with_header(tmp_path / "bomb.npz", "x", (10**9, 4))
    result = CliRunner().invoke(cli, [model, "-o", str(tmp_path / "o.onnx"), "--inputs", bomb, "--no-tune"], catch_exceptions=False)
    assert result.exit_code == 2 and "nothing was" in result.stderr
    assert not (tmp_path / "o.onnx").exists()
    pickled = tmp_path / "objects.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(verify.VerificationInputError, match="never unpickled"):
        verify.load_inputs(pickled)


# -- values too large, blamed on the model ---------------------------------------------------------


def test_value_sizes_follow_from_the_given_inputs_shapes(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["x", "axes"], ["col"]), helper.make_node("Add", ["col", "x"], ["y"])], "outer", [x], [y],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = save(model, tmp_path / "outer.onnx")
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.ones(400_000, np.float32))  # [400000, 1] + [400000] -> 640 GB
    result = CliRunner().invoke(cli, [path, "-o", str(tmp_path / "o.onnx"), "--inputs", str(inputs), "--no-tune"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "the model cannot run here" in result.stderr and "given" not in result.stderr


def test_cannot_run_names_the_side_at_fault(tmp_path):
    verifier = verify.Verifier(save(small_model(), tmp_path / "m.onnx"), io.load(tmp_path / "m.onnx"))
    memory = verifier._cannot_run(RuntimeError("std::bad_alloc"), "generated inputs")
    assert "cannot run on generated inputs: onnxruntime ran out of memory" in str(memory)
    timeout = verifier._cannot_run(RunTimeoutError("slow"), "generated inputs")
    assert "does not finish on generated inputs" in str(timeout) and timeout.option == "run_timeout"


# -- work that cannot be stopped -------------------------------------------------------------------


def test_a_run_past_its_time_limit_is_stopped(tmp_path):
    import onnxruntime as ort

    path = save(loop_model(), tmp_path / "loop.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    started = time.monotonic()
    with pytest.raises(RunTimeoutError):
        run_interruptibly(session, None, {"x": np.ones(4, np.float32)}, timeout_s=0.5)
    assert time.monotonic() - started < 5
    assert run_interruptibly(ort.InferenceSession(save(small_model(), tmp_path / "m.onnx")), None, {"x": np.ones((1, 4), np.float32)})[0].shape == (1, 4)


def test_run_timeout_flag_ends_a_loop_bomb(tmp_path):
    path = save(loop_model(), tmp_path / "loop.onnx")
    started = time.monotonic()
    result = CliRunner().invoke(cli, [path, "-o", str(tmp_path / "o.onnx"), "--no-tune", "--run-timeout", "1"], catch_exceptions=False)
    assert result.exit_code == 2 and "does not finish on generated inputs within 1 s" in result.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "o.onnx").exists()


def test_dead_runs_scratch_folders_are_swept(tmp_path):
    dead = tmp_path / f"optimize-run-{2**22 + 12345}-work-abc"
    alive = tmp_path / f"optimize-run-{os.getpid()}-work-def"
    other = tmp_path / "optimize-something-else"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "f").write_text("x")
    assert io.sweep_scratch_folders(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()
    with io.scratch_folder("test") as folder:
        assert folder.is_dir() and folder.name.startswith(f"optimize-run-{os.getpid()}-test-")
    assert not folder.exists()


# -- settings files are input too -------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"session_options": {"intra_op_num_threads": 100000}}, "more than the"),
        ({"providers": ["EvilExecutionProvider"], "provider_options": [{}]}, "no onnxruntime build knows it"),
        ({"provider_options": [{"x": {"nested": 1}}]}, "must be a short string"),
        ({"session_config_entries": {"evil.key": "1"}}, "not an onnxruntime session setting"),
        ({"concurrent_requests": 10**9}, "concurrent_requests"),
    ],
    ids=["threads", "provider", "option-type", "config-entry", "streams"],
)
def test_settings_file_fields_are_validated_before_use(settings, fragment, tmp_path):
    path = save(small_model(), tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text(json.dumps({"schema_version": 1, **settings}))
    result = CliRunner().invoke(cli, ["profile", path], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_profile_of_a_model_without_nodes_is_not_an_internal_error(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    model = helper.make_model(helper.make_graph([], "empty", [x], [x]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    result = CliRunner().invoke(cli, ["profile", save(model, tmp_path / "empty.onnx")], catch_exceptions=False)
    assert result.exit_code == 2 and "ran no kernels" in result.stderr


def test_log_records_are_sanitized():
    import logging

    from optimizer.sanitize import SanitizingFormatter

    record = logging.LogRecord("optimizer.io", logging.WARNING, __file__, 1, "model %s objects", (HOSTILE,), None)
    assert _raw_controls(SanitizingFormatter("%(levelname)s %(message)s").format(record)) == []


def test_generated_feeds_handed_on_are_not_blamed_on_the_user(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [7, 1])
    shape = numpy_helper.from_array(np.array([7, 1], np.int64), "shape")
    model = helper.make_model(helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g", [x], [y], [shape]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = save(model, tmp_path / "reshape.onnx")
    feeds = verify.Feeds({"x": np.ones(3, np.float32)}, "generated (random; x=[3])")
    with pytest.raises(verify.VerificationInputError) as error:
        verify.Verifier(path, io.load(path), inputs=feeds)
    assert "on generated (random; x=[3])" in str(error.value) and "inputs" not in str(error.value).split("(random")[0].replace("generated", "")
    good = verify.Verifier(path, io.load(path), inputs=verify.Feeds({"x": np.ones(7, np.float32)}, "generated (zeros; x=[7])"))
    assert good.inputs_source == "generated (zeros; x=[7])" and good.feeds.source == good.inputs_source
