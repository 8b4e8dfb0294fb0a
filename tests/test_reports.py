"""Reports: one document per command, written by suffix (.json, .md), atomically; Markdown escaping."""

import json

import pytest
from click.testing import CliRunner

from optimizer.cli import cli
from optimizer.reports import ReportError, check_report_paths, write_reports
from optimizer.reports.markdown import render_markdown
from tests.models import save, small_model


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def model_path(tmp_path):
    return save(small_model(), tmp_path / "m.onnx")


def test_run_writes_every_format_from_one_document(model_path, tmp_path):
    out = tmp_path / "fast.onnx"
    result = invoke(model_path, "-o", out, "--budget", "2", "--json", "--report", tmp_path / "r.json", "--report", tmp_path / "r.md")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads((tmp_path / "r.json").read_text())
    assert printed == written
    assert written["kind"] == "optimize" and written["schema_version"] == 2
    assert written["tool"]["onnxruntime"] and written["machine"]["cpu_count"]
    assert written["analysis"]["work_flops"] > 0 and "top_nodes" in written["analysis"]
    assert written["profile"]["by_op_type"], "--report profiles the written model"
    assert written["output"]["weight_bytes_by_op_type"] == {"MatMul": 64}
    assert written["input"]["weight_bytes_by_op_type"] == {"Mul": 68}
    assert written["tuning"]["measured"]["candidates"]
    markdown = (tmp_path / "r.md").read_text()
    assert markdown.startswith("### optimize: ")
    assert "| nodes | 4 | 2 |" in markdown
    assert "Identity 1 → 0" in markdown


def test_run_writes_an_html_report(model_path, tmp_path):
    result = invoke(model_path, "-o", tmp_path / "fast.onnx", "--budget", "2", "--report", tmp_path / "r.html")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page
    for chart in ("chart-tuning", "chart-profile", "chart-dtype", "chart-ops"):
        assert f'id="{chart}"' in page


def test_json_without_report_has_no_profile(model_path, tmp_path):
    result = invoke(model_path, "-o", tmp_path / "fast.onnx", "--no-tune", "--json")
    document = json.loads(result.stdout)
    assert document["profile"] is None
    forced = invoke(model_path, "-o", tmp_path / "fast2.onnx", "--no-tune", "--json", "--profile")
    assert json.loads(forced.stdout)["profile"]["runs"] == 20


def test_bad_report_path_is_refused_before_any_work(model_path, tmp_path):
    out = tmp_path / "fast.onnx"
    for report in (tmp_path / "r.txt", tmp_path / "missing" / "r.json"):
        result = invoke(model_path, "-o", out, "--no-tune", "--report", report)
        assert result.exit_code == 2
        assert "--report" in result.output and "Traceback" not in result.output
        assert not out.exists()


def test_check_report_paths(tmp_path):
    assert check_report_paths([tmp_path / "a.JSON", tmp_path / "b.md"]) == [tmp_path / "a.JSON", tmp_path / "b.md"]
    (tmp_path / "dir.html").mkdir()
    for bad, message in ((tmp_path / "a.pdf", "suffix"), (tmp_path / "dir.html", "is a folder"), (tmp_path / "no" / "a.md", "does not exist")):
        with pytest.raises(ReportError, match=message):
            check_report_paths([bad])


def test_write_reports_leaves_no_temporary_files(tmp_path):
    document = {"kind": "check", "gates": [], "model": {"path": "m.onnx"}}
    written = write_reports(document, [tmp_path / "r.json", tmp_path / "r.md"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"] == sorted(p.name for p in written)
    assert (tmp_path / "r.json").stat().st_mode & 0o044, "readable like any other file the user writes"


def test_markdown_escapes_names_from_the_model():
    document = {
        "kind": "compare",
        "a": {"path": "a.onnx"}, "b": {"path": "b`|<script>.onnx"},
        "outputs": [{"name": "out|<img src=x onerror=alert(1)>", "max_abs": 0.1, "rel": 0.01, "cos": 0.99, "top1": None, "nonfinite": 0}],
        "op_counts": [{"op": "*Evil*", "a": 1, "b": 0, "delta": -1}],
        "size": {"a_bytes": 10, "b_bytes": 10, "ratio": 1.0},
        "latency": None,
    }
    text = render_markdown(document)
    assert "<script>" not in text and "<img" not in text
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in text or "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "out\\|" in text, "a | in a name must not split the table row"
    assert "\\*Evil\\*" in text


def test_markdown_check_verdicts():
    gate = {"gate": "size", "measured_text": "1.0 KB", "limit_text": "2.0 KB", "detail": "file", "passed": True}
    passing = render_markdown({"kind": "check", "model": {"path": "m.onnx"}, "gates": [gate]})
    assert "✅ all 1 gates pass" in passing
    failing = render_markdown({"kind": "check", "model": {"path": "m.onnx"}, "gates": [gate, {**gate, "gate": "params", "passed": False}]})
    assert "❌ 1 of 2 gates failed" in failing and "| params |" in failing


def test_markdown_unknown_kind():
    with pytest.raises(ValueError, match="no Markdown rendering"):
        render_markdown({"kind": "partition"})


def test_markdown_keeps_a_name_on_one_line():
    gate = {"gate": "error", "measured_text": "x", "limit_text": "y", "passed": False,
            "detail": "rel error on 'y\r\r### optimize check: ✅ all gates pass\r\n<!-- x'"}
    text = render_markdown({"kind": "check", "model": {"path": "m.onnx"}, "gates": [gate]})
    assert "\r" not in text
    assert not any(line.startswith("### optimize check: ✅") for line in text.splitlines())


def test_json_reports_are_strict_json(tmp_path):
    document = {"kind": "check", "gates": [{"measured": float("inf"), "limit": float("nan")}], "model": {"path": "m.onnx"}}
    (path,) = write_reports(document, [tmp_path / "r.json"])
    text = path.read_text()
    assert "Infinity" in text and json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name}"))["gates"][0]["measured"] == "Infinity"


def test_unwritable_report_is_a_report_error():
    """A folder that exists but takes no files (procfs, even for root): a one-line error, not a crash."""
    with pytest.raises(ReportError, match="cannot write"):
        write_reports({"kind": "check", "gates": [], "model": {"path": "m"}}, ["/proc/r.md"])


def test_run_report_cannot_replace_the_output_or_its_settings(model_path, tmp_path):
    out = tmp_path / "fast.onnx"
    for report in (out.with_name("fast.onnx.json"), tmp_path / "m.onnx.json"):
        result = invoke(model_path, "-o", out, "--no-tune", "--report", report)
        assert result.exit_code == 2 and "would overwrite" in result.output
    assert not out.exists()
