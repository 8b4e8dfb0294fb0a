"""`optimize tune`, `optimize profile`, and tuning inside `optimize MODEL` (real onnxruntime, small budgets)."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from optimizer import runtime
from optimizer.cli import cli
from tests.models import save, small_model

SCHEMA_KEYS = {"schema_version", "providers", "provider_options", "session_options", "session_config_entries", "measured", "machine"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture()
def model_path(tmp_path):
    return save(small_model(), tmp_path / "m.onnx")


def test_tune_writes_the_config_next_to_the_model(model_path, tmp_path):
    result = invoke("tune", model_path, "--budget", 3, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    data = json.loads((tmp_path / "m.onnx.json").read_text())
    assert SCHEMA_KEYS <= set(data)
    assert set(data["session_options"]) == {"intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level"}
    assert {"median_ms", "p90_ms", "baseline_median_ms", "candidates"} <= set(data["measured"])
    assert {"cpu", "cores", "onnxruntime", "providers_available"} <= set(data["machine"])
    assert summary["chosen"]["session_options"] == data["session_options"]
    assert runtime.session(model_path).run(None, {"x": np.ones((1, 4), np.float32)})[0].shape == (1, 4)


def test_tune_respects_the_users_space_and_prints_a_table(model_path, tmp_path):
    result = invoke("tune", model_path, "-o", tmp_path / "c.json", "--intra", "1", "--providers", "CPUExecutionProvider", "--budget", 3)
    assert result.exit_code == 0, result.output
    assert "chosen:" in result.stdout and "Tune again on the machine you deploy to" in result.stdout
    data = json.loads((tmp_path / "c.json").read_text())
    labels = {c["label"] for c in data["measured"]["candidates"]}
    assert labels <= {"CPU intra=default", "CPU intra=1"}


def test_optimize_tunes_by_default_and_writes_both_files(model_path, tmp_path):
    out = tmp_path / "fast.onnx"
    result = invoke(model_path, "-o", out, "--budget", 4, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["tuning"] is not None and summary["shipped_variant"] in {"original", "O1", "O2"}
    assert summary["config"] == str(tmp_path / "fast.onnx.json")
    data = json.loads((tmp_path / "fast.onnx.json").read_text())
    assert data["model"]["file"] == "fast.onnx" and data["model"]["variant"] == summary["shipped_variant"]
    variants = {c["variant"] for c in data["measured"]["candidates"] if c["ratios_to_reference"]}
    assert len(variants) >= 2  # the optimized graphs were timed against the original
    assert runtime.session(out).run(None, {"x": np.ones((3, 4), np.float32)})[0].shape == (3, 4)


def test_no_tune_writes_no_config(model_path, tmp_path):
    assert invoke(model_path, "-o", tmp_path / "o.onnx", "--no-tune", "-q").exit_code == 0
    assert not (tmp_path / "o.onnx.json").exists()


def test_tuning_without_verification_is_skipped_with_a_warning(model_path, tmp_path):
    result = invoke(model_path, "-o", tmp_path / "o.onnx", "--no-verify", "--json")
    assert result.exit_code == 0
    assert any("tuning skipped" in w for w in json.loads(result.stdout)["warnings"])
    assert not (tmp_path / "o.onnx.json").exists()


def test_profile_uses_the_config_next_to_the_model(model_path, tmp_path):
    runtime.write_config(tmp_path / "m.onnx.json", runtime.RuntimeConfig(intra_op_num_threads=1))
    result = invoke("profile", model_path, "--runs", 5, "--json")
    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout)
    assert profile["config"] == str(tmp_path / "m.onnx.json")
    assert profile["runs"] == 5 and profile["nodes"] and abs(sum(n["share"] for n in profile["nodes"]) - 1) < 1e-6
    table = invoke("profile", model_path, "--runs", 3, "--top", 1)
    assert table.exit_code == 0 and "Slowest nodes (top 1" in table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["tune", "{missing}"], "no such file"),
        (["tune", "{model}", "--providers", "NoSuchExecutionProvider"], "not offered by this onnxruntime"),
        (["tune", "{model}", "--intra", "two"], "--intra: expected positive integers"),
        (["tune", "{model}", "--inputs", "{missing}"], "no such file"),
        (["tune", "{model}", "--inputs", "{npz}", "--batch", "4"], "--batch applies to generated inputs"),
        (["profile", "{model}", "--config", "{badjson}"], "not a readable JSON file"),
        (["profile", "{model}", "--config", "{badprovider}"], "not available in this onnxruntime"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model_path, tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "provider.json").write_text(json.dumps({"schema_version": 1, "providers": ["NoSuchExecutionProvider"]}))
    np.savez(tmp_path / "in.npz", x=np.ones((2, 4), np.float32))
    names = {"model": model_path, "missing": tmp_path / "missing.onnx", "badjson": tmp_path / "bad.json", "badprovider": tmp_path / "provider.json", "npz": tmp_path / "in.npz"}
    before = sorted(os.listdir(tmp_path))
    result = invoke(*[a.format(**names) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == before  # nothing written


def test_tuning_while_overwriting_the_input(model_path):
    result = invoke(model_path, "-o", model_path, "--force", "--budget", 3, "-q")
    assert result.exit_code == 0, result.output
    assert runtime.session(model_path).run(None, {"x": np.ones((2, 4), np.float32)})[0].shape == (2, 4)


def test_tune_refuses_to_overwrite_the_model(model_path):
    result = invoke("tune", model_path, "-o", model_path)
    assert result.exit_code == 2 and "would overwrite the model" in result.stderr


def test_untuned_run_removes_the_stale_config_of_the_output_it_replaces(model_path, tmp_path):
    out = tmp_path / "fast.onnx"
    assert invoke(model_path, "-o", out, "--budget", 2, "-q").exit_code == 0
    assert (tmp_path / "fast.onnx.json").exists()
    result = invoke(model_path, "-o", out, "--force", "--no-tune", "--json")
    assert result.exit_code == 0
    assert not (tmp_path / "fast.onnx.json").exists()
    assert any("removed fast.onnx.json" in w for w in json.loads(result.stdout)["warnings"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.onnx", "m.onnx"]


def test_the_budget_printed_is_the_one_given(model_path, tmp_path):
    result = invoke(model_path, "-o", tmp_path / "o.onnx", "--budget", 3, "--report", tmp_path / "r.md", "--report", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    printed = " ".join(result.stdout.split())  # the terminal table wraps at 80 columns
    assert "of a 3 s budget" in printed and "preferred" in printed
    markdown, page = (tmp_path / "r.md").read_text(), (tmp_path / "r.html").read_text()
    assert "of a 3 s budget" in markdown and "| vs preferred (interval) |" in markdown  # the decision record's table
    assert 'id="decision"' in page and "of a 3 s budget" in page
    summary = json.loads(invoke(model_path, "-o", tmp_path / "p.onnx", "--budget", 3, "--json").stdout)
    assert summary["tuning"]["decision"]["budget_s"] == 3 and summary["tuning"]["measured"]["search"]["budget_s"] == 3
    assert summary["shipped_reason"] == summary["tuning"]["decision"]["sentence"] == summary["tuning"]["measured"]["decision"]


def test_progress_shows_time_left_and_never_a_full_bar_while_work_goes_on():
    from optimizer.cli import _measuring_line
    from optimizer.measure import Progress

    assert _measuring_line(Progress("final round 2/6", 0.4, 2.0, 3.0, 5.0)) == "final round 2/6 (2 s of the 5 s budget, 3 s left)"
    spent = _measuring_line(Progress("final round 6/6", 1.0, 5.2, 0.0, 5.0))
    assert "budget is spent" in spent and "100%" not in spent
