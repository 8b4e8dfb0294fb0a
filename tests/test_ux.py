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
