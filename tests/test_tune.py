"""The tuner: search-space pruning, successive halving on real onnxruntime sessions, the decision rules."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizer import tune
from optimizer.runtime import SPINNING_KEY, RuntimeConfig

FEEDS = {"x": np.random.default_rng(0).standard_normal((64, 256)).astype(np.float32)}


def _model(path, matmuls: int) -> str:
    """x[64,256] -> `matmuls` chained MatMuls (256x256) -> Relu -> y: more MatMuls, slower model."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 256])
    rng = np.random.default_rng(1)
    nodes, inits, current = [], [], "x"
    for i in range(matmuls):
        inits.append(numpy_helper.from_array((rng.standard_normal((256, 256)) / 16).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]))
        current = f"m{i}"
    nodes.append(helper.make_node("Relu", [current], ["y"]))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(scope="module")
def fast_and_slow(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    return _model(folder / "fast.onnx", 1), _model(folder / "slow.onnx", 24)


# -- the search space -----------------------------------------------------------------------------


def test_chain_graph_skips_parallel_execution_and_says_why():
    space = tune.build_space(cores=4, inter_op_speedup=1.0, op_types=["MatMul"])
    assert all(c.execution_mode == "sequential" for c in space.configs)
    assert any("parallel execution" in reason and "1.00x" in reason for reason in space.skipped)
    assert space.configs[0] == RuntimeConfig()  # the reference comes first


def test_branchy_graph_gets_parallel_candidates_within_the_cores():
    space = tune.build_space(cores=4, inter_op_speedup=1.6, op_types=["MatMul"])
    parallel = [c for c in space.configs if c.execution_mode == "parallel"]
    assert {c.inter_op_num_threads for c in parallel} == {2, 4}
    assert all(c.inter_op_num_threads * c.intra_op_num_threads <= 4 for c in parallel)
    sequential = [c for c in space.configs if c.execution_mode == "sequential"]
    assert all(c.inter_op_num_threads == 0 for c in sequential)  # inter-op threads only matter in parallel mode


def test_spinning_varies_only_where_a_thread_pool_exists():
    space = tune.build_space(cores=2, inter_op_speedup=1.0, op_types=[])
    one_thread = [c for c in space.configs if c.intra_op_num_threads == 1]
    assert len(one_thread) == 1 and one_thread[0].spinning
    two = [c for c in space.configs if c.intra_op_num_threads == 2]
    assert {c.spinning for c in two} == {True, False}
    assert dict(next(c for c in two if not c.spinning).session_config_entries) == {SPINNING_KEY: "0"}


def test_extended_level_only_with_convolutions():
    without = tune.build_space(cores=2, inter_op_speedup=1.0, op_types=["MatMul"])
    assert {c.graph_optimization_level for c in without.configs} == {"all"}
    with_conv = tune.build_space(cores=2, inter_op_speedup=1.0, op_types=["Conv"])
    assert {c.graph_optimization_level for c in with_conv.configs} == {"all", "extended"}


def test_intra_threads_follow_the_cores_or_the_user():
    assert {c.intra_op_num_threads for c in tune.build_space(cores=8, inter_op_speedup=1.0).configs} == {0, 1, 2, 4, 8}
    assert {c.intra_op_num_threads for c in tune.build_space(cores=1, inter_op_speedup=1.0).configs} == {0, 1}
    assert {c.intra_op_num_threads for c in tune.build_space(cores=8, intra=[3], inter_op_speedup=1.0).configs} == {0, 3}


def test_throughput_pairs_concurrent_requests_with_threads_each():
    space = tune.build_space(objective="throughput", cores=4, inter_op_speedup=1.0)
    pairs = {(c.concurrent_requests, c.intra_op_num_threads) for c in space.configs if c.concurrent_requests > 1}
    assert pairs == {(2, 1), (2, 2), (4, 1)}
    assert tune.build_space(objective="latency", cores=4, inter_op_speedup=1.0).dimensions["concurrent_requests"] == [1]


def test_providers_come_from_what_onnxruntime_offers():
    space = tune.build_space(cores=2, inter_op_speedup=1.0, providers_available=["CUDAExecutionProvider", "AzureExecutionProvider", "CPUExecutionProvider"])
    cuda = [c for c in space.configs if c.providers[0] == "CUDAExecutionProvider"]
    assert cuda and all(c.providers == ("CUDAExecutionProvider", "CPUExecutionProvider") for c in cuda)
    assert {dict(c.provider_options[0]).get("cudnn_conv_algo_search") for c in cuda} == {None, "EXHAUSTIVE"}
    assert any("AzureExecutionProvider" in reason for reason in space.skipped)
    with pytest.raises(tune.TuningError, match="TensorrtExecutionProvider"):
        tune.build_space(providers=["TensorrtExecutionProvider"], providers_available=["CPUExecutionProvider"])


# -- the search and the decision -------------------------------------------------------------------


def test_tune_times_candidates_and_explains_the_choice(fast_and_slow):
    fast, _ = fast_and_slow
    space = tune.build_space(inter_op_speedup=1.0, op_types=["MatMul"])
    result = tune.tune({"original": fast}, FEEDS, space, budget_s=6)
    assert result.seconds < 6 + 5  # within the budget, give or take the final run's last round
    timed = [r for r in result.records if r.ratios]
    untimed = [r for r in result.records if not r.ratios and r.candidate != result.reference]
    assert timed and all(r.eliminated_at == 0 for r in untimed)  # what the budget could not cover is marked
    assert result.reference_stats.min_ms > 0 and result.chosen_stats.min_ms > 0
    assert result.chosen.variant == "original"
    if result.chosen.config == RuntimeConfig():
        assert result.decision.startswith("onnxruntime's defaults")
    else:
        assert "faster than the original under onnxruntime's defaults" in result.decision and result.speedup > 1 + result.noise
    measured = result.measured()
    assert {"median_ms", "p90_ms", "p99_ms", "baseline_median_ms", "candidates", "search"} <= set(measured)
    assert {"cpu", "cores", "onnxruntime", "providers_available"} <= set(result.machine)


def test_a_slower_optimized_graph_never_ships(fast_and_slow):
    fast, slow = fast_and_slow
    space = tune.SearchSpace([RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1)], {}, [])
    result = tune.tune({"original": fast, "O3": slow}, FEEDS, space, budget_s=8, shipped_variant="O3")
    assert result.chosen.variant == "original"
    assert "original" in result.decision


