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
    assert "…" not in narrow.output and max(len(line) for line in narrow.output.splitlines()) <= 60


def test_pass_descriptions_are_whole_when_piped():
    from passes import REGISTRY

    text = invoke("passes", env={"COLUMNS": ""}).output
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for cls in REGISTRY.values():
        assert any(" ".join(cls.description.split()) in line for line in lines), cls.name


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
