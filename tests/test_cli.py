"""The `optimize` command through click's runner, and once as the installed console script."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optimizer.cli import cli
from tests.models import save, small_model


@pytest.fixture
def model_path(tmp_path):
    return save(small_model(), tmp_path / "m.onnx")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def optimize_untuned(*args):
    """`optimize MODEL ...` without the tuning stage (tested on its own in test_tune_cli.py)."""
    return invoke(*args, "--no-tune")


def test_optimize_prints_summary(model_path, tmp_path):
    result = optimize_untuned(model_path, "-o", tmp_path / "o.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.onnx").exists()
    for text in ("nodes", "file size", "fold-constants", "Verification", "verified"):
        assert text in result.output


def test_json_summary(model_path, tmp_path):
    result = optimize_untuned(model_path, "-o", tmp_path / "o.onnx", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["schema_version"] == 2
    assert summary["verification"]["status"] == "passed"
    assert summary["input"]["nodes"] == 4 and summary["output"]["nodes"] == 2
    assert {p["name"] for p in summary["passes"]} >= {"fold-constants", "eliminate-no-ops"}


def test_o3_reports_the_contrib_ops_it_introduced(tmp_path):
    source = Path(__file__).resolve().parent.parent / "sample_models" / "transformer_block.onnx"
    result = optimize_untuned(source, "-o", tmp_path / "o.onnx", "--level", "O3")
    assert result.exit_code == 0, result.output
    assert "onnxruntime-only ops introduced" in result.output and "com.microsoft:Attention 1" in result.output
    summary = json.loads(optimize_untuned(source, "-o", tmp_path / "j.onnx", "--level", "O3", "--json").stdout)
    assert summary["introduced_ops"] == {"com.microsoft:Attention": 1, "com.microsoft:Gelu": 1}
    assert json.loads(optimize_untuned(source, "-o", tmp_path / "k.onnx", "--json").stdout)["introduced_ops"] == {}


def test_default_output_name(model_path, tmp_path):
    assert optimize_untuned(model_path, "-q").exit_code == 0
    assert (tmp_path / "m.opt.onnx").exists()


def test_inputs_npz_and_input_shape(model_path, tmp_path):
    np.savez(tmp_path / "in.npz", x=np.ones((2, 4), np.float32))
    result = optimize_untuned(model_path, "-o", tmp_path / "a.onnx", "--inputs", tmp_path / "in.npz", "--json")
    assert json.loads(result.stdout)["verification"]["inputs_source"] == "--inputs"
    result = optimize_untuned(model_path, "-o", tmp_path / "b.onnx", "--input-shape", "x=3,4", "--json")
    assert "x=[3, 4]" in json.loads(result.stdout)["verification"]["inputs_source"]


def test_inputs_missing_array_is_bad_input(model_path, tmp_path):
    np.savez(tmp_path / "in.npz", other=np.ones((2, 4), np.float32))
    result = optimize_untuned(model_path, "-o", tmp_path / "o.onnx", "--inputs", tmp_path / "in.npz")
    assert result.exit_code == 2
    assert "lacks arrays for: x" in result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_level_and_pass_selection(model_path, tmp_path):
    result = optimize_untuned(model_path, "-o", tmp_path / "o.onnx", "--passes", "eliminate-no-ops,eliminate-dead-code", "--json")
    summary = json.loads(result.stdout)
    assert [p["name"] for p in summary["passes"]] == ["eliminate-no-ops", "eliminate-dead-code"]
    assert summary["output"]["op_counts"].get("Mul") == 1  # folding was not asked for
    result = optimize_untuned(model_path, "-o", tmp_path / "p.onnx", "--skip-passes", "fold-constants", "--json")
    assert "fold-constants" not in [p["name"] for p in json.loads(result.stdout)["passes"]]


def test_unknown_pass_is_bad_input(model_path, tmp_path):
    result = optimize_untuned(model_path, "-o", tmp_path / "o.onnx", "--passes", "nope")
    assert result.exit_code == 2 and "unknown pass 'nope'" in result.stderr


def test_passes_command_lists_every_pass():
    result = invoke("passes", "--json")
    listed = json.loads(result.stdout)
    from passes import REGISTRY

    assert [p["name"] for p in listed] == list(REGISTRY)
    assert all(p["level"] in ("O1", "O2", "O3") and p["description"] for p in listed)
    assert "fold-constants" in invoke("passes").output


def test_no_verify(model_path, tmp_path):
    result = optimize_untuned(model_path, "-o", tmp_path / "o.onnx", "--no-verify", "--json")
    assert json.loads(result.stdout)["verification"] == {"status": "not run"}


def test_installed_console_script(model_path, tmp_path):
    script = shutil.which("optimize", path=os.path.dirname(sys.executable))
    assert script, "the optimize console script is not installed in this environment"
    completed = subprocess.run([script, model_path, "-o", str(tmp_path / "o.onnx"), "--json", "--no-tune"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["verification"]["status"] == "passed"
    assert Path(tmp_path / "o.onnx").exists()


def test_names_with_brackets_are_printed_verbatim(tmp_path):
    path = save(small_model(), tmp_path / "model[v2].onnx")
    result = optimize_untuned(path, "-o", tmp_path / "out[/x].onnx".replace("/", "_"))
    assert result.exit_code == 0, result.output
    assert "model[v2].onnx" in result.output.replace("\n", "")


def test_library_errors_are_shown_with_their_flags(model_path, tmp_path):
    """The library says `batch`/`inputs`/`force`; the command line names the flags, in the same sentence."""
    np.savez(tmp_path / "in.npz", x=np.ones((2, 4), np.float32))
    result = optimize_untuned(model_path, "-o", tmp_path / "o.onnx", "--inputs", tmp_path / "in.npz", "--batch", "2")
    assert result.exit_code == 2
    assert result.stderr == "error: --batch applies to generated inputs; with --inputs, the arrays set the batch\n"
    (tmp_path / "o.onnx").write_bytes(b"")
    result = optimize_untuned(model_path, "-o", tmp_path / "o.onnx")
    assert result.exit_code == 2 and result.stderr.endswith("o.onnx: exists; pass --force to overwrite it\n")
    result = optimize_untuned(model_path, "-o", tmp_path / "p.onnx", "--input-shape", "x=a,b")
    assert result.exit_code == 2 and result.stderr == "error: --input-shape 'x=a,b': dims must be integers\n"


def test_every_flag_a_library_error_mentions_is_a_flag_of_the_run_command():
    from optimizer.cli import FLAGS, run_command

    declared = {opt for param in run_command.params for opt in (*param.opts, *param.secondary_opts)}
    for option, flag in FLAGS.items():
        assert flag.strip("`").split()[-1] in declared, option
