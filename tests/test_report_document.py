"""The typed report document: built once, its JSON is today's, and the terminal, JSON, Markdown and HTML
renderings all come from that one object."""

from __future__ import annotations

import copy
import io
import json
import re

import pytest
from rich.console import Console

from optimizer import api
from optimizer.report import render_check, render_comparison, render_run
from optimizer.reports import render, to_json, write_reports
from optimizer.reports.document import (
    CheckReport, CompareReport, Document, GateRow, ModelFacts, OutputErrorRow, PassRow, RunReport, Verification, document_from_dict, provenance, run_summary,
)
from optimizer.reports.html import render_html
from optimizer.reports.markdown import render_markdown
from tests.models import save, small_model
from tests.test_report_html import check_document, compare_document, header, optimize_document

HEAD = header("optimize")


def _terminal(render_fn, document, **options) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    render_fn(document, console, **options)
    return console.export_text()


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    folder = tmp_path_factory.mktemp("doc")
    return api.optimize(save(small_model(), folder / "m.onnx"), folder / "fast.onnx")


def test_run_json_is_the_results_dict_under_the_header(result):
    """`to_dict()` gives exactly what the run's JSON held before the typed document: same keys, order, values."""
    body = result.to_dict()
    body.pop("schema_version")
    origin = provenance(result.verification.inputs_source)
    expected = {**HEAD, "summary": run_summary(result), "provenance": origin, **body, "analysis": {"work_flops": 10}, "profile": None}
    report = RunReport.from_result(result, analysis={"work_flops": 10}, head=HEAD)
    produced = report.to_dict()
    assert produced == expected
    assert list(produced) == list(expected)
    assert list(produced["input"]) == list(expected["input"]) and list(produced["verification"]) == list(expected["verification"])
    assert json.loads(to_json(report)) == json.loads(to_json(expected))


def test_run_document_fields_are_typed(result):
    report = RunReport.from_result(result, head=HEAD)
    assert isinstance(report.input, ModelFacts) and report.input.nodes == result.before.nodes
    assert isinstance(report.verification, Verification) and report.verified == result.verified
    assert all(isinstance(p, PassRow) for p in report.passes)
    assert [p.name for p in report.passes] == [entry["name"] for entry in result.pass_summary()]


