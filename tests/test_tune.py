"""The tuner: search-space pruning, successive halving on real onnxruntime sessions, the decision record,
the hard budget, and the same choice beside CPU-burning processes (the rule itself: tests/test_decision.py)."""

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizer import tune
from optimizer.measure import Deadline
from optimizer.runtime import SPINNING_KEY, RuntimeConfig
from tests.load import cpu_burners

pytestmark = pytest.mark.providers  # also run on the OpenVINO flavour in CI (make test-providers RUNTIME=openvino)

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


def _slowest_run_s(result) -> float:
    """One run of the slowest candidate timed, in seconds: what the budget may be overrun by."""
    return max(r.stats.max_ms for r in result.records if r.stats is not None) / 1e3


def _within_budget(result, wall_s: float, budget_s: float) -> bool:
    return wall_s <= 1.1 * budget_s + _slowest_run_s(result)


def _tune(*args, **kwargs):
    start = time.perf_counter()
    result = tune.tune(*args, **kwargs)
    return result, time.perf_counter() - start


def test_tune_times_candidates_and_explains_the_choice(fast_and_slow):
    fast, _ = fast_and_slow
    space = tune.build_space(inter_op_speedup=1.0, op_types=["MatMul"])
    result, wall = _tune({"original": fast}, FEEDS, space, budget_s=6)
    assert _within_budget(result, wall, 6) and result.seconds <= wall
    timed = [r for r in result.records if r.ratios]
    untimed = [r for r in result.records if not r.ratios and r.candidate != result.reference]
    assert timed and all(r.eliminated_at == 0 for r in untimed)  # what the budget could not cover is marked
    assert result.reference_stats.min_ms > 0 and result.chosen_stats.min_ms > 0
    assert result.chosen.variant == "original"
    record = result.record
    assert record.preferred == result.reference.key and record.sentence == result.decision
    if result.chosen.config == RuntimeConfig():
        assert result.decision.startswith("onnxruntime's defaults on the original graph ship")
    else:
        assert record.verdict.outcome == "win" and "faster than" in result.decision and result.speedup > 1 + result.noise
    measured = result.measured()
    assert {"median_ms", "p90_ms", "p99_ms", "baseline_median_ms", "candidates", "search"} <= set(measured)
    assert {"cpu", "cores", "onnxruntime", "providers_available"} <= set(result.machine)


def test_the_decision_record_carries_every_figure_one_way(fast_and_slow):
    fast, slow = fast_and_slow
    space = tune.SearchSpace([RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1)], {}, [])
    result, _ = _tune({"original": slow, "O2": fast}, FEEDS, space, budget_s=5, shipped_variant="O2")
    record = result.record
    assert record.preferred == "O2 | " + RuntimeConfig().label()
    assert record.chosen.key == result.chosen.key and record.chosen.min_ms == result.chosen_stats.min_ms  # the chosen one has its figures
    assert record.chosen.median_ms is not None and record.chosen.p90_ms is not None
    assert record.candidates[0].outcome == "preferred" and record.rounds >= 6 and record.budget_s == 5 and record.spent_s > 0
    by_key = {c.key: c for c in record.candidates}
    for r in result.records:  # the table's ratio and the record's speedup are one number
        if r.verdict is not None and r.candidate.key in by_key and by_key[r.candidate.key].speedup is not None:
            assert by_key[r.candidate.key].speedup == pytest.approx(1 / r.ratios[-1])
    original = by_key["original | " + RuntimeConfig().label()]
    assert original.outcome == "loss" and original.interval[1] < 1  # 24 MatMuls against one
    data = result.to_dict()
    assert {"chosen", "measured", "final", "space", "machine", "decision"} <= set(data)
    assert data["decision"]["sentence"] == data["measured"]["decision"] and data["decision"]["chosen"]["key"] == result.chosen.key


