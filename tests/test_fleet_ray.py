"""`optimize fleet --engine ray` on a real Ray instance started here (2 CPUs, loopback only, no dashboard).

Few and short: Ray takes seconds to start. The instance carries the custom resource `node_type:test`,
as a cluster's nodes of one machine type would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from click.testing import CliRunner  # noqa: E402

from optimizer import api  # noqa: E402
from optimizer.fleet import load_jobs, run_fleet  # noqa: E402
from optimizer.fleet.cli import fleet_command  # noqa: E402
from optimizer.fleet.manifest import FleetInputError  # noqa: E402
from optimizer.fleet.ray_engine import RayEngine  # noqa: E402
from optimizer.fleet.worker import run_job  # noqa: E402

pytestmark = pytest.mark.ray

SAMPLES = sorted((Path(__file__).resolve().parent.parent / "sample_models").glob("*.onnx"))


@pytest.fixture(scope="module")
def cluster():
    """A private Ray instance bound to 127.0.0.1 (Ray uses the loopback address when 'clusters' are off)."""
    saved = {key: os.environ.get(key) for key in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", resources={"node_type:test": 1}, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_outputs_equal_single_runs_and_a_bad_model_fails_alone(cluster, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for sample in SAMPLES:
        shutil.copy(sample, models / sample.name)
    (models / "broken.onnx").write_bytes(b"not a model")
    report = tmp_path / "fleet.json"
    result = CliRunner().invoke(fleet_command, [str(models), "-o", str(tmp_path / "out"), "--engine", "ray", "--address", "auto", "--no-tune", f"--report={report}"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    document = json.loads(report.read_text())
    assert document["engine"]["engine"] == "ray" and document["engine"]["cpus"] == 2
    by_name = {entry["name"]: entry for entry in document["models"]}
    assert by_name["broken"]["status"] == "bad-input"
    for sample in SAMPLES:
        single = tmp_path / "single" / sample.name
        single.parent.mkdir(exist_ok=True)
        api.optimize(models / sample.name, single, tune=False)
        assert (tmp_path / "out" / sample.name).read_bytes() == single.read_bytes(), sample.name
        assert by_name[sample.stem]["status"] == "ok" and by_name[sample.stem]["document"]["input"]["path"] == str((models / sample.name).resolve())


def test_a_killed_worker_is_retried_and_tuning_reserves_the_node(cluster, tmp_path):
    marker = tmp_path / "killed-once"

    def dies_once(job: dict, staging: Path) -> dict:
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return run_job(job, staging)

    shutil.copy(SAMPLES[0], tmp_path / SAMPLES[0].name)
    assert SAMPLES[0].stem == "cnn_bn"
    np.savez(tmp_path / "image.npz", image=np.ones((1, 3, 32, 32), np.float32))  # shipped to the task with the model
    manifest = tmp_path / "fleet.json"
    manifest.write_text(json.dumps({"models": [
        {"path": SAMPLES[0].name, "tune": False, "inputs": "image.npz"}, {"path": SAMPLES[0].name, "name": "tuned", "budget": 2},
        {"path": "missing.onnx", "tune": False},
    ]}))
    jobs = load_jobs(manifest, tmp_path / "out", {}, node_types=["test"])
    engine = RayEngine("auto", max_retries=2, work=dies_once)
    assert engine._options(jobs[1]) == {"max_retries": 2, "retry_exceptions": False, "num_cpus": 2, "resources": {"node_type:test": 1}}
    assert engine._options(jobs[0])["num_cpus"] == 1
    assert engine._slots(jobs[0]) == (("cpu",), 2) and engine._slots(jobs[1]) == (("tune", "test"), 1)
    assert engine._next(jobs, {}) is jobs[0] and engine._next(jobs[1:], {"r": (jobs[1], 0.0)}) is jobs[2]  # the tuning pool is full
    engine.max_in_flight = 1
    assert engine._next(jobs[1:], {"r": (jobs[0], 0.0)}) is None
    engine.max_in_flight = None
    with pytest.raises(FleetInputError, match="no node of the cluster has the resource node_type:gpu"):
        next(engine.run(load_jobs(manifest, tmp_path / "other", {}, node_types=["gpu"]), tmp_path / "other"))
    result = run_fleet(jobs, tmp_path / "out", engine)
    assert marker.exists()
    assert [entry["status"] for entry in result.entries] == ["ok", "ok", "bad-input"], result.entries
    assert "missing.onnx: cannot read" in result.entries[2]["reason"]
    assert result.entries[0]["document"]["verification"]["inputs_source"] == "--inputs"
    assert (tmp_path / "out" / "test" / "tuned.onnx.json").exists()  # one settings file per node type
    assert json.loads((tmp_path / "out" / "test" / "tuned.onnx.json").read_text())
    assert result.entries[1]["document"]["config"] == str((tmp_path / "out" / "test" / "tuned.onnx.json").resolve())
    assert result.entries[1]["document"]["output"]["path"] == str((tmp_path / "out" / "test" / "tuned.onnx").resolve())
