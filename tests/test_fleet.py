"""`optimize fleet` with the local engine, on copies of the sample models (no Ray needed).

One fleet run over the samples plus a bad file is shared by the module (each run starts processes):
each output equals a single `optimize(..., tune=False)` byte for byte, the bad model fails alone, the
reports list one entry per model, and a rerun skips what is up to date and says which.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from optimizer import api
from optimizer.fleet import Job, load_jobs, run_fleet
from optimizer.fleet.cli import fleet_command
from optimizer.fleet.local import LocalEngine
from optimizer.fleet.manifest import FleetInputError
from optimizer.fleet.report import render_html, render_markdown
from optimizer.fleet.resume import record_path
from optimizer.fleet.worker import run_job

SAMPLES = sorted((Path(__file__).resolve().parent.parent / "sample_models").glob("*.onnx"))


def invoke(*args) -> object:
    return CliRunner().invoke(fleet_command, [str(a) for a in args], catch_exceptions=False)


def copy_samples(folder: Path, names=None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    chosen = [path for path in SAMPLES if names is None or path.stem in names]
    return [Path(shutil.copy(path, folder / path.name)) for path in chosen]


def single_run_bytes(source: Path, folder: Path, **options) -> bytes:
    """What `optimize SOURCE --no-tune` writes for one model."""
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / source.name
    api.optimize(source, output, tune=False, **options)
    return output.read_bytes()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Samples (one in a subfolder) plus a file that is not a model, through the fleet once."""
    root = tmp_path_factory.mktemp("fleet")
    models = root / "models"
    copy_samples(models)
    (models / "nested").mkdir()
    shutil.move(models / "cnn_bn.onnx", models / "nested" / "cnn_bn.onnx")
    (models / "broken.onnx").write_bytes(b"this is not an onnx model")
    out = root / "out"
    reports = [out / "fleet.json", root / "fleet.md", root / "fleet.html"]  # a report may go inside OUT_DIR
    result = invoke(models, "-o", out, "--no-tune", "--workers", 2, *[f"--report={path}" for path in reports])
    return {"root": root, "models": models, "out": out, "result": result, "reports": reports}


def test_each_output_equals_a_single_run(fleet):
    sources = sorted(fleet["models"].rglob("*.onnx"))
    for source in sources:
        if source.name == "broken.onnx":
            continue
        relative = source.relative_to(fleet["models"])
        expected = single_run_bytes(source, fleet["root"] / "single" / relative.parent)
        assert (fleet["out"] / relative).read_bytes() == expected, relative


def test_a_bad_model_fails_alone_with_exit_2(fleet):
    assert fleet["result"].exit_code == 2, fleet["result"].output
    document = json.loads(fleet["reports"][0].read_text())
    by_name = {entry["name"]: entry for entry in document["models"]}
    assert set(by_name) == {"broken", "nested/cnn_bn", *(p.stem for p in SAMPLES if p.stem != "cnn_bn")}
    assert by_name["broken"]["status"] == "bad-input" and by_name["broken"]["exit_code"] == 2
    assert "not an ONNX model" in by_name["broken"]["reason"]
    assert by_name["broken"]["output"] is None and not (fleet["out"] / "broken.onnx").exists()
    assert all(entry["status"] == "ok" for name, entry in by_name.items() if name != "broken")
    assert document["kind"] == "fleet" and document["totals"]["by_status"] == {"ok": len(SAMPLES), "bad-input": 1}
    assert not (fleet["out"] / ".fleet-staging").exists()


def test_reports_have_a_row_per_model(fleet):
    markdown, page = fleet["reports"][1].read_text(), fleet["reports"][2].read_text()
    for sample in SAMPLES:
        assert sample.stem in markdown and sample.stem in page
    assert "| broken | bad-input |" in markdown
    assert "<table id='models'>" in page and "addEventListener('click'" in page
    assert "broken" in fleet["result"].output and "exit 2" in fleet["result"].output


