"""`optimize(..., tune=True)` beside CPU-burning processes: the same graph ships each time, the measuring
stages hold the budget, the original never ships on a tie, and the work is shown whatever ships."""

from pathlib import Path

import pytest

from optimizer import tune
from optimizer.api import optimize
from tests.load import cpu_burners

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
BUDGET_S = 3.0


def _slowest_run_s(result) -> float:
    """One run of the slowest candidate timed, in seconds: what the budget may be overrun by."""
    return max((r.stats.max_ms for r in result.tuning.records if r.stats is not None), default=0.0) / 1e3


@pytest.mark.parametrize("sample", ["cnn_bn.onnx", "transformer_block.onnx"])
def test_under_load_the_same_graph_ships_each_time_within_the_budget(sample, tmp_path):
    shipped = []
    with cpu_burners(2):
        for attempt in range(3):
            result = optimize(SAMPLES / sample, tmp_path / f"out{attempt}.onnx", tune=True, tune_budget=BUDGET_S)
            record = result.tuning.record
            assert result.seconds["tune"] <= 1.1 * BUDGET_S + _slowest_run_s(result), (result.seconds, result.tuning.rungs)
            assert result.tuning.budget_s == BUDGET_S and record.budget_s == BUDGET_S
            assert record.preferred == tune.Candidate("O2", tune.RuntimeConfig()).key
            if result.shipped_variant == "original":  # only on a significant win over the O2 graph
                assert record.verdict is not None and record.verdict.outcome == "win" and record.chosen.variant == "original"
            assert result.shipped_reason == result.tuning.decision == record.sentence
            assert record.chosen.min_ms is not None  # the chosen candidate carries its figures
            shipped.append(result.shipped_variant)
    assert len(set(shipped)) == 1, shipped


def test_when_the_original_ships_the_pass_table_and_the_optimized_graph_stay(tmp_path, monkeypatch):
    original = tune.Candidate("original", tune.RuntimeConfig()).key
    monkeypatch.setattr(tune.decision, "choose", lambda verdicts, preferred, **_: (original, "forced by the test"))
    monkeypatch.setattr(tune, "_original_must_beat_its_graph", lambda search, times, members, verdicts, anchor, reference, key, reason, margin: (key, reason))
    result = optimize(SAMPLES / "cnn_bn.onnx", tmp_path / "out.onnx", tune=True, tune_budget=BUDGET_S)
    assert result.shipped_variant == "original" and "forced by the test" in result.shipped_reason
    assert result.after.nodes == result.before.nodes  # what was written is the original
    assert any(entry["runs"] > 0 and entry["changes"] for entry in result.pass_summary())  # what the passes did to O2
    assert result.optimized.variant == "O2" and result.optimized.stats.nodes < result.before.nodes
    summary = result.to_dict()
    assert summary["optimized"]["nodes"] == result.optimized.stats.nodes and summary["shipped_reason"] == result.shipped_reason


def test_the_original_that_won_by_its_settings_gives_way_to_the_optimized_graph_under_them(tmp_path, monkeypatch):
    """Forced: the original under some settings wins against the preferred candidate. Unless it also beats the
    optimized graph under the same settings beyond the noise, it does not ship."""
    calls = {}

    def pick_the_original(verdicts, preferred, **_):
        key = next((k for k in verdicts if k.startswith("original")), preferred)
        calls["forced"] = key
        return key, "forced by the test"

    monkeypatch.setattr(tune.decision, "choose", pick_the_original)
    result = optimize(SAMPLES / "cnn_bn.onnx", tmp_path / "out.onnx", tune=True, tune_budget=BUDGET_S)
    if result.shipped_variant == "original":  # it really beat its twin under the same settings
        assert "beats the O2 graph under the same settings" in result.shipped_reason
    else:
        assert result.shipped_variant == "O2" and calls.get("forced", "").startswith("original")