def test_a_slower_optimized_graph_never_ships(fast_and_slow):
    fast, slow = fast_and_slow
    space = tune.SearchSpace([RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1)], {}, [])
    result = tune.tune({"original": fast, "O3": slow}, FEEDS, space, budget_s=8, shipped_variant="O3")
    assert result.chosen.variant == "original" and result.record.verdict.outcome == "win"
    assert "original graph ships" in result.decision


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
    assert {c.outcome for c in result.record.candidates if c.key == failed[0].candidate.key} == {"failed"}


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
    result, wall = _tune({"original": slow, "O1": slow, "O2": fast, "O3": fast}, FEEDS, space, budget_s=4, shipped_variant="O3")
    assert _within_budget(result, wall, 4)
    assert result.chosen.variant in ("O2", "O3")
    assert result.rungs[0]["stage"] == "search" and result.rungs[0]["candidates"] >= 2  # the budget reaches several, not none


def test_a_budget_too_small_for_two_rounds_keeps_the_preferred_candidate(fast_and_slow):
    fast, slow = fast_and_slow
    space = tune.SearchSpace([RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1)], {}, [])
    result, wall = _tune({"original": slow, "O2": fast}, FEEDS, space, budget_s=0.001, shipped_variant="O2")
    assert result.chosen == tune.Candidate("O2", RuntimeConfig())
    assert "cannot hold two rounds" in result.decision and result.budget_s == 0.001
    assert result.chosen_stats.min_ms > 0 and result.record.chosen.min_ms == result.chosen_stats.min_ms
    assert wall < 2  # one session and two runs, nothing more


def test_one_deadline_is_shared_and_progress_shows_time_left(fast_and_slow):
    fast, _ = fast_and_slow
    deadline = Deadline(3.0)
    time.sleep(0.5)  # an earlier stage spent part of it
    seen, fractions = [], []
    space = tune.SearchSpace([RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1)], {}, [])
    result = tune.tune({"original": fast}, FEEDS, space, deadline=deadline, on_progress=lambda label, f: fractions.append(f), on_status=seen.append)
    assert result.budget_s == 3.0 and deadline.elapsed() <= 3.0 * 1.1 + _slowest_run_s(result)
    assert seen and all(p.remaining_s is not None and p.elapsed_s >= 0.5 and p.budget_s == 3.0 for p in seen)
    assert fractions == sorted(fractions) and fractions[0] > 0.1  # time-based: it starts where the earlier stage left it


# -- beside CPU-burning processes ------------------------------------------------------------------


@pytest.fixture
def loaded():
    """Two busy-looping processes beside the test (the machine a CI runner is), stopped afterwards."""
    with cpu_burners(2) as burners:
        yield burners


@pytest.fixture(scope="module")
def cnn_variants(tmp_path_factory):
    from optimizer.api import optimize

    source = Path(__file__).resolve().parents[1] / "sample_models" / "cnn_bn.onnx"
    o2 = tmp_path_factory.mktemp("cnn") / "cnn_o2.onnx"
    assert optimize(source, o2, level="O2", tune=False).verified
    return {"original": str(source), "O2": str(o2)}


def test_under_load_the_same_graph_ships_each_time_within_the_budget(loaded, cnn_variants):
    feeds = {"image": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    space = tune.SearchSpace([RuntimeConfig()], {}, [])  # the graphs alone: ORT's own fusions make them near-equal
    chosen = []
    for _ in range(3):
        result, wall = _tune(cnn_variants, feeds, space, budget_s=2.5, shipped_variant="O2")
        assert _within_budget(result, wall, 2.5), (wall, result.rungs)
        if result.record.verdict is None or result.record.verdict.outcome != "win":
            assert result.chosen.variant == "O2"  # the original never ships on a tie
        chosen.append(result.chosen.key)
    assert len(set(chosen)) == 1, chosen


def test_under_load_a_true_difference_is_found_each_time(loaded, fast_and_slow):
    fast, slow = fast_and_slow
    space = tune.SearchSpace([RuntimeConfig(), RuntimeConfig(intra_op_num_threads=1)], {}, [])
    for _ in range(3):
        result, wall = _tune({"original": slow, "O2": fast}, FEEDS, space, budget_s=2.5, shipped_variant="O2")
        assert _within_budget(result, wall, 2.5), (wall, result.rungs)
        assert result.chosen.variant == "O2"