def test_resume_skips_what_is_up_to_date_and_redoes_the_rest(fleet):
    out = fleet["out"]
    touched = out / "if_model.onnx"
    touched.write_bytes(b"edited by hand")  # the recorded output changed: redo it
    record = json.loads(record_path(out / "dynamic_dims.onnx").read_text())
    assert record["fingerprint"]["source_sha256"] and record["fingerprint"]["tool"]["optimize"]
    rerun = invoke(fleet["models"], "-o", out, "--no-tune", "--workers", 2, "--json")
    document = json.loads(rerun.stdout)
    skipped = {entry["name"] for entry in document["models"] if entry["skipped"]}
    assert skipped == {"nested/cnn_bn", *(p.stem for p in SAMPLES if p.stem not in ("cnn_bn", "if_model"))}
    assert "skipped as up to date: " in rerun.stderr and "dynamic_dims" in rerun.stderr
    assert touched.read_bytes() != b"edited by hand"
    assert rerun.exit_code == 2  # the bad model is retried, and fails again
    listed = invoke(fleet["models"], "-o", out, "--no-tune", "--dry-run").stdout.splitlines()
    assert "dynamic_dims\tup to date\t" in "\n".join(listed) and any(line.startswith("broken\trun\t") for line in listed)
    other_options = invoke(fleet["models"], "-o", out, "--no-tune", "--level", "O1", "--json")
    assert not any(entry["skipped"] for entry in json.loads(other_options.stdout)["models"])


