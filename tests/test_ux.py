"""What users of onnxslim, polygraphy and onnxsim expect (issue 20): the summary, readable numbers,
whole names in piped output, saved inputs and error statistics, provenance, and one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optimizer.cli import cli
from tests.models import save, small_model

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


@pytest.fixture
def model_path(tmp_path):
    return save(small_model(), tmp_path / "m.onnx")


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, env=env)


# -- the summary -----------------------------------------------------------------------------------


def test_run_summary_in_every_format(tmp_path):
    out, md, html = tmp_path / "o.onnx", tmp_path / "r.md", tmp_path / "r.html"
    result = invoke("run", SAMPLES / "cnn_bn.onnx", "-o", out, "--no-tune", "--report", md, "--report", html, "--no-profile")
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.index("Summary") < text.index("Passes")
    for expected in ("input image", "float [batch, 3, 32, 32]", "output logits", "IR version", "ai.onnx 17", "BatchNormalization", "elapsed"):
        assert expected in text
    document = json.loads(invoke("run", SAMPLES / "cnn_bn.onnx", "-o", tmp_path / "j.onnx", "--no-tune", "--json").stdout)
    before, after = document["summary"]["models"]
    assert (before["label"], after["label"]) == ("before", "after")
    assert before["inputs"] == [{"name": "image", "dtype": "float", "shape": ["batch", 3, 32, 32], "dynamic": True}]
    assert before["op_counts"]["BatchNormalization"] == 2 and "BatchNormalization" not in after["op_counts"]
    assert sum(before["op_counts"].values()) == before["nodes"] and after["ir_version"] == 10
    assert document["summary"]["seconds"] > 0
    for page in (md.read_text(), html.read_text()):
        assert "BatchNormalization" in page and "image" in page and "batch, 3, 32, 32" in page and "Summary" in page


def test_check_and_compare_summaries(model_path, tmp_path):
    checked = json.loads(invoke("check", model_path, "--max-params", "100", "--json").stdout)
    assert [m["label"] for m in checked["summary"]["models"]] == ["model"]
    assert checked["summary"]["models"][0]["op_counts"] == checked["model"]["op_counts"]
    compared = json.loads(invoke("compare", model_path, model_path, "--no-latency", "--json").stdout)
    assert [m["label"] for m in compared["summary"]["models"]] == ["A", "B"]
    text = invoke("compare", model_path, model_path, "--no-latency").output
    assert "Summary" in text and "input x" in text


# -- whole names, readable numbers -------------------------------------------------------------------


def test_piped_output_keeps_whole_names(tmp_path):
    result = invoke("run", SAMPLES / "initializer_inputs.onnx", "-o", tmp_path / "o.onnx", "--no-tune", env={"COLUMNS": ""})
    assert result.exit_code == 0, result.output
    assert "initializer-inputs-to-constants" in result.output and "…" not in result.output and "..." not in result.output
    narrow = invoke("run", SAMPLES / "initializer_inputs.onnx", "-o", tmp_path / "n.onnx", "--no-tune", env={"COLUMNS": "60"})
    rows = [line for line in narrow.output.splitlines() if line[:1] in "┏┃┡│└"]
    assert "…" not in narrow.output and rows and max(len(line) for line in rows) <= 60


def test_pass_descriptions_are_whole_when_piped():
    from passes import REGISTRY

    text = invoke("passes", env={"COLUMNS": ""}).output
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for cls in REGISTRY.values():
        assert any(" ".join(cls.description.split()) in line for line in lines), cls.name


def test_pass_table_on_a_terminal_folds_instead_of_cutting():
    import io

    from rich.console import Console

    from optimizer.report import render_pass_list

    stream = io.StringIO()
    render_pass_list([("initializer-inputs-to-constants", "O1", "Turn graph inputs that have an initializer into constants.")],
                     Console(file=stream, force_terminal=True, width=40, color_system=None))
    text = stream.getvalue()
    assert "…" not in text and "constants." in text and max(len(line) for line in text.splitlines()) <= 40


def test_change_from_zero_is_readable():
    from optimizer.units import format_against, format_bytes, format_change, format_relative_change

    assert format_change(0, 85017600, format_bytes) == "+81.1 MB"
    assert format_change(0, 42508800.0) == "+42,508,800"
    assert format_change(0, 1.5) == "+1.50"
    assert format_relative_change(0, 85017600, format_bytes) == "+81.1 MB" and format_relative_change(0, 3) == "+3"
    assert format_against(0.999698, 0.99999) == "0.999698" and format_against(0.5, 0.01) == "0.5"


def test_weights_of_a_new_dtype_read_as_sizes_in_html_and_markdown():
    from optimizer.reports import render
    from tests.test_report_html import optimize_document

    document = optimize_document()
    document["input"]["weight_bytes_by_dtype"] = {}
    document["output"]["weight_bytes_by_dtype"] = {"int8": 42508800}
    document["input"]["file_bytes"] = 0
    html, markdown = render(document, ".html"), render(document, ".md")
    assert "e+07" not in html and "+40.5 MB" in html
    assert "+4250" not in markdown


def _noisy(tmp_path, name: str, scale: float) -> str:
    """small_model with noise added to its weight: outputs close to, not equal to, the original's."""
    import onnx

    model = small_model()
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0])
    noise = np.random.default_rng(0).standard_normal(weight.shape).astype(np.float32) * scale
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array((weight + noise).astype(np.float32), "w"))
    return save(model, tmp_path / name)


