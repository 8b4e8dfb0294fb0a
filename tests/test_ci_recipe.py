"""The CI recipe (scripts/ci_recipe.sh) run locally: both models optimized the same way, the PR's gated
against the base branch's optimized model, on one set of inputs, both under onnxruntime's defaults."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ci_recipe.sh"
MODEL = ROOT / "sample_models" / "cnn_bn.onnx"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the recipe is a bash script")


def run_recipe(tmp_path, **settings) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "ci"), "BUDGET": "2", "MAX_REGRESSION": "50%",
           "OPTIMIZE": f"{sys.executable} -m optimizer.cli", **{k: str(v) for k, v in settings.items()}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)


def _changed(tmp_path) -> Path:
    """The sample with its classifier weights perturbed: the change a pull request makes."""
    model = onnx.load(MODEL)
    for tensor in model.graph.initializer:
        if len(tensor.dims) == 2:
            weight = onnx.numpy_helper.to_array(tensor)
            noisy = weight + np.random.default_rng(1).standard_normal(weight.shape).astype(weight.dtype) * float(np.abs(weight).max())
            tensor.CopyFrom(onnx.numpy_helper.from_array(noisy.astype(weight.dtype), tensor.name))
    path = tmp_path / "changed.onnx"
    onnx.save(model, path)
    return path


def test_an_unchanged_model_passes_against_the_optimized_baseline(tmp_path):
    done = run_recipe(tmp_path, PR_MODEL=MODEL, BASE_MODEL=MODEL)
    assert done.returncode == 0, done.stderr + done.stdout
    out = tmp_path / "ci"
    for name in ("inputs.npz", "pr.opt.onnx", "base.opt.onnx", "optimize.md", "check.md", "check.html", "comment.md"):
        assert (out / name).is_file(), name
    check = (out / "check.md").read_text()
    assert "regression" in check and "base.opt.onnx" in check
    assert "onnxruntime defaults" in check and "found beside" not in check  # both timed the same way
    assert "all 6 gate(s) pass" in done.stdout


def test_the_gate_measures_the_pull_requests_change(tmp_path):
    done = run_recipe(tmp_path, PR_MODEL=_changed(tmp_path), BASE_MODEL=MODEL, MAX_ERROR="cos=0.999")
    assert done.returncode == 1, done.stderr + done.stdout
    assert "error" in (tmp_path / "ci" / "check.md").read_text() and "❌" in (tmp_path / "ci" / "check.md").read_text()


def test_a_new_model_gets_the_static_gates_and_the_given_inputs(tmp_path):
    inputs = tmp_path / "sample.npz"
    np.savez(inputs, image=np.ones((2, 3, 32, 32), np.float32))
    done = run_recipe(tmp_path, PR_MODEL=MODEL, BASE_MODEL=tmp_path / "absent.onnx", INPUTS=inputs, TUNE_BUDGET=1)
    assert done.returncode == 0, done.stderr + done.stdout
    check = (tmp_path / "ci" / "check.md").read_text()
    assert "regression" not in check and "size" in check
    assert (tmp_path / "ci" / "pr.opt.onnx.json").is_file()  # tuned for shipping after the gate
    assert not (tmp_path / "ci" / "inputs.npz").exists()
