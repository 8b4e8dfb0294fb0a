"""Runtime flavours, CPU features and provider settings (optimizer.providers), on whichever onnxruntime
flavour is installed. The OpenVINO cases need `onnxruntime-openvino` (`make setup RUNTIME=openvino`);
CI runs this file in that environment too, with OPTIMIZE_REQUIRE_OPENVINO=1 so they fail rather than skip."""

import importlib.metadata
import json
import os

import numpy as np
import onnxruntime as ort
import pytest

from optimizer import providers
from optimizer.providers import CPU, OPENVINO, Placement, ProviderSetting, cpu_features, placement, precision_settings, supports_bf16
from tests.models import save, small_model

pytestmark = pytest.mark.providers

EPYC_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 sha_ni\n"
OLD_XEON_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"


def _require_openvino():
    if OPENVINO not in ort.get_available_providers():
        message = "needs onnxruntime-openvino (make setup RUNTIME=openvino)"
        if os.environ.get("OPTIMIZE_REQUIRE_OPENVINO") == "1":
            pytest.fail(f"OPTIMIZE_REQUIRE_OPENVINO=1 but {message}")
        pytest.skip(message)


def test_cpu_features_read_from_flags():
    assert cpu_features(EPYC_FLAGS) == {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
    assert cpu_features("no flags here") == frozenset()
    assert supports_bf16(cpu_features(EPYC_FLAGS))
    assert not supports_bf16(cpu_features(OLD_XEON_FLAGS))
    assert supports_bf16(frozenset({"amx_bf16", "amx_tile"}))


def test_flavour_is_the_installed_distribution():
    flavour = providers.runtime_flavour()
    assert flavour.version == ort.__version__
    assert flavour.providers == tuple(ort.get_available_providers())
    assert importlib.metadata.version(flavour.distribution)  # really installed
    assert flavour.distribution in flavour.label() and ort.__version__ in flavour.label()


def test_no_openvino_settings_without_its_provider():
    assert providers.lossless_settings([CPU]) == []
    assert precision_settings([CPU], cpu_features(EPYC_FLAGS)) == []


def test_bf16_offered_only_on_a_cpu_with_native_bf16():
    assert precision_settings([OPENVINO, CPU], cpu_features(OLD_XEON_FLAGS)) == []
    (bf16,) = precision_settings([OPENVINO, CPU], cpu_features(EPYC_FLAGS))
    assert bf16.precision == "bf16" and not bf16.lossless
    assert json.loads(bf16.options_dict()["load_config"]) == {"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}}
    assert bf16.label() == "OpenVINO bf16"


def test_throughput_adds_streams():
    latency = providers.lossless_settings([OPENVINO, CPU], objective="latency", cores=2)
    throughput = providers.lossless_settings([OPENVINO, CPU], objective="throughput", cores=2)
    assert all(s.lossless for s in latency) and {s.options_dict()["precision"] for s in latency} == {"FP32", "ACCURACY"}
    assert [s for s in throughput if "num_streams" in s.options_dict()]


def _profiled_events(path, provider_list, options, tmp_path):
    session_options = ort.SessionOptions()
    session_options.enable_profiling = True
    session_options.profile_file_prefix = str(tmp_path / "trace")
    session_options.log_severity_level = 3
    session = ort.InferenceSession(str(path), session_options, providers=provider_list, provider_options=options)
    feeds = {"x": np.ones((2, 4), np.float32)}
    session.run(None, feeds)
    session.run(None, feeds)
    with open(session.end_profiling(), encoding="utf-8") as handle:
        return session, json.load(handle)


def test_placement_counts_nodes_per_provider_on_the_cpu(tmp_path):
    path = save(small_model(), tmp_path / "m.onnx")
    _, events = _profiled_events(path, [CPU], [{}], tmp_path)
    where = placement(events)
    assert set(where.nodes_by_provider) == {CPU}
    assert where.nodes_by_provider[CPU] >= 2  # MatMul and Relu at least, counted once over two runs
    assert not where.falls_back(CPU)


def test_placement_reports_a_fallback():
    where = Placement({OPENVINO: 1, CPU: 3})
    assert where.falls_back(OPENVINO)
    assert where.describe() == "3 on CPU, 1 on OpenVINO"


def test_openvino_settings_run_on_openvino(tmp_path):
    _require_openvino()
    path = save(small_model(), tmp_path / "m.onnx")
    expected = ort.InferenceSession(str(path), providers=[CPU]).run(None, {"x": np.ones((2, 4), np.float32)})[0]
    settings: list[ProviderSetting] = providers.lossless_settings(ort.get_available_providers()) + precision_settings(ort.get_available_providers())
    assert settings
    for setting in settings:
        session, events = _profiled_events(path, [setting.provider, CPU], [setting.options_dict(), {}], tmp_path)
        assert session.get_providers()[0] == OPENVINO, setting.label()
        assert OPENVINO in placement(events).nodes_by_provider, setting.label()
        got = session.run(None, {"x": np.ones((2, 4), np.float32)})[0]
        tolerance = 1e-5 if setting.lossless else 2e-2
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