def test_check_prints_the_measured_cosine(model_path, tmp_path):
    candidate = _noisy(tmp_path, "noisy.onnx", 0.02)
    result = invoke("check", candidate, "--baseline", model_path, "--max-error", "cos=0.9999999", "--json")
    gate = next(g for g in json.loads(result.stdout)["gates"] if g["gate"] == "error")
    assert not gate["passed"]
    text = gate["detail"]
    assert text.startswith("cosine 0.99") and "< 1e-07" not in text and "cosine 1 " not in text


def test_one_unused_flag_has_no_effect(model_path, tmp_path):
    result = CliRunner().invoke(cli, ["run", model_path, "-o", str(tmp_path / "o.onnx"), "--no-tune", "--max-error", "rel=0.1"])
    assert "--max-error has no effect without --quantize" in result.output


# -- saved inputs and error statistics -------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ("run", "{model}", "-o", "{tmp}/o.onnx", "--no-tune"),
    ("check", "{model}", "--baseline", "{model}", "--max-error", "rel=0.5"),
    ("compare", "{model}", "{model}", "--no-latency"),
    ("profile", "{model}", "--runs", "2"),
    ("tune", "{model}", "-o", "{tmp}/t.json", "--budget", "1"),
])
def test_save_inputs_on_every_command_that_runs_models(command, tmp_path):
    model = SAMPLES / "cnn_bn.onnx"
    saved = tmp_path / "inputs.npz"
    args = [part.format(model=model, tmp=tmp_path) for part in command]
    result = invoke(*args, "--save-inputs", saved, "-q")
    assert result.exit_code == 0, result.output
    with np.load(saved) as data:
        assert list(data.files) == ["image"] and data["image"].shape == (1, 3, 32, 32) and data["image"].dtype == np.float32
    if command[0] in ("tune", "profile"):
        saved.unlink()
        assert f"inputs saved to {saved}" in invoke(*args, "--save-inputs", saved).output and saved.is_file()


def test_saved_inputs_reproduce_the_verification(tmp_path):
    model, saved = SAMPLES / "cnn_bn.onnx", tmp_path / "inputs.npz"
    first = json.loads(invoke("run", model, "-o", tmp_path / "a.onnx", "--no-tune", "--json", "--save-inputs", saved).stdout)
    again = json.loads(invoke("run", model, "-o", tmp_path / "b.onnx", "--no-tune", "--json", "--inputs", saved).stdout)
    assert [o["max_abs"] for o in first["verification"]["outputs"]] == [o["max_abs"] for o in again["verification"]["outputs"]]


