"""Runtime configuration files: validation, round trip, and sessions built from them (real onnxruntime)."""

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from optimizer import runtime
from optimizer.runtime import ConfigError, RuntimeConfig
from tests.models import save, small_model

TUNED = {
    "schema_version": 1,
    "providers": ["CPUExecutionProvider"],
    "provider_options": [{}],
    "session_options": {"intra_op_num_threads": 1, "inter_op_num_threads": 2, "execution_mode": "parallel", "graph_optimization_level": "extended"},
    "session_config_entries": {"session.intra_op.allow_spinning": "0"},
}


def test_round_trip_keeps_every_setting():
    config = RuntimeConfig.from_dict(TUNED)
    assert config.intra_op_num_threads == 1 and config.inter_op_num_threads == 2
    assert config.execution_mode == "parallel" and config.graph_optimization_level == "extended"
    assert not config.spinning
    assert RuntimeConfig.from_dict({"schema_version": 1, **config.to_dict()}) == config
    assert config.label() == "CPU intra=1 parallel inter=2 level=extended spin=off"


def test_defaults_are_onnxruntimes():
    config = RuntimeConfig.from_dict({"schema_version": 1})
    assert config == RuntimeConfig()
    assert config.spinning and config.intra_op_num_threads == 0 and config.label() == "CPU intra=default"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"schema_version": 2}, "schema_version"),
        ({"providers": []}, "providers"),
        ({"providers": ["CPUExecutionProvider"], "provider_options": [{}, {}]}, "provider_options"),
        ({"session_options": {"intra_op_num_threads": -1}}, "intra_op_num_threads"),
        ({"session_options": {"intra_op_num_threads": "2"}}, "intra_op_num_threads"),
        ({"session_options": {"execution_mode": "fast"}}, "execution_mode"),
        ({"session_options": {"graph_optimization_level": 99}}, "graph_optimization_level"),
        ({"session_options": {"threads": 1}}, "unknown session_options"),
        ({"session_config_entries": {"key": 1}}, "session_config_entries"),
        ({"concurrent_requests": 0}, "concurrent_requests"),
    ],
)
def test_invalid_fields_are_named(change, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        RuntimeConfig.from_dict({**TUNED, **change})


def test_session_applies_the_configuration(tmp_path):
    model = save(small_model(), tmp_path / "m.onnx")
    config_path = tmp_path / "tuned.json"
    config_path.write_text(json.dumps(TUNED))
    session = runtime.session(model, config_path)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 2
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session.run(None, {"x": np.ones((2, 4), np.float32)})[0].shape == (2, 4)


def test_session_finds_the_file_next_to_the_model(tmp_path):
    model = save(small_model(), tmp_path / "m.onnx")
    assert runtime.session(model).get_session_options().intra_op_num_threads == 0
    runtime.config_path_for(model).write_text(json.dumps(TUNED))
    assert runtime.config_path_for(model) == tmp_path / "m.onnx.json"
    assert runtime.session(model).get_session_options().intra_op_num_threads == 1


def test_provider_not_installed_is_a_config_error(tmp_path):
    model = save(small_model(), tmp_path / "m.onnx")
    config = RuntimeConfig.from_dict({**TUNED, "providers": ["CoreMLExecutionProvider"]})  # known to onnxruntime, not installed here
    with pytest.raises(ConfigError, match="CoreMLExecutionProvider not available"):
        config.create_session(model)
    with pytest.raises(ConfigError, match="'NoSuchExecutionProvider' is not available in this onnxruntime, and no onnxruntime build knows it"):
        RuntimeConfig.from_dict({**TUNED, "providers": ["NoSuchExecutionProvider"]})


def test_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        runtime.load_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable JSON file"):
        runtime.load_config(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        runtime.load_config(tmp_path / "list.json")


def test_write_config_is_atomic_and_keeps_extra_sections(tmp_path):
    path = tmp_path / "m.onnx.json"
    runtime.write_config(path, RuntimeConfig(intra_op_num_threads=2), measured={"median_ms": 1.5}, machine={"cores": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx.json"]
    config, data = runtime.load_config(path)
    assert config.intra_op_num_threads == 2
    assert data["schema_version"] == 1 and data["measured"] == {"median_ms": 1.5} and data["machine"] == {"cores": 2}


def test_readme_plain_onnxruntime_snippet_builds_the_same_session(tmp_path, monkeypatch):
    """The README shows how to apply a config with plain onnxruntime; that code must work as written."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    snippet = next(block for block in blocks if "import onnxruntime" in block and "session_config_entries" in block)
    model = save(small_model(), tmp_path / "fast.onnx")
    (tmp_path / "fast.onnx.json").write_text(json.dumps(TUNED))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    session = namespace["session"]
    expected = runtime.session(model).get_session_options()
    actual = session.get_session_options()
    assert (actual.intra_op_num_threads, actual.inter_op_num_threads, actual.execution_mode, actual.graph_optimization_level) == (
        expected.intra_op_num_threads, expected.inter_op_num_threads, expected.execution_mode, expected.graph_optimization_level,
    )
    assert actual.get_session_config_entry("session.intra_op.allow_spinning") == "0"
