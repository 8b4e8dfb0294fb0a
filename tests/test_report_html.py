"""The HTML report: escaping, no network, every section for every kind, and a real headless browser."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from optimizer.reports.html import CSP, render_html

CHROMIUM = "/usr/bin/chromium"
HOSTILE = "<script>alert(1)</script>"
STATS = {"runs": 600, "blocks": 3, "min_ms": 0.0386, "p10_ms": 0.0393, "median_ms": 0.0400, "p90_ms": 0.0534, "p99_ms": 0.0979, "mean_ms": 0.0436, "max_ms": 0.177}


def _stats(scale: float) -> dict:
    return {key: (value * scale if key.endswith("_ms") else value) for key, value in STATS.items()}


def header(kind: str) -> dict:
    return {
        "schema_version": 2, "kind": kind, "tool": {"optimize": "0.1.0", "onnx": "1.23.2", "onnxruntime": "1.31.1"},
        "created": "2026-11-22T09:44:19+00:00",
        "machine": {"cpu_model": "Test CPU", "cpu_count": 4, "cpu_affinity": 4, "cpu_isa": ["avx2"], "platform": "Linux", "python": "3.11.7", "numpy": "2.4.6", "onnxruntime": "1.31.1"},
    }


def model_stats(path: str, nodes: int, ops: dict, weights: dict, by_op: dict) -> dict:
    return {"path": path, "file_bytes": sum(weights.values()) + 5000, "nodes": nodes, "op_counts": ops, "parameters": sum(weights.values()) // 4,
            "weight_bytes_by_dtype": weights, "weight_bytes_by_op_type": by_op, "config": None}


def check_document(passed: bool = False) -> dict:
    model = model_stats("models/new.onnx", 49, {"MatMul": 8, "LayerNormalization": 2, "Add": 9}, {"float": 133888}, {"MatMul": 131072, "Add": 2816})
    baseline = model_stats("models/old.onnx", 71, {"MatMul": 8, "ReduceMean": 4, "Add": 13}, {"float": 133888}, {"MatMul": 131072, "Add": 2304, "Mul": 512})
    gates = [
        {"gate": "size", "measured": 138901, "limit": 52428800, "unit": "bytes", "passed": True, "detail": "file plus external data on disk"},
        {"gate": "require-op", "measured": 2, "limit": "LayerNormalization", "unit": "nodes", "passed": True, "detail": "2 LayerNormalization node(s)"},
        {"gate": "regression-latency", "measured": 1.31, "limit": 1.05, "unit": "ratio", "passed": passed, "detail": "time vs baseline in the same run: 1.310x by median"},
        {"gate": "error", "measured": 2.2e-07, "limit": "rel=0.05", "unit": "", "passed": True, "detail": "every limit holds on 1 output(s)"},
    ]
    return {**header("check"), "model": model, "baseline": baseline, "gates": gates, "passed": passed, "inputs": "generated (random; hidden=[1, 16, 64])",
            "latency": {"model": _stats(1.31), "baseline": _stats(1.0), "control": _stats(1.01), "noise": 0.02, "ratio_median": 1.31, "ratio_min": 1.29},
            "errors": [{"name": "out", "max_abs": 9.5e-07, "rel": 2.2e-07, "cos": 0.99999999, "top1": 1.0, "nonfinite": 0}]}


def compare_document() -> dict:
    a = model_stats("a/model.onnx", 71, {"MatMul": 8, "ReduceMean": 4, "Add": 13, "Constant": 16}, {"float": 133888}, {"MatMul": 131072, "Add": 2304, "Mul": 512})
    b = model_stats("b/model.int8.onnx", 60, {"MatMulInteger": 8, "DynamicQuantizeLinear": 8, "ReduceMean": 4, "Add": 13, "Constant": 16}, {"int8": 33216, "float": 4608}, {"MatMulInteger": 33216, "Add": 4608})
    ops = [{"op": op, "a": a["op_counts"].get(op, 0), "b": b["op_counts"].get(op, 0), "delta": b["op_counts"].get(op, 0) - a["op_counts"].get(op, 0)}
           for op in sorted(set(a["op_counts"]) | set(b["op_counts"]))]
    return {**header("compare"), "a": a, "b": b, "inputs": "generated (random; hidden=[1, 16, 64])",
            "outputs": [{"name": "out", "max_abs": 0.0476, "rel": 0.011, "cos": 0.99995, "top1": 1.0, "nonfinite": 0}],
            "op_counts": ops, "size": {"a_bytes": a["file_bytes"], "b_bytes": b["file_bytes"], "ratio": b["file_bytes"] / a["file_bytes"]},
            "latency": {"a": _stats(1.0), "b": _stats(0.8), "control": _stats(1.01), "ratio_median": 0.8, "ratio_min": 0.8, "noise": 0.02,
                        "verdict": "B is faster: 1.25x A's speed by median, 1.25x by minimum (noise 2%)"}}


def optimize_document() -> dict:
    """A full optimize document: tuned, profiled, analysed, with a lossy variant and a dropped pass."""
    before = {"path": "in.onnx", "nodes": 71, "op_counts": {"Add": 13, "MatMul": 8, "ReduceMean": 4, "Sqrt": 2}, "initializer_bytes": 133888, "file_bytes": 140067,
              "weight_bytes_by_dtype": {"float": 133888}, "weight_bytes_by_op_type": {"MatMul": 131072, "Add": 2304, "Mul": 512}}
    after = {**before, "path": "out.onnx", "external_data": None, "nodes": 49, "op_counts": {"Add": 9, "MatMul": 8, "LayerNormalization": 2}, "file_bytes": 141029,
             "weight_bytes_by_op_type": {"MatMul": 131072, "Add": 1792, "LayerNormalization": 1024}}
    chosen = {"variant": "O2", "label": "CPU intra=1"}
    candidates = [
        {"variant": "original", "label": "CPU intra=default", "min_ms": 0.0436, "median_ms": 0.0735, "p90_ms": 0.0819, "eliminated_at_rung": None, "error": None},
        {"variant": "O1", "label": "CPU intra=2", "min_ms": 0.0440, "median_ms": 0.0746, "p90_ms": 0.104, "eliminated_at_rung": 1, "error": None},
        {"variant": "O2", "label": "CPU intra=1", "min_ms": None, "median_ms": None, "p90_ms": None, "eliminated_at_rung": 0, "error": None},
        {"variant": "original", "label": "CPU intra=1", "min_ms": None, "median_ms": None, "p90_ms": None, "eliminated_at_rung": 0, "error": None},
        {"variant": "O2", "label": "CPU intra=4", "min_ms": None, "median_ms": None, "p90_ms": None, "eliminated_at_rung": None, "error": "session failed"},
    ]
    tuning = {"chosen": chosen, "measured": {
        "objective": "latency", "median_ms": 0.0400, "p90_ms": 0.0534, "min_ms": 0.0386, "baseline_median_ms": _stats(1.5)["median_ms"], "baseline_min_ms": _stats(1.5)["min_ms"],
        "speedup_vs_defaults": 1.4658, "noise": 0.02, "per_call": "one request", "variant": "O2", "decision": "CPU intra=1: 1.45x faster than the original",
        "inputs": "generated", "batch": 1, "candidates": candidates,
        "search": {"mode": "variant, then settings", "seconds": 5.2, "budget_s": 4.9, "rungs": [{"stage": "variants", "rung": 1, "candidates": 2, "rounds": 3, "seconds": 1.5}],
                   "skipped": ["intra-op threads above 2: more threads than usable cores"]}},
        "final": {"original | CPU intra=default": _stats(1.5), "control": _stats(1.52), "O2 | CPU intra=1": _stats(1.0)}}
    lossy = {"budget": "rel=0.05", "chosen": None, "noise": 0.02, "notes": ["errors measured on generated inputs"], "lossless_latency_ms": _stats(2.0),
             "variants": [{"method": "dynamic", "label": "dynamic int8", "status": "discarded", "reason": "not measurably faster (0.93x median)",
                           "errors": [{"name": "out", "max_abs": 0.0476, "rel": 0.011, "cos": 0.99995, "top1": 1.0, "nonfinite": 0}],
                           "excluded_nodes": [{"name": "/MatMul_3", "op_type": "MatMul", "sensitivity": 0.1}], "attempts": 2,
                           "weight_bytes_by_dtype": {"int8": 33216, "float": 4608}, "speedup_vs_lossless": 0.93, "speedup_vs_lossless_min": 1.1}]}
    return {**header("optimize"), "input": before, "output": after, "level": "O2", "introduced_ops": {}, "converted_initializer_inputs": [], "pruned_outputs": None,
            "passes": [{"name": "fuse-layer-norm", "runs": 2, "changes": {"layernorm": 2}, "declined": {"opset below 17": 1}, "seconds": 0.0023},
                       {"name": "fuse-gelu", "runs": 2, "changes": {}, "declined": {}, "seconds": 0.0003}],
            "dropped_passes": [{"name": "fuse-gelu", "reason": "broke output 'out'"}],
            "verification": {"status": "passed", "outputs": [{"name": "out", "max_abs": 9.5e-07, "max_rel": 2.2e-07, "cosine": 1.0, "passed": True, "note": ""}],
                             "reason": "", "tolerance": {"rtol": 0.0001, "atol": 1e-05}, "inputs_source": "generated"},
            "lossy": lossy, "shipped_variant": "O2", "config": "out.onnx.json", "tuning": tuning, "seconds": {"load": 0.1, "tune": 5.3},
            "warnings": ["removed out.onnx.json: it was tuned for the model this run replaced"],
            "analysis": {"work_flops": 13312000.0, "span_flops": 11198464.0, "parallelism": 1.19, "inter_op_speedup_bound": 1.19, "unknown_cost_nodes": 0, "regions": [],
                         "by_op_type": {}, "critical_path_length": 25, "top_nodes": [{"name": "/MatMul_3", "op_type": "MatMul", "flops": 2097152.0, "bytes_moved": 327680.0, "known": True}]},
            "profile": {"runs": 20, "run_ms": 0.19, "kernel_ms": 0.11, "nodes": [{"name": "/Add_6", "op_type": "Add", "provider": "CPUExecutionProvider", "mean_ms": 0.0077, "share": 0.07}],
                        "by_op_type": [{"op_type": "MatMul", "nodes": 7, "mean_ms": 0.0333, "share": 0.30}, {"op_type": "Add", "nodes": 7, "mean_ms": 0.0275, "share": 0.25}]}}


def bare_optimize_document() -> dict:
    """An optimize document with every optional section empty: no tuning, lossy, profile or verification."""
    document = optimize_document()
    document.update(tuning=None, lossy=None, profile=None, config=None, dropped_passes=[], warnings=[], verification={"status": "not run"},
                    analysis={"error": "ValueError: no shapes"})
    return document


def _no_network(page: str) -> None:
    assert f'http-equiv="Content-Security-Policy" content="{CSP}"' in page
    assert "default-src 'none'" in CSP
    # the only URL allowed is the SVG namespace, which is a name, not a fetch
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg\")", page)
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page


# -- unit tests on the string -----------------------------------------------------------------------


def _text(page: str) -> str:
    """The page with non-breaking spaces as plain ones (the headline cards use them)."""
    return page.replace("\u00a0", " ")


def test_optimize_sections_and_charts():
    page = _text(render_html(optimize_document()))
    _no_network(page)
    for marker in ('id="headline"', 'id="warnings"', 'id="before-after"', 'id="chart-tuning"', 'id="chart-profile"', 'id="chart-dtype"',
                   'id="chart-optype"', 'id="chart-ops"', 'id="passes-table"', 'id="verification"', 'id="lossy-table"', 'id="analysis"', "<footer>"):
        assert marker in page, marker
    assert "1.47x" in page  # the tuning speedup in the headline
    assert "71 → 49" in page and "136.8 KB → 137.7 KB" in page
    assert "pass fuse-gelu was dropped: broke output &#x27;out&#x27;" in page
    assert "removed out.onnx.json" in page
    assert "O2 | CPU intra=1" in page and "← chosen" in page
    assert 'class="bar chosen"' in page
    assert "session failed" in page and "never timed" in page  # candidates without figures are listed
    assert "dynamic int8" in page and "rel 1.10e-02" in page
    assert "13.3 MFLOPs" in page and "0.0400 ms" in page
    assert "Test CPU" in page and "onnxruntime 1.31.1" in page


def test_optimize_null_sections_say_not_run():
    page = _text(render_html(bare_optimize_document()))
    _no_network(page)
    for absent in ('id="chart-tuning"', 'id="chart-profile"', 'id="lossy-table"', 'id="warnings"'):
        assert absent not in page, absent
    assert "Tuning not run" in page and "Profile not run" in page and "No lossy variant tried" in page
    assert "Verification not run" in page and "Analysis failed: ValueError: no shapes" in page
    assert "not tuned" in page
    page = render_html({**bare_optimize_document(), "profile": {"error": "RuntimeError: <no session>"}})
    assert "Profile failed: RuntimeError: &lt;no session&gt;" in page


def test_minimal_documents_render():
    for kind in ("optimize", "check", "compare", "something-new"):
        page = render_html({"kind": kind})
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        _no_network(page)


def _paths(value, path=()):
    """Every key path of a document (the first element of each list stands for all)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _paths(item, (*path, key))
    elif isinstance(value, list) and value:
        yield from _paths(value[0], (*path, 0))