def test_save_inputs_refuses_a_bad_path(tmp_path):
    result = invoke("compare", SAMPLES / "cnn_bn.onnx", SAMPLES / "cnn_bn.onnx", "--no-latency", "--save-inputs", tmp_path / "in.txt")
    assert result.exit_code == 2 and "must end in .npz" in result.output
    result = invoke("compare", SAMPLES / "cnn_bn.onnx", SAMPLES / "cnn_bn.onnx", "--no-latency", "--save-inputs", tmp_path / "no" / "in.npz")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_error_statistics_in_every_format(model_path, tmp_path):
    md, html = tmp_path / "r.md", tmp_path / "r.html"
    result = invoke("run", model_path, "-o", tmp_path / "o.onnx", "--no-tune", "--report", md, "--report", html, "--no-profile")
    assert "Error statistics per output" in result.output and "passes with" in result.output
    document = json.loads(invoke("run", model_path, "-o", tmp_path / "j.onnx", "--no-tune", "--json").stdout)
    stats = document["verification"]["outputs"][0]["stats"]
    assert set(stats["abs"]) == {"mean", "p50", "p90", "p99", "max"} and stats["abs"]["max"] == document["verification"]["outputs"][0]["max_abs"]
    assert stats["min_tolerance"]["atol"] == stats["abs"]["max"] and "atol_at_rtol" in stats["min_tolerance"]
    assert "abs p99" in md.read_text() and "error-stats" in html.read_text()
    candidate = _noisy(tmp_path, "noisy.onnx", 0.02)
    compared = json.loads(invoke("compare", model_path, candidate, "--no-latency", "--json").stdout)
    row = compared["outputs"][0]
    assert row["stats"]["abs"]["max"] == pytest.approx(row["max_abs"]) and row["stats"]["abs"]["p50"] <= row["stats"]["abs"]["p99"]
    checked = json.loads(invoke("check", candidate, "--baseline", model_path, "--max-error", "rel=0.5", "--json").stdout)
    assert checked["errors"][0]["stats"]["rel"]["max"] > 0


def test_error_statistics_of_arrays():
    from optimizer.error_stats import error_statistics
    from optimizer.verify import Tolerance

    expected = np.array([1.0, 2.0, 0.0, 4.0, np.nan])
    actual = np.array([1.0, 2.5, 0.1, 4.0, np.nan])
    stats = error_statistics(expected, actual, Tolerance(rtol=0.1, atol=0.0))
    assert stats["elements"] == 4 and stats["abs"]["max"] == pytest.approx(0.5) and stats["rel"]["max"] == pytest.approx(0.25)
    assert stats["min_tolerance"] == pytest.approx({"atol": 0.5, "rtol": 0.125, "atol_at_rtol": 0.1, "rtol_at_atol": 0.125})
    assert error_statistics(np.array([1, 2]), np.array([1, 2])) is None


# -- provenance ------------------------------------------------------------------------------------------


def test_compare_says_which_settings_each_model_ran_under(model_path, tmp_path):
    tuned = tmp_path / "tuned.onnx"
    tuned.write_bytes(Path(model_path).read_bytes())
    assert invoke("tune", tuned, "-o", tmp_path / "tuned.onnx.json", "--budget", "1", "-q").exit_code == 0
    document = json.loads(invoke("compare", model_path, tuned, "--budget", "1", "--json").stdout)
    settings = document["provenance"]["settings"]
    assert settings["A"] == "onnxruntime defaults" and settings["B"].endswith("tuned.onnx.json (found beside the model)")
    assert any("B runs under its settings file, A under onnxruntime defaults" in w for w in document["warnings"])
    text = invoke("compare", model_path, tuned, "--budget", "1").output
    assert "settings: A: onnxruntime defaults; B:" in text and "warning: B runs under its settings file" in text
    plain = json.loads(invoke("compare", model_path, tuned, "--budget", "1", "--json", "--no-config").stdout)
    assert plain["provenance"]["settings"] == {"A": "onnxruntime defaults", "B": "onnxruntime defaults"} and not plain["warnings"]
    checked = json.loads(invoke("check", tuned, "--baseline", model_path, "--max-regression", "50%", "--budget", "1", "--json").stdout)
    assert checked["provenance"]["settings"]["model"].endswith("(found beside the model)") and checked["warnings"]
    refused = invoke("check", tuned, "--max-params", "100", "--no-config", "--config", tmp_path / "tuned.onnx.json")
    assert refused.exit_code == 2 and "--no-config" in refused.output


