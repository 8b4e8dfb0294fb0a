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


# -- precision as a lossy variant, and OpenVINO in the tuner --------------------------------------


def _det_model(tmp_path):
    """x -> Relu -> Det -> Abs: OpenVINO takes Relu and Abs, and hands Det back to the CPU provider."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Det", ["r"], ["d"]), helper.make_node("Abs", ["d"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "det", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return save(model, tmp_path / "det.onnx")


def test_plan_offers_bf16_only_where_it_can_run(tmp_path, monkeypatch):
    from optimizer import io
    from optimizer.lossy import LossyInputError, LossyOptions, plan

    model = io.load(save(small_model(), tmp_path / "m.onnx"))
    monkeypatch.setattr(providers, "cpu_features", lambda cpuinfo=None: cpu_features(EPYC_FLAGS))
    methods, _ = plan(LossyOptions(precision="bf16"), model, [OPENVINO, CPU])
    assert methods == ["bf16"]
    assert "bf16" in plan(LossyOptions(quantize="auto"), model, [OPENVINO, CPU])[0]
    with pytest.raises(LossyInputError, match="onnxruntime-openvino"):
        plan(LossyOptions(precision="bf16"), model, [CPU])
    monkeypatch.setattr(providers, "cpu_features", lambda cpuinfo=None: cpu_features(OLD_XEON_FLAGS))
    with pytest.raises(LossyInputError, match="no native bf16"):
        plan(LossyOptions(precision="bf16"), model, [OPENVINO, CPU])
    _, skipped = plan(LossyOptions(quantize="auto"), model, [OPENVINO, CPU])
    assert "no native bf16" in next(v.reason for v in skipped if v.method == "bf16")


def test_bf16_is_checked_on_openvino_and_ships_with_its_settings(tmp_path, monkeypatch):
    _require_openvino()
    if not precision_settings(ort.get_available_providers()):
        pytest.skip("this CPU has no native bf16")  # the plan test covers the refusal
    from optimizer import optimize, runtime
    from optimizer.lossy import LossyOptions

    monkeypatch.setattr("optimizer.lossy.stage.judge_verdict", lambda verdict: ("kept", "faster (forced by the test)"))
    path = save(small_model(), tmp_path / "m.onnx")
    result = optimize(path, tmp_path / "out.onnx", lossy=LossyOptions(precision="bf16"))
    (variant,) = result.lossy.variants
    assert variant.setting is not None and variant.setting.precision == "bf16" and variant.errors
    assert result.shipped_variant == "O2+bf16" and result.config_path == tmp_path / "out.onnx.json"
    config, document = runtime.load_config(result.config_path)
    assert config.providers[0] == OPENVINO and "bf16" in dict(config.provider_options[0])["load_config"]
    assert document["model"]["variant"] == "O2+bf16"
    session = runtime.session(tmp_path / "out.onnx")
    assert session.get_providers()[0] == OPENVINO
    got = session.run(None, {"x": np.ones((2, 4), np.float32)})[0]
    expected = ort.InferenceSession(path, providers=[CPU]).run(None, {"x": np.ones((2, 4), np.float32)})[0]
    np.testing.assert_allclose(got, expected, rtol=2e-2, atol=2e-2)


def test_a_bf16_variant_competes_in_tuning_under_its_own_settings_only(tmp_path, monkeypatch):
    _require_openvino()
    if not precision_settings(ort.get_available_providers()):
        pytest.skip("this CPU has no native bf16")
    from optimizer import optimize
    from optimizer.lossy import LossyOptions

    monkeypatch.setattr("optimizer.lossy.stage.judge_verdict", lambda verdict: ("kept", "faster (forced by the test)"))
    result = optimize(save(small_model(), tmp_path / "m.onnx"), tmp_path / "out.onnx", tune=True, tune_budget=4, lossy=LossyOptions(precision="bf16"))
    bf16_configs = {r.candidate.config for r in result.tuning.records if r.candidate.variant == "O2+bf16"}
    assert bf16_configs and all(c.providers[0] == OPENVINO and "bf16" in dict(c.provider_options[0]).get("load_config", "") for c in bf16_configs)
    openvino_lossless = [r for r in result.tuning.records if r.candidate.variant != "O2+bf16" and r.candidate.config.providers[0] == OPENVINO]
    assert all("load_config" not in dict(r.candidate.config.provider_options[0]) for r in openvino_lossless)


def test_openvino_settings_are_in_the_tuning_space():
    _require_openvino()
    from optimizer.tune import build_space

    space = build_space(providers_available=ort.get_available_providers(), cores=2)
    openvino = [c for c in space.configs if c.providers[0] == OPENVINO]
    assert {dict(c.provider_options[0]).get("precision") for c in openvino} == {"FP32", "ACCURACY"}
    assert all(dict(c.provider_options[0]).get("device_type") == "CPU" for c in openvino)
    assert all(c.intra_op_num_threads == 0 and c.execution_mode == "sequential" for c in openvino)


def test_a_partial_fallback_to_the_cpu_is_reported(tmp_path):
    _require_openvino()
    path = _det_model(tmp_path)
    (fp32, *_) = providers.lossless_settings(ort.get_available_providers())
    where = providers.profiled_placement(path, fp32.runtime_config(), {"x": np.random.default_rng(0).random((4, 4), np.float32)})
    assert where.falls_back(OPENVINO) and where.nodes_by_provider[CPU] >= 1 and where.nodes_by_provider[OPENVINO] >= 1


def test_version_and_machine_name_the_flavour():
    from click.testing import CliRunner

    from optimizer.cli import cli
    from optimizer.measure import machine_info

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    flavour = providers.runtime_flavour()
    assert f"onnxruntime: {flavour.distribution} {ort.__version__}" in result.output
    info = machine_info()
    assert info["onnxruntime_flavour"] == flavour.distribution and info["providers_available"] == list(flavour.providers)


def test_static_int8_is_also_checked_on_openvino(tmp_path):
    """A QDQ graph is what OpenVINO's provider runs with its own int8 kernels: a sibling variant, checked and timed there."""
    _require_openvino()
    from optimizer import io
    from optimizer.error_budget import ErrorBudget
    from optimizer.lossy import LossyOptions, run_lossy
    from optimizer.verify import Verifier
    from tests.test_lossy import _calibration, small_cnn

    model = small_cnn(tmp_path / "cnn.onnx")
    verifier = Verifier(model, io.load(model))
    options = LossyOptions(quantize="static", calibration=_calibration(tmp_path / "calib"), budget=ErrorBudget.parse(["rel=0.5"]))
    result = run_lossy(model, verifier, options, tmp_path / "work", providers_available=ort.get_available_providers())
    by_method = {v.method: v for v in result.variants}
    assert set(by_method) == {"static", "static-openvino"}
    sibling = by_method["static-openvino"]
    assert sibling.path == by_method["static"].path and sibling.setting.provider == OPENVINO and sibling.errors
    assert sibling.status in ("kept", "discarded", "within budget") and "failed" not in sibling.reason, sibling.reason
    if sibling.status != "within budget":
        assert sibling.verdict is not None  # timed in the paired speed gate against the lossless model on both providers


def test_the_openvino_lock_pins_what_the_default_lock_pins():
    """requirements-openvino.lock is requirements.lock with onnxruntime-openvino for onnxruntime: nothing drifts."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def pins(name):
        return {line.strip() for line in (root / name).read_text().splitlines() if line.strip() and not line.startswith("#")}

    default, openvino = pins("requirements.lock"), pins("requirements-openvino.lock")
    assert {p for p in default if not p.startswith("onnxruntime==")} == {p for p in openvino if not p.startswith("onnxruntime-openvino==")}
    assert any(p.startswith("onnxruntime-openvino==") for p in openvino)
