"""The decision rule on synthetic noisy block minimums: false wins, power, ties, inconclusive, sequential testing."""

import numpy as np
import pytest

from optimizer import decision

LOOKS = (6, 9, 12, 15, 18, 21, 24, 27, 30)
"""The rounds at which a sequential test looks again (the tuner's final run: 6, then 3 more at a time)."""


def _block_minimums(rng, rounds: int, base: float, noise: float, contended: float = 0.0, drift=None, runs: int = 5) -> dict[int, float]:
    """Per-round block minimums of `runs` runs each: lognormal run noise (`noise`), a fraction
    `contended` of runs in a slow mode 1.8x the fast one, and a drift factor shared by the round."""
    times = base * np.exp(rng.normal(0.0, noise, (rounds, runs)))
    times *= np.where(rng.random((rounds, runs)) < contended, 1.8, 1.0)
    if drift is not None:
        times *= drift[:rounds, None]
    return dict(enumerate(times.min(axis=1)))


def _pair(seed: int, speedup: float, noise: float, contended: float = 0.0, rounds: int = 30):
    rng = np.random.default_rng(seed)
    drift = np.exp(rng.normal(0.0, 0.1, rounds))  # the host drifts: a round hits both alike
    reference = _block_minimums(rng, rounds, 1.0, noise, contended, drift)
    candidate = _block_minimums(rng, rounds, 1.0 / speedup, noise, contended, drift)
    return candidate, reference


def _sequential(candidate, reference, margin=decision.NOISE_FLOOR) -> decision.Verdict:
    """Look at 6, 9, ... rounds; stop at the first settled verdict (as the tuner does)."""
    for n in LOOKS:
        verdict = decision.compare("c", {r: candidate[r] for r in range(n)}, "ref", {r: reference[r] for r in range(n)}, margin=margin)
        if not decision.undecided({"c": verdict}):
            return verdict
    return verdict


@pytest.mark.parametrize("noise, contended", [(0.2, 0.0), (0.3, 0.0), (0.2, 0.3), (0.3, 0.4)], ids=["20%", "30%", "20%-bimodal", "30%-bimodal"])
def test_identical_candidates_rarely_win_under_noise_with_repeated_looks(noise, contended):
    trials = 200
    wins = sum(_sequential(*_pair(seed, 1.0, noise, contended)).outcome == "win" for seed in range(trials))
    assert wins / trials < 0.05


def test_identical_candidates_rarely_win_when_whole_blocks_are_slow():
    """Bimodal by block: a whole block lands in the slow mode (another process took the core)."""
    wins = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        pair = []
        for _ in range(2):
            fast = _block_minimums(rng, 30, 1.0, 0.2)
            pair.append({r: m * (1.8 if rng.random() < 0.3 else 1.0) for r, m in fast.items()})
        wins += _sequential(*pair).outcome == "win"
    assert wins / 200 < 0.05


def test_a_true_1_3x_difference_at_20_percent_noise_is_found_within_30_rounds():
    found = [_sequential(*_pair(1000 + seed, 1.3, 0.2)) for seed in range(100)]
    assert sum(v.outcome == "win" for v in found) >= 95
    assert np.mean([v.rounds for v in found if v.outcome == "win"]) < 20  # stops early, on average
    slower = [_sequential(*_pair(2000 + seed, 1 / 1.3, 0.2)) for seed in range(50)]
    assert sum(v.outcome == "loss" for v in slower) >= 47


def test_the_interval_contains_the_estimate_and_is_deterministic():
    candidate, reference = _pair(7, 1.1, 0.2)
    first = decision.compare("c", candidate, "ref", reference)
    assert first == decision.compare("c", candidate, "ref", reference)
    assert first.low <= first.ratio <= first.high and first.rounds == 30
    assert first.to_dict()["interval"] == [round(first.low, 4), round(first.high, 4)]


def test_only_rounds_both_were_timed_in_are_paired():
    candidate = {0: 1.0, 1: 1.0, 2: 1.0, 5: 1.0, 6: 1.0, 7: 1.0, 8: 1.0}
    reference = {r: 2.0 for r in range(7)}
    verdict = decision.compare("c", candidate, "ref", reference)
    assert verdict.rounds == 5 and verdict.outcome == "inconclusive"  # rounds 0, 1, 2, 5, 6: too few
    assert "needs 6" in verdict.sentence


def test_a_single_round_never_decides():
    verdict = decision.compare("c", {0: 0.1}, "ref", {0: 1.0})
    assert verdict.outcome == "inconclusive" and not verdict.settled


def test_extreme_noise_is_inconclusive():
    rng = np.random.default_rng(3)
    candidate, reference = (dict(enumerate(np.exp(rng.normal(0, 1.0, 12)))) for _ in range(2))
    assert decision.compare("c", candidate, "ref", reference).outcome == "inconclusive"
    steady_candidate, steady_reference = _pair(4, 1.0, 0.05)
    loud = decision.compare("c", steady_candidate, "ref", steady_reference, margin=0.3)  # the control says the host is too loud
    assert loud.outcome == "inconclusive" and "at this noise" in loud.sentence


