"""Ctrl-C (SIGINT) or SIGTERM mid-run: exit 130, one clear line, no output file, no leftovers, input untouched."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SAMPLE = Path(__file__).parent.parent / "sample_models" / "transformer_block.onnx"


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay", [0.0, 1.5], ids=["early", "later"])
def test_interrupted_run_leaves_nothing(signum, delay, tmp_path):
    model = tmp_path / "in" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(SAMPLE, model)
    before = model.read_bytes()
    out_dir, scratch = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    process = subprocess.Popen(
        [sys.executable, "-m", "optimizer.cli", str(model), "-o", str(out_dir / "fast.onnx"), "--budget", "60", "--report", str(out_dir / "r.json")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A background job inherits an ignored SIGINT, which Python (and we) respect: restore Ctrl-C's default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert _wait_for(lambda: any(scratch.iterdir()), 60), "the run never started its work"
        time.sleep(delay)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted; no output written"]
    assert list(out_dir.iterdir()) == [], "no output, no settings file, no report, no staging folder"
    leftovers = [p.name for p in scratch.iterdir() if p.name != ".ses"]  # .ses: onnxruntime's own session-id file
    assert leftovers == [], "temporary files are cleaned up"
    assert model.read_bytes() == before
    assert sorted(p.name for p in model.parent.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_a_run_inside_onnxruntime_within_seconds(signum, tmp_path):
    """A Loop with a huge trip count keeps onnxruntime busy: the signal still ends the run at once."""
    from tests.test_hardening import loop_model

    model = tmp_path / "loop.onnx"
    model.write_bytes(loop_model().SerializeToString())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "optimizer.cli", str(model), "-o", str(tmp_path / "o.onnx"), "--no-tune"],
        env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert _wait_for(lambda: any(scratch.iterdir()), 60), "the run never started its work"
        time.sleep(3.0)  # inside the reference run by now
        assert process.poll() is None
        sent = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert took < 5, f"the run took {took:.1f} s to stop"
    assert not (tmp_path / "o.onnx").exists()
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
