"""The timing harness on real onnxruntime sessions: rotation plan, block counts, budget, statistics."""

import numpy as np
import onnxruntime as ort
import pytest

from optimizer.measure import LatencyStats, machine_info, time_candidates
from tests.models import small_model


@pytest.fixture(scope="module")
def sessions():
    proto = small_model().SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return {name: ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"]) for name in ("baseline", "control", "other")}


def _runners(sessions, order: list[str] | None = None):
    def runner(name):
        session = sessions[name]
        feeds = {i.name: np.ones([d if isinstance(d, int) else 2 for d in i.shape], np.float32) for i in session.get_inputs()}

        def run():
            if order is not None:
                order.append(name)
            return session.run(None, feeds)

        return run

    return {name: runner(name) for name in sessions}


def test_every_candidate_gets_one_block_per_round_in_rotated_order(sessions):
    visits: list[str] = []
    stats, plan = time_candidates(_runners(sessions, visits), rounds=3, block_runs=2, pause_s=0.0, warmup_runs=1)
    assert plan["rounds"] == 3 and plan["block_runs"] == 2
    for name in sessions:
        assert stats[name].runs == 6 and stats[name].blocks == 3
    # after warm-up (one run each), each visit is one untimed + two timed runs; the first visitor rotates
    timed = visits[len(sessions):]
    firsts = [timed[i * 3 * len(sessions)] for i in range(3)]
    assert firsts == ["baseline", "control", "other"]


def test_budget_stops_after_three_rounds_at_least(sessions):
    stats, plan = time_candidates(_runners(sessions), rounds=50, block_runs=1, pause_s=0.0, warmup_runs=1, budget_s=0.0)
    assert plan["rounds"] == 3 and plan["rounds_requested"] == 50
    assert all(s.blocks == 3 for s in stats.values())


def test_statistics_are_ordered_and_in_milliseconds():
    stats = LatencyStats.of([0.003, 0.001, 0.002, 0.010], blocks=2)
    assert stats.min_ms == pytest.approx(1.0) and stats.max_ms == pytest.approx(10.0)
    assert stats.min_ms <= stats.p10_ms <= stats.median_ms <= stats.p90_ms <= stats.max_ms
    assert stats.runs == 4 and stats.blocks == 2


def test_no_candidates_is_an_error():
    with pytest.raises(ValueError):
        time_candidates({})


def test_machine_info_records_what_figures_depend_on():
    info = machine_info()
    assert info["onnxruntime"] == ort.__version__
    assert info["cpu_count"] >= 1 and info["cpu_model"]