@pytest.mark.parametrize("build", [optimize_document, check_document, compare_document])
def test_every_key_may_be_null(build):
    """Any value of the document set to null (or an empty section) still renders a whole page."""
    for path in _paths(build()):
        for empty in (None, {}, []):
            document = build()
            parent = document
            for key in path[:-1]:
                parent = parent[key]
            if empty is not None and not isinstance(parent[path[-1]], (dict, list)):
                continue
            parent[path[-1]] = empty
            page = render_html(document)
            assert page.rstrip().endswith("</html>"), path


def test_hostile_names_are_text():
    document = optimize_document()
    document["input"]["path"] = f"/models/{HOSTILE}.onnx"
    document["input"]["op_counts"][HOSTILE] = 3
    document["input"]["weight_bytes_by_op_type"]['"><img src=x onerror=alert(1)>'] = 10
    document["profile"]["nodes"][0]["name"] = HOSTILE
    document["profile"]["by_op_type"][0]["op_type"] = HOSTILE
    document["analysis"]["top_nodes"][0]["name"] = HOSTILE
    document["tuning"]["chosen"]["label"] = HOSTILE
    document["tuning"]["final"][f"O2 | {HOSTILE}"] = document["tuning"]["final"].pop("O2 | CPU intra=1")
    document["verification"]["outputs"][0]["name"] = HOSTILE
    document["warnings"].append(HOSTILE)
    check = check_document()
    check["gates"][1]["detail"] = HOSTILE
    check["model"]["path"] = HOSTILE
    compare = compare_document()
    compare["op_counts"][0]["op"] = HOSTILE
    compare["outputs"][0]["name"] = HOSTILE
    for page in (render_html(document), render_html(check), render_html(compare)):
        assert "<script" not in page and "<img" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        _no_network(page)