def test_reports_name_the_inputs_file(model_path, tmp_path):
    data = tmp_path / "data.npz"
    np.savez(data, x=np.ones((2, 4), np.float32))
    result = invoke("run", model_path, "-o", tmp_path / "o.onnx", "--no-tune", "--inputs", data, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"inputs: {data} (x float32 [2, 4])" in result.output and "inputs --inputs" not in result.output
    document = json.loads(invoke("run", model_path, "-o", tmp_path / "j.onnx", "--no-tune", "--inputs", data, "--json").stdout)
    assert document["provenance"]["inputs_file"] == str(data) and document["provenance"]["inputs"].startswith(str(data))
    generated = json.loads(invoke("run", model_path, "-o", tmp_path / "g.onnx", "--no-tune", "--json", "--batch", "3").stdout)
    assert generated["provenance"]["inputs"] == "generated (random; x=[3, 4])"
    md = tmp_path / "c.md"
    invoke("compare", model_path, model_path, "--no-latency", "--inputs", data, "--report", md)
    assert "data.npz" in md.read_text() and "**Settings:**" in md.read_text()


# -- small misleads -----------------------------------------------------------------------------------------


def test_require_op_typo_is_bad_input_naming_the_closest(model_path):
    result = invoke("check", model_path, "--require-op", "Attenton")
    assert result.exit_code == 2 and "--require-op Attenton: no ONNX or onnxruntime op type of that name; did you mean Attention" in result.output
    assert invoke("check", model_path, "--forbid-op", "relu").exit_code == 2
    for known in ("Attention", "com.microsoft:Attention", "MatMul", "ai.onnx:Relu"):
        assert invoke("check", model_path, "--require-op", known).exit_code in (0, 1), known


def test_inputs_shape_mismatch_shows_the_whole_message(model_path, tmp_path):
    data = tmp_path / "bad.npz"
    np.savez(data, x=np.ones((2, 5), np.float32))
    result = CliRunner().invoke(cli, ["run", model_path, "-o", str(tmp_path / "o.onnx"), "--no-tune", "--inputs", str(data)])
    assert result.exit_code == 2
    # refused from the .npz headers before onnxruntime runs: the dims named whole, on one line
    assert "'x' is [2, 5], the model declares ['N', 4]" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_text_file_as_inputs_is_no_npz(model_path, tmp_path):
    text = tmp_path / "inputs.npz"
    text.write_text("x,1,2,3\n")
    result = CliRunner().invoke(cli, ["run", model_path, "-o", str(tmp_path / "o.onnx"), "--no-tune", "--inputs", str(text)])
    assert result.exit_code == 2 and "not an .npz file (not a zip archive)" in result.stderr and "allow_pickle" not in result.stderr
    single = tmp_path / "single.npz"
    with open(single, "wb") as stream:
        np.save(stream, np.ones(3))
    result = CliRunner().invoke(cli, ["compare", model_path, model_path, "--no-latency", "--inputs", str(single)])
    assert result.exit_code == 2 and "a single .npy array" in result.stderr


def test_bad_option_value_is_one_line_without_the_run_usage(model_path):
    result = CliRunner().invoke(cli, [model_path, "--level", "O4"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "'O4' is not one of" in result.stderr
    assert "optimize run" not in result.stderr and "Usage" not in result.stderr
    result = CliRunner().invoke(cli, ["check", model_path, "--bogus"])
    assert result.exit_code == 2 and result.stderr.startswith("error: No such option '--bogus'")


def test_tf_style_first_dim_is_generated_as_batch_one(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk__749", "unk__750"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["unk__749", "unk__750"])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tf", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    path = tmp_path / "tf.onnx"
    onnx.save(model, path)
    document = json.loads(invoke("run", path, "-o", tmp_path / "o.onnx", "--no-tune", "--json").stdout)
    assert document["verification"]["inputs_source"] == "generated (random; x=[1, 16])"
