"""The timing harness on real onnxruntime sessions: rotation plan, block counts, budget, the shared deadline,
per-round block records, statistics."""

import time

import numpy as np
import onnxruntime as ort
import pytest

from optimizer.measure import Deadline, LatencyStats, machine_info, time_blocks, time_candidates
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


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_deadline_counts_down_and_expires():
    clock = _Clock()
    deadline = Deadline(10.0, clock=clock)
    assert deadline.remaining() == 10.0 and not deadline.expired() and deadline.fraction() == 0.0
    clock.now += 4
    assert deadline.elapsed() == 4 and deadline.remaining() == 6 and deadline.fraction() == pytest.approx(0.4)
    progress = deadline.progress("tuning")
    assert (progress.label, progress.elapsed_s, progress.remaining_s, progress.budget_s) == ("tuning", 4, 6, 10.0)
    clock.now += 7
    assert deadline.expired() and deadline.remaining() == 0 and deadline.fraction() == 1.0
    unbounded = Deadline(None, clock=clock)
    assert unbounded.remaining() == float("inf") and not unbounded.expired() and unbounded.progress("x").remaining_s is None


def test_blocks_are_recorded_by_round_and_go_on_where_they_stopped(sessions):
    runners = _runners(sessions)
    times = time_blocks(runners, rounds=3, block_runs=2, pause_s=0.0, warmup_runs=1)
    assert times.rounds == 3 and all(sorted(times.minimums(name)) == [0, 1, 2] for name in sessions)
    assert all(len(times.runs[name][r]) == 2 for name in sessions for r in range(3))
    subset = {name: runners[name] for name in ("baseline", "other")}
    time_blocks(subset, rounds=2, pause_s=0.0, into=times)  # the undecided pair, measured again
    assert times.rounds == 5 and times.block_runs == 2
    assert sorted(times.minimums("other")) == [0, 1, 2, 3, 4] and sorted(times.minimums("control")) == [0, 1, 2]
    assert times.stats("other").blocks == 5 and times.stats("other").runs == 10


def test_a_deadline_stops_within_one_run_and_drops_the_cut_block():
    def slow():
        time.sleep(0.05)

    deadline = Deadline(0.3)
    times = time_blocks({"a": slow, "b": slow}, rounds=100, block_runs=3, pause_s=0.0, warmup_runs=1, deadline=deadline)
    assert times.stopped == "deadline" and deadline.elapsed() < 0.3 + 0.05 + 0.04
    assert all(len(block) == 3 for name in ("a", "b") for block in times.runs.get(name, {}).values())


def test_time_candidates_with_an_expired_deadline_still_gives_every_candidate_a_figure(sessions):
    stats, plan = time_candidates(_runners(sessions), rounds=5, block_runs=2, pause_s=0.0, warmup_runs=2, deadline=Deadline(0.0))
    assert set(stats) == set(sessions) and all(s.blocks == 0 and s.runs >= 1 for s in stats.values())
    assert plan["rounds"] == 0 and plan["stopped"] == "deadline"