def test_check_gates_pass_and_fail():
    failed = _text(render_html(check_document(passed=False)))
    _no_network(failed)
    assert 'class="banner bad"' in failed and "FAILED: 3 of 4 gates passed" in failed
    gates = failed[failed.index('id="gates-table"'):failed.index("</table>", failed.index('id="gates-table"'))]
    assert gates.count('<tr class="fail">') == 1 and gates.count('class="badge fail"') == 1 and gates.count('class="badge pass"') == 3
    assert "135.6 KB" in gates and "50.0 MB" in gates and "1.31x" in gates and "LayerNormalization" in gates
    assert 'id="chart-latency"' in failed and 'id="chart-check-ops"' in failed and "models/old.onnx" in failed
    passed = render_html(check_document(passed=True))
    assert 'class="banner ok"' in passed and "PASSED: 4 of 4 gates passed" in passed
    alone = render_html({**check_document(passed=True), "baseline": None, "latency": None, "errors": None})
    assert "Latency not measured" in alone and "Outputs not compared" in alone and 'id="chart-check-dtype"' in alone


def test_compare_rows():
    page = _text(render_html(compare_document()))
    _no_network(page)
    assert "a/model.onnx" in page and "b/model.int8.onnx" in page
    assert "B is faster: 1.25x" in page and 'id="chart-latency"' in page
    assert 'id="chart-compare-ops"' in page and "MatMulInteger" in page and "8 → 0  (-8)" in page
    assert "0 → 8  (+8)" in page and "rel 1.10e-02" in page
    assert "rel 1.10e-02" in page
    no_latency = render_html({**compare_document(), "latency": None})
    assert "Latency not measured" in no_latency and 'id="chart-latency"' not in no_latency