def test_a_faster_optimized_graph_ships(fast_and_slow):
    fast, slow = fast_and_slow
    space = tune.SearchSpace([RuntimeConfig()], {}, [])
    result = tune.tune({"original": slow, "O3": fast}, FEEDS, space, budget_s=8, shipped_variant="O3")
    assert result.chosen.variant == "O3"
    assert result.speedup > 2


def test_a_configuration_onnxruntime_rejects_is_recorded_and_skipped(fast_and_slow):
    fast, _ = fast_and_slow
    broken = RuntimeConfig(session_config_entries=(("session.load_model_format", "ORT"),))
    space = tune.SearchSpace([RuntimeConfig(), broken, RuntimeConfig(intra_op_num_threads=1)], {}, [])
    result = tune.tune({"original": fast}, FEEDS, space, budget_s=5)
    failed = [r for r in result.records if r.error]
    assert [r.candidate.config for r in failed] == [broken]
    assert result.chosen.config != broken


def test_throughput_objective_reports_requests_per_second(fast_and_slow):
    _, slow = fast_and_slow
    space = tune.SearchSpace([RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1, concurrent_requests=2)], {}, [])
    result = tune.tune({"original": slow}, FEEDS, space, objective="throughput", budget_s=6)
    measured = result.measured()
    assert measured["throughput_per_s"] > 0 and measured["baseline_throughput_per_s"] > 0


def test_exhaustive_times_every_candidate(fast_and_slow):
    fast, _ = fast_and_slow
    space = tune.SearchSpace([RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1), RuntimeConfig(intra_op_num_threads=2)], {}, [])
    ratios, candidates, seconds = tune.exhaustive({"original": fast}, FEEDS, space, rounds=2)
    assert set(ratios) == set(candidates) and len(ratios) == 3 and seconds > 0


def test_budget_bounds_a_large_space(fast_and_slow):
    fast, slow = fast_and_slow
    configs = [RuntimeConfig()] + [RuntimeConfig(intra_op_num_threads=t, session_config_entries=e) for t in (1, 2) for e in ((), ((SPINNING_KEY, "0"),))]
    space = tune.SearchSpace(configs, {}, [])
    result = tune.tune({"original": slow, "O1": slow, "O2": fast, "O3": fast}, FEEDS, space, budget_s=4, shipped_variant="O3")
    assert result.seconds < 4 * 2.5  # the last group and the final run may overrun a little, not several-fold
    assert result.chosen.variant in ("O2", "O3")


# -- the decision, on given scores ----------------------------------------------------------------

def _keys(*candidates):
    return {c.key: c for c in candidates}


DEFAULTS, ONE = RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1)
REF, REF_ONE = tune.Candidate("original", DEFAULTS), tune.Candidate("original", ONE)
O3, O3_ONE = tune.Candidate("O3", DEFAULTS), tune.Candidate("O3", ONE)
ALL = _keys(REF, REF_ONE, O3, O3_ONE)


def test_decide_keeps_defaults_within_noise_and_prefers_the_requested_graph_on_a_tie():
    score = {REF.key: 100.0, REF_ONE.key: 99.0, O3.key: 99.5, O3_ONE.key: 98.5}
    chosen, why = tune.decide(score, 0.02, O3_ONE.key, REF.key, ALL, "O3")
    assert chosen == O3.key and "already best" in why


def test_decide_takes_settings_that_beat_the_noise():
    score = {REF.key: 100.0, REF_ONE.key: 80.0, O3.key: 99.0, O3_ONE.key: 79.0}
    chosen, why = tune.decide(score, 0.02, O3_ONE.key, REF.key, ALL, "O3")
    assert chosen == O3_ONE.key and "faster than the original under onnxruntime's defaults" in why and "ships the O3 graph" in why


def test_decide_never_ships_a_graph_slower_than_the_original():
    score = {REF.key: 100.0, REF_ONE.key: 70.0, O3.key: 120.0, O3_ONE.key: 80.0}
    chosen, why = tune.decide(score, 0.02, REF_ONE.key, REF.key, ALL, "O3")
    assert chosen == REF_ONE.key and "the original graph ships" in why and "1.14x" in why
    chosen, _ = tune.decide({REF.key: 100.0, O3.key: 120.0}, 0.02, REF.key, REF.key, ALL, "O3")
    assert chosen == REF.key


def test_decide_falls_back_to_defaults_when_the_winner_failed_in_the_final():
    chosen, why = tune.decide({REF.key: 100.0, O3.key: 100.0}, 0.02, O3_ONE.key, REF.key, ALL, "O3")
    assert chosen == O3.key and "failed in the final run" in why