def test_a_manifest_gives_options_per_model(tmp_path):
    models = tmp_path / "models"
    copy_samples(models, {"cnn_bn", "transformer_block"})
    manifest = tmp_path / "fleet.json"
    manifest.write_text(json.dumps({
        "defaults": {"tune": False},
        "models": [
            {"path": "models/cnn_bn.onnx", "level": "O1", "name": "cnn-o1"},
            {"path": "models/transformer_block.onnx", "level": "O3", "gates": {"max_size": "1KB"}},
        ],
    }))
    result = invoke(manifest, "-o", tmp_path / "out", "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == 1, result.output  # the size gate failed: exit 1
    by_name = {entry["name"]: entry for entry in document["models"]}
    assert by_name["cnn-o1"]["document"]["level"] == "O1"
    assert (tmp_path / "out" / "cnn-o1.onnx").read_bytes() == single_run_bytes(models / "cnn_bn.onnx", tmp_path / "single-o1", level="O1")
    gated = by_name["models/transformer_block"]
    assert gated["status"] == "gate-failed" and gated["exit_code"] == 1 and gated["reason"] == "gate(s) failed: size"
    assert (tmp_path / "out" / "models" / "transformer_block.onnx").read_bytes() == single_run_bytes(models / "transformer_block.onnx", tmp_path / "single-o3", level="O3")


def test_inputs_for_all_models_from_the_command_line(tmp_path):
    import numpy as np

    copy_samples(tmp_path / "models", {"cnn_bn"})
    np.savez(tmp_path / "image.npz", image=np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    result = invoke(tmp_path / "models", "-o", tmp_path / "out", "--no-tune", "--inputs", tmp_path / "image.npz", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["document"]["verification"]["inputs_source"] == "--inputs"
    assert (tmp_path / "out" / "cnn_bn.onnx").read_bytes() == single_run_bytes(tmp_path / "models" / "cnn_bn.onnx", tmp_path / "single", inputs=dict(np.load(tmp_path / "image.npz")))


def test_a_yaml_manifest(tmp_path):
    pytest.importorskip("yaml")
    copy_samples(tmp_path, {"if_model"})
    (tmp_path / "fleet.yaml").write_text("defaults: {tune: false}\nmodels:\n  - path: if_model.onnx\n    level: O1\n")
    result = invoke(tmp_path / "fleet.yaml", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["document"]["level"] == "O1"


@pytest.mark.parametrize("manifest, message", [
    ({"models": [{"path": "a.onnx", "levle": "O1"}]}, "unknown option(s) levle"),
    ({"models": [{"path": "a.onnx"}, {"path": "b/a.onnx", "name": "a"}]}, "would both write a.onnx"),
    ({"models": [{"name": "x"}]}, "has no path"),
    ({"models": []}, "no *.onnx models found"),
])
def test_a_bad_manifest_is_refused_up_front(tmp_path, manifest, message):
    (tmp_path / "fleet.json").write_text(json.dumps(manifest))
    result = invoke(tmp_path / "fleet.json", "-o", tmp_path / "out", "--no-tune")
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (tmp_path / "out").exists()


def test_a_report_may_not_replace_a_model(tmp_path):
    copy_samples(tmp_path / "models", {"if_model"})
    result = invoke(tmp_path / "models", "-o", tmp_path / "out", "--report", tmp_path / "out" / "if_model.onnx.json")
    assert result.exit_code == 2 and "would overwrite a model, its settings or its data" in result.stderr
    assert invoke(tmp_path / "models", "-o", tmp_path / "out", "--report", tmp_path / "r.txt").exit_code == 2


def test_ray_engine_without_ray_is_one_line_and_exit_2(tmp_path, monkeypatch):
    copy_samples(tmp_path / "models", {"if_model"})
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = invoke(tmp_path / "models", "-o", tmp_path / "out", "--engine", "ray")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --engine ray needs Ray, which is not installed: pip install 'optimize[ray]'"


def test_node_types_need_ray(tmp_path):
    copy_samples(tmp_path / "models", {"if_model"})
    result = invoke(tmp_path / "models", "-o", tmp_path / "out", "--node-type", "c7i")
    assert result.exit_code == 2 and "--node-type picks machines of a Ray cluster" in result.stderr


def _dies_or_hangs(job: dict, staging: Path) -> dict:
    """A worker that is killed (as by the out-of-memory killer) on one model and hangs on another."""
    name = Path(job["source"]).stem
    if name == "cnn_bn":
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "if_model":
        time.sleep(60)
    return run_job(job, staging)


def test_a_dead_or_hung_worker_is_one_failure(tmp_path):
    copy_samples(tmp_path / "models", {"cnn_bn", "if_model", "initializer_inputs"})
    jobs = load_jobs(tmp_path / "models", tmp_path / "out", {"tune": False})
    started = time.monotonic()
    result = run_fleet(jobs, tmp_path / "out", LocalEngine(workers=3, timeout=15, work=_dies_or_hangs))
    assert time.monotonic() - started < 50
    by_name = {entry["name"]: entry for entry in result.entries}
    assert by_name["cnn_bn"]["status"] == "failed" and "killed by SIGKILL" in by_name["cnn_bn"]["reason"]
    assert by_name["if_model"]["status"] == "failed" and "timed out after 15 s" in by_name["if_model"]["reason"]
    assert by_name["initializer_inputs"]["status"] == "ok"
    assert result.exit_code == 3
    assert (tmp_path / "out" / "initializer_inputs.onnx").exists() and not (tmp_path / "out" / "cnn_bn.onnx").exists()


def test_tuned_models_run_alone():
    engine = LocalEngine(workers=4)
    untuned = Job("a", Path("a.onnx"), Path("out/a.onnx"), {"tune": False})
    tuned = Job("b", Path("b.onnx"), Path("out/b.onnx"), {})
    assert tuned.tuned and not untuned.tuned
    assert engine._may_start(untuned, []) and engine._may_start(tuned, [])
    running = [type("R", (), {"job": untuned})()]
    assert engine._may_start(untuned, running) and not engine._may_start(tuned, running)
    assert not engine._may_start(untuned, [type("R", (), {"job": tuned})()])


def test_outputs_inside_the_models_folder_are_not_models(tmp_path):
    copy_samples(tmp_path, {"if_model"})
    (tmp_path / "optimized").mkdir()
    shutil.copy(tmp_path / "if_model.onnx", tmp_path / "optimized" / "if_model.onnx")
    assert [job.name for job in load_jobs(tmp_path, tmp_path / "optimized", {})] == ["if_model"]


def test_an_output_no_fleet_wrote_is_kept_unless_forced(tmp_path):
    copy_samples(tmp_path / "models", {"if_model"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "if_model.onnx").write_bytes(b"someone else's")
    jobs = load_jobs(tmp_path / "models", tmp_path / "out", {"tune": False})
    kept = run_fleet(jobs, tmp_path / "out", LocalEngine(workers=1))
    assert kept.exit_code == 2 and "exists and was not written by a fleet run; pass --force" in kept.entries[0]["reason"]
    assert (tmp_path / "out" / "if_model.onnx").read_bytes() == b"someone else's"
    forced = run_fleet(jobs, tmp_path / "out", LocalEngine(workers=1), force=True)
    assert forced.exit_code == 0 and (tmp_path / "out" / "if_model.onnx").read_bytes() != b"someone else's"


def test_load_jobs_refuses_a_missing_folder(tmp_path):
    with pytest.raises(FleetInputError, match="no such folder"):
        load_jobs(tmp_path / "missing", tmp_path / "out", {})


def _document(speedups: dict[str, float]) -> dict:
    """A fleet document with one tuned model per entry of `speedups`."""
    models = [{"name": name, "status": "ok", "skipped": False, "seconds": 2.0, "reason": "", "document": {
        "input": {"nodes": 3, "file_bytes": 100}, "output": {"nodes": 2, "file_bytes": 90}, "shipped_variant": "O2",
        "tuning": {"measured": {"speedup_vs_defaults": speedup}}, "verification": {"outputs": [{"max_abs": 1e-6}]}}} for name, speedup in speedups.items()]
    return {
        "models_path": "m", "out_dir": "o", "engine": {"engine": "local"}, "created": "now", "tool": {"optimize": "0"}, "models": models,
        "totals": {"models": len(models), "by_status": {"ok": len(models)}, "skipped_up_to_date": 0, "seconds": 1.0, "geomean_speedup": 1.5, "exit_code": 0},
    }


def test_renderings_handle_a_tuned_entry():
    document = _document({"m<1>": 1.5})
    page = render_html(document)
    assert "m&lt;1&gt;" in page and "1.50x" in page and "<svg id=\"speedup\"" in page
    assert "| m<1> | ok | 3 -> 2 |" in render_markdown(document)


def test_the_html_table_sorts_in_a_browser(tmp_path):
    from tests.test_report_html import _browser, _chromium

    binary = _chromium()
    page = tmp_path / "fleet.html"
    click_speedup = "<script>document.querySelectorAll('#models th')[4].click()</script></body>"
    page.write_text(render_html(_document({"a": 1.2, "b": 0.9, "c": 1.5})).replace("</body>", click_speedup))
    done = _browser(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.findall(r'<tr class="ok"><td[^>]*>([^<]+)</td>', done.stdout) == ["b", "a", "c"]
    assert re.search(r'<svg[^>]*id="speedup"', done.stdout)


def test_stopping_the_engine_stops_its_workers_and_leaves_no_staging(tmp_path):
    """What an interrupt does: the driver's loop ends early, the engine stops the workers still running."""
    copy_samples(tmp_path / "models", {"if_model", "initializer_inputs"})
    jobs = load_jobs(tmp_path / "models", tmp_path / "out", {"tune": False})
    engine = LocalEngine(workers=2, work=_dies_or_hangs)  # if_model hangs
    results = engine.run(jobs, tmp_path / "out")
    job, result, staging = next(results)
    assert job.name == "initializer_inputs" and result["status"] == "ok"
    shutil.rmtree(staging)
    results.close()
    assert not (tmp_path / "out" / ".fleet-staging").exists()


def _allocates(job: dict, staging: Path) -> dict:
    """A model whose optimization needs far more memory than it is allowed."""
    import numpy as np

    np.ones(1 << 31, dtype=np.uint8)
    return run_job(job, staging)


def test_a_model_over_the_memory_limit_fails_as_out_of_memory(tmp_path):
    copy_samples(tmp_path / "models", {"if_model"})
    jobs = load_jobs(tmp_path / "models", tmp_path / "out", {"tune": False})
    result = run_fleet(jobs, tmp_path / "out", LocalEngine(workers=1, max_memory=1 << 30, work=_allocates))
    assert result.entries[0]["status"] == "failed" and result.entries[0]["reason"].startswith("out of memory")
    assert result.exit_code == 3


def test_max_memory_is_a_size(tmp_path):
    copy_samples(tmp_path / "models", {"if_model"})
    result = invoke(tmp_path / "models", "-o", tmp_path / "out", "--max-memory", "lots")
    assert result.exit_code == 2 and "--max-memory 'lots': expected a size such as 4GB" in result.stderr


def test_options_become_optimize_keywords():
    from optimizer.fleet.options import optimize_arguments

    keywords = optimize_arguments({"level": "O3", "skip_passes": "a,b", "input_shape": {"x": [1, 3]}, "quantize": "dynamic", "max_error": ["rel=0.01"], "rtol": 0.001})
    assert keywords["level"] == "O3" and keywords["skip_passes"] == ["a", "b"] and keywords["input_shapes"] == {"x": (1, 3)}
    assert keywords["tune"] is True and keywords["tune_budget"] == 30.0 and keywords["rtol"] == 0.001 and "atol" not in keywords
    assert keywords["lossy"].quantize == "dynamic" and keywords["lossy"].time_budget_s == 30.0
    assert optimize_arguments({"input_shape": ["x=1,3", "y=2"]})["input_shapes"] == {"x": (1, 3), "y": (2,)}
    assert optimize_arguments({})["lossy"] is None


def test_a_value_of_the_wrong_kind_is_that_models_bad_input(tmp_path):
    outcome = run_job({"source": str(SAMPLES[0]), "output": str(tmp_path / "m.onnx"), "options": {"budget": "lots"}}, tmp_path)
    assert outcome["status"] == "bad-input" and outcome["reason"].startswith("bad option value: could not convert")


@pytest.mark.parametrize("options, message", [
    ({"input_shape": ["x=a"]}, "dims must be integers"),
    ({"prune_weights": "largest:0.5"}, "expected magnitude:RATIO"),
    ({"quantize": "static"}, "needs calibration data"),
    ({"input_shape": {"x": ["a"]}}, "input_shape"),
])
def test_bad_option_values_are_user_errors(options, message):
    from optimizer.errors import UserError
    from optimizer.fleet.options import optimize_arguments

    with pytest.raises(UserError, match=message):
        optimize_arguments(options)