def test_pure_function():
    document = optimize_document()
    snapshot = copy.deepcopy(document)
    assert render_html(document) == render_html(document)
    assert document == snapshot


# -- a real browser -----------------------------------------------------------------------------------


def _chromium() -> str:
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if not found:
        message = "needs a headless browser: install Debian's 'chromium' package (apt-get install -y chromium)"
        if os.environ.get("OPTIMIZE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"OPTIMIZE_REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message)
    return found


def _browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def real_report(tmp_path_factory):
    """Builds (once, on first call) a page from a real optimize() run on a small model, tuned at a small
    budget and profiled. A callable, so that a missing browser fails or skips before the work."""
    made = []

    def build() -> tuple[Path, dict]:
        if not made:
            from optimizer import api
            from optimizer.reports.document import RunReport, analysis_summary
            from tests.models import save, small_model

            folder = tmp_path_factory.mktemp("html")
            model = save(small_model(), folder / "m.onnx")
            result = api.optimize(model, folder / "o.onnx", tune=True, tune_budget=3)
            outcome, _ = api.profile(result.output_path, config_path=result.config_path, input_shapes={"x": (1, 4)}, runs=5)
            document = RunReport.from_result(result, analysis=analysis_summary(result.model, {"x": (1, 4)}), profile=outcome.to_dict()).to_dict()
            page = folder / "report.html"
            page.write_text(render_html(document), encoding="utf-8")
            made.append((page, document))
        return made[0]

    return build


def test_browser_renders_charts(real_report, tmp_path):
    binary = _chromium()
    page, document = real_report()
    done = _browser(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for chart in ("chart-tuning", "chart-profile", "chart-dtype", "chart-ops"):
        assert re.search(rf'<svg[^>]*id="{chart}"', dom), chart
    assert dom.count('class="bar chosen"') >= 1
    chosen = document["tuning"]["chosen"]
    assert f"{chosen['variant']} | {chosen['label']}" in dom
    assert "Optimized m.onnx" in dom


def test_browser_screenshot(real_report, tmp_path):
    binary = _chromium()
    page, _ = real_report()
    shot = tmp_path / "shot.png"
    done = _browser(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