def test_noise_margin_is_the_control_distance_at_least_the_floor():
    reference = {r: 1.0 for r in range(8)}
    assert decision.noise_margin({r: 1.005 for r in range(8)}, reference) == decision.NOISE_FLOOR
    assert decision.noise_margin({r: 1.08 for r in range(8)}, reference) == pytest.approx(0.08)
    assert decision.noise_margin(None, reference) == decision.NOISE_FLOOR


def test_a_difference_inside_the_margin_is_a_settled_tie():
    reference = {r: 1.0 + 0.001 * (r % 3) for r in range(10)}
    candidate = {r: 0.99 + 0.001 * (r % 2) for r in range(10)}
    verdict = decision.compare("c", candidate, "ref", reference)
    assert verdict.outcome == "tie" and verdict.settled and "within the noise" in verdict.sentence


def test_undecided_names_the_pairs_to_measure_again():
    close_candidate, close_reference = _pair(5, 1.03, 0.2, rounds=6)
    clear_candidate, clear_reference = _pair(6, 2.0, 0.05, rounds=6)
    close = decision.compare("close", close_candidate, "ref", close_reference)
    clear = decision.compare("clear", clear_candidate, "ref", clear_reference)
    assert clear.outcome == "win" and clear.settled
    assert decision.undecided({"close": close, "clear": clear}) == ["close"]


# -- choosing ----------------------------------------------------------------------------------

def _verdict(name: str, speedup: float, noise: float = 0.02, seed: int = 0) -> decision.Verdict:
    candidate, reference = _pair(seed, speedup, noise, rounds=12)
    return decision.compare(name, candidate, "O3|defaults", reference)


def test_a_tie_goes_to_the_preferred_candidate():
    verdicts = {"original|defaults": _verdict("original|defaults", 1.01), "O3|intra=1": _verdict("O3|intra=1", 1.015, seed=1)}
    assert {v.outcome for v in verdicts.values()} == {"tie"}
    chosen, why = decision.choose(verdicts, "O3|defaults")
    assert chosen == "O3|defaults" and "nothing beats it beyond the noise" in why


def test_settings_that_beat_the_noise_ship():
    verdicts = {"O3|intra=1": _verdict("O3|intra=1", 1.25), "original|defaults": _verdict("original|defaults", 0.99, seed=1)}
    chosen, why = decision.choose(verdicts, "O3|defaults")
    assert chosen == "O3|intra=1" and "faster than O3|defaults" in why


def test_the_original_ships_only_when_it_is_significantly_faster():
    verdicts = {"original|intra=1": _verdict("original|intra=1", 1.7), "O3|intra=1": _verdict("O3|intra=1", 1.5, seed=1)}
    chosen, why = decision.choose(verdicts, "O3|defaults")
    assert chosen == "original|intra=1" and "1.7" in why
    tied = {"original|defaults": _verdict("original|defaults", 1.02)}
    assert decision.choose(tied, "O3|defaults")[0] == "O3|defaults"  # the original never wins a tie
    one_round = {"original|defaults": decision.compare("original|defaults", {0: 0.1}, "O3|defaults", {0: 1.0})}
    assert decision.choose(one_round, "O3|defaults")[0] == "O3|defaults"  # nor a single round


def test_when_the_leader_failed_or_nothing_was_timed_the_preferred_ships():
    assert decision.choose({}, "O3|defaults") == ("O3|defaults", "nothing else could be timed against it")
    inconclusive = {"a": decision.compare("a", {0: 0.5, 1: 0.5}, "O3|defaults", {0: 1.0, 1: 1.0})}
    chosen, why = decision.choose(inconclusive, "O3|defaults")
    assert chosen == "O3|defaults" and "inconclusive at this noise" in why
    assert decision.choose({"a": _verdict("a", 2.0)}, "O3|defaults", eligible=[])[0] == "O3|defaults"


def test_winners_the_rounds_cannot_tell_apart_go_by_the_fixed_priority():
    """Two settings both beat the defaults; their intervals overlap: the optimized graph ships, not the original,
    whichever measured a hair faster this time (that is what flipped from run to run under load)."""
    original = decision.Verdict("original|intra=1", "O2|defaults", decision.WIN, 0.80, 0.76, 0.84, 0.03, 12, True)
    optimized = decision.Verdict("O2|intra=1", "O2|defaults", decision.WIN, 0.82, 0.78, 0.86, 0.03, 12, True)
    verdicts = {v.candidate: v for v in (original, optimized)}
    priority = ["O2|intra=1", "original|intra=1"]
    assert decision.choose(verdicts, "O2|defaults", priority=priority)[0] == "O2|intra=1"
    assert decision.choose(verdicts, "O2|defaults")[0] == "original|intra=1"  # no priority: the lowest interval
    clearly = decision.Verdict("original|intra=1", "O2|defaults", decision.WIN, 0.50, 0.47, 0.53, 0.03, 12, True)
    assert decision.choose({**verdicts, clearly.candidate: clearly}, "O2|defaults", priority=priority)[0] == "original|intra=1"