def test_one_document_renders_the_same_figures_everywhere(result, tmp_path):
    """Built once, the document gives the terminal, JSON, Markdown and HTML the same node counts and sizes."""
    report = RunReport.from_result(result, head=HEAD)
    before, after = report.input.nodes, report.output.nodes
    terminal = _terminal(render_run, report)
    paths = write_reports(report, [tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.html"])
    written = {path.suffix: path.read_text(encoding="utf-8") for path in paths}
    assert json.loads(written[".json"]) == json.loads(to_json(report.to_dict()))
    assert written[".md"] == render_markdown(report) and written[".html"] == render_html(report)
    assert f"{before} -> {after} nodes" in terminal
    assert json.loads(written[".json"])["input"]["nodes"] == before and json.loads(written[".json"])["output"]["nodes"] == after
    assert f"| nodes | {before} | {after} |" in written[".md"]
    assert re.search(rf">{before}\s*→\s*{after}<", written[".html"].replace("\u00a0", " "))
    for text in (terminal, written[".md"], written[".html"]):
        assert _size(report.output.file_bytes) in text


def _size(count: int) -> str:
    from optimizer.units import format_bytes

    return format_bytes(count)


def test_terminal_renders_a_document_read_back_from_json(result):
    """The terminal tables need the document only (a run read back from its JSON renders the same way)."""
    report = RunReport.from_result(result, head=HEAD)
    again = document_from_dict(json.loads(json.dumps(report.to_dict(), default=str)))
    assert isinstance(again, RunReport)
    assert _terminal(render_run, again) == _terminal(render_run, report)


@pytest.mark.parametrize("build", [optimize_document, check_document, compare_document])
def test_documents_read_back_exactly(build):
    """Any document dict, read as its typed document, writes back the same keys in the same order."""
    data = build()
    document = document_from_dict(copy.deepcopy(data))
    assert type(document) is {"optimize": RunReport, "check": CheckReport, "compare": CompareReport}[data["kind"]]
    assert document.to_dict() == data
    assert json.dumps(document.to_dict()) == json.dumps(data)
    for suffix in (".json", ".md", ".html"):
        assert render(document, suffix) == render(data, suffix)


def test_unknown_keys_and_null_sections_survive():
    data = {**optimize_document(), "future_key": {"x": 1}, "verification": None, "lossy": {}}
    document = document_from_dict(copy.deepcopy(data))
    assert document.to_dict() == data
    assert document.verification.status == "not run" and not document.lossy
    assert type(document_from_dict({"kind": "partition", "a": 1})) is Document


def _check_with_texts() -> dict:
    document = check_document(passed=False)
    for gate in document["gates"]:
        gate.update(measured_text=str(gate["measured"]), limit_text=str(gate["limit"]))
    return document


def test_check_and_compare_are_typed_and_render_in_the_terminal():
    check = CheckReport.from_dict(_check_with_texts())
    assert all(isinstance(g, GateRow) for g in check.gates) and check.failed_gates
    assert all(isinstance(e, OutputErrorRow) for e in check.errors)
    assert _terminal(render_check, check) == _terminal(render_check, _check_with_texts())
    assert "gate(s) failed" in _terminal(render_check, check)
    compare = CompareReport.from_dict(compare_document())
    assert compare.size.ratio == compare_document()["size"]["ratio"] and compare.changed_ops
    text = _terminal(render_comparison, compare)
    assert text == _terminal(render_comparison, compare_document())
    assert "Op counts that differ" in text


def test_lossy_table_comes_from_the_document_section():
    """render_lossy(LossyResult) and the document's LossySection give the same terminal table."""
    from optimizer.error_budget import ErrorBudget, OutputError
    from optimizer.lossy.stage import LossyResult, LossyVariant, NodeSensitivity
    from optimizer.report import render_lossy, render_lossy_section
    from optimizer.reports.document import LossySection

    errors = [OutputError("out", 0.1, 0.02, 0.999, 0.98, 0), OutputError("o2", 0.2, 0.03, 0.99, None, 0)]
    kept = LossyVariant("dynamic", "kept", "", errors=errors, excluded=[NodeSensitivity(f"n{i}", "MatMul", 0.1 / (i + 1)) for i in range(10)],
                        speedup=1.3, notes=["pruned 3 weights"])
    result = LossyResult(ErrorBudget.parse(["rel=0.05"]), [kept, LossyVariant("fp16", "discarded", "not faster", errors=errors[:1])], kept)
    text = _terminal(render_lossy, result)
    assert text == _terminal(render_lossy_section, LossySection.from_dict(json.loads(json.dumps(result.to_dict()))))
    assert "shipping dynamic int8" in text and "and 2 more" in text and "pruned 3 weights" in text


def test_number_formats_live_in_units():
    from optimizer import units

    assert units.format_bytes(1536) == "1.5 KB" and units.format_bytes(None) == "-" and units.format_bytes(None, dash=units.DASH) == "–"
    assert units.format_bytes(2 * 1024 * 1024, tick=True) == "2 MB"
    assert units.format_significant(0.014849) == "0.0148" and units.format_significant(1234.5) == "1,230"
    assert units.format_ms(0.0386) == "0.0386 ms" and units.format_ms(None, dash="-", general=True) == "-"
    assert units.format_ratio(1.4658) == "1.47x" and units.format_ratio(None) == "–"
    assert units.format_error(0.0) == "0.00e+00" and units.format_error(0.0, plain_zero=True) == "0" and units.format_error(float("inf")) == "inf"
    assert units.format_change(10, 12) == "+20.0%" and units.format_change(0, 5) == "+5" and units.format_change(None, 5) == ""
    assert units.format_relative_change(100, 90) == "-10.0%" and units.format_count_change(71, 49) == "-22"
    assert units.format_si(1234567, "FLOPs") == "1.23 MFLOPs" and units.format_flops(12345678) == "12.35 M"
    assert units.format_percent(0.0312) == "3.1%"
