"""Decisions under noise: paired comparisons of candidates timed in the same rotated blocks.

Pure logic on block minimums (`optimizer.measure.BlockTimes` records them), no onnxruntime. For a
candidate against a reference, both timed in the same rounds, the figure is the ratio of a low
percentile (the 25th) of their per-block minimums: on a shared host the slow mode (about 1.8x) mixes
in by the minute while the fast blocks of identical sessions agree within a few percent. Its
uncertainty is a bootstrap over rounds (rounds resampled jointly, so drift that hits both alike
cancels; seeded, so the same samples give the same interval). A candidate wins only when the whole
interval lies below 1 - margin, where the margin is the distance from 1.0 that a control copy of the
reference shows, at least `NOISE_FLOOR`; it loses when the whole interval lies above 1 + margin;
anything else is a tie, and a tie goes to the preferred candidate fixed in advance. With fewer than
`MIN_ROUNDS` paired rounds, or a margin above `MAX_NOISE`, the verdict is "inconclusive".

Sequential testing: `undecided` names the pairs whose interval still straddles a margin, so a
caller measures those again while its budget lasts and stops early once every pair is clear. On
synthetic samples (tests/test_decision.py) identical candidates at 20-30% noise, bimodal included,
win less than 5% of the time over looks at 6..30 rounds, and a true 1.3x at 20% noise wins within 30.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "CONFIDENCE",
    "LOW_PERCENTILE",
    "MAX_NOISE",
    "MIN_ROUNDS",
    "NOISE_FLOOR",
    "Verdict",
    "choose",
    "compare",
    "noise_margin",
    "paired_minimums",
    "paired_ratio",
    "ratio_interval",
    "undecided",
]

NOISE_FLOOR = 0.03
"""The smallest margin: minimums of identical sessions differ by a few percent on a quiet host."""
MAX_NOISE = 0.15
"""Above this margin no verdict is worth giving: 'inconclusive at this noise'."""
MIN_ROUNDS = 6
"""Fewer paired rounds give no interval: a single round (or five) never decides."""
CONFIDENCE = 0.99
"""Two-sided coverage of the interval; 0.5% each side keeps repeated looks (6..30 rounds) at 3% false wins or fewer."""
LOW_PERCENTILE = 25.0
"""The percentile of per-block minimums compared: low enough to skip the slow mode, not the single minimum."""
RESAMPLES = 1000
SEED = 0

WIN, TIE, LOSS, INCONCLUSIVE = "win", "tie", "loss", "inconclusive"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A candidate against a reference: the outcome, the time ratio (candidate / reference) and its interval."""

    candidate: str
    reference: str
    outcome: str  # win / tie / loss / inconclusive
    ratio: float  # candidate time over reference time; below 1: the candidate is faster (nan: no rounds)
    low: float
    high: float
    margin: float
    rounds: int
    settled: bool  # a win, a loss, or an interval inside the margin: more rounds would not change it

    @property
    def speedup(self) -> float:
        """The reference's time over the candidate's (above 1: the candidate is faster)."""
        return 1.0 / self.ratio if self.ratio > 0 else float("nan")

    @property
    def sentence(self) -> str:
        """The verdict for people, with the interval and the noise margin."""
        spread = f"interval {self.low:.3f}-{self.high:.3f} of the time over {self.rounds} paired rounds, noise margin {self.margin:.1%}"
        if self.outcome == WIN:
            return f"{self.candidate} is {self.speedup:.2f}x faster than {self.reference} ({spread})"
        if self.outcome == LOSS:
            return f"{self.candidate} is {self.ratio:.2f}x slower than {self.reference} ({spread})"
        if self.outcome == TIE:
            return f"{self.candidate} ties with {self.reference}: {self.ratio:.2f}x its time, within the noise ({spread})"
        if self.rounds < MIN_ROUNDS:
            return f"{self.candidate} vs {self.reference}: inconclusive, {self.rounds} paired rounds (a verdict needs {MIN_ROUNDS})"
        return f"{self.candidate} vs {self.reference}: inconclusive at this noise ({spread})"

    def to_dict(self) -> dict:
        return {
            "candidate": self.candidate, "reference": self.reference, "outcome": self.outcome,
            "ratio": _rounded(self.ratio), "interval": [_rounded(self.low), _rounded(self.high)],
            "margin": round(self.margin, 4), "rounds": self.rounds, "settled": self.settled, "sentence": self.sentence,
        }


def _rounded(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def paired_minimums(candidate: Mapping[int, float], reference: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """The block minimums of the rounds both were timed in, in round order (candidate's, reference's)."""
    rounds = sorted(set(candidate) & set(reference))
    return np.array([candidate[r] for r in rounds], dtype=np.float64), np.array([reference[r] for r in rounds], dtype=np.float64)


def ratio_interval(candidate: Sequence[float], reference: Sequence[float], *, confidence: float = CONFIDENCE, seed: int = SEED) -> tuple[float, float, float]:
    """(ratio, low, high): the ratio of low percentiles of paired block minimums and its bootstrap interval.

    Rounds are resampled jointly (pairs stay pairs); the same samples and seed give the same interval.
    """
    cand, ref = np.asarray(candidate, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if cand.size == 0 or cand.size != ref.size:
        return float("nan"), float("nan"), float("nan")
    ratio = float(np.percentile(cand, LOW_PERCENTILE) / np.percentile(ref, LOW_PERCENTILE))
    index = np.random.default_rng(seed).integers(0, cand.size, (RESAMPLES, cand.size))
    resampled = np.percentile(cand[index], LOW_PERCENTILE, axis=1) / np.percentile(ref[index], LOW_PERCENTILE, axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return ratio, float(min(low, ratio)), float(max(high, ratio))


def paired_ratio(candidate: Mapping[int, float], reference: Mapping[int, float]) -> float:
    """The ratio of low percentiles of the block minimums both were timed in (nan: no common round)."""
    cand, ref = paired_minimums(candidate, reference)
    if cand.size == 0:
        return float("nan")
    return float(np.percentile(cand, LOW_PERCENTILE) / np.percentile(ref, LOW_PERCENTILE))


def noise_margin(control: Mapping[int, float] | None, reference: Mapping[int, float], *, floor: float = NOISE_FLOOR) -> float:
    """How far from 1.0 a control copy of the reference lands (paired as any candidate), at least `floor`."""
    ratio = paired_ratio(control, reference) if control else float("nan")
    return max(floor, abs(ratio - 1.0)) if np.isfinite(ratio) else floor


def compare(
    candidate: str,
    candidate_minimums: Mapping[int, float],
    reference: str,
    reference_minimums: Mapping[int, float],
    *,
    margin: float = NOISE_FLOOR,
    confidence: float = CONFIDENCE,
) -> Verdict:
    """The verdict on `candidate` against `reference` from their block minimums by round."""
    cand, ref = paired_minimums(candidate_minimums, reference_minimums)
    ratio, low, high = ratio_interval(cand, ref, confidence=confidence)
    rounds = int(cand.size)
    if rounds < MIN_ROUNDS or margin > MAX_NOISE or not np.isfinite(ratio):
        return Verdict(candidate, reference, INCONCLUSIVE, ratio, low, high, margin, rounds, settled=False)
    if high < 1.0 - margin:
        return Verdict(candidate, reference, WIN, ratio, low, high, margin, rounds, settled=True)
    if low > 1.0 + margin:
        return Verdict(candidate, reference, LOSS, ratio, low, high, margin, rounds, settled=True)
    if low < 1.0 - MAX_NOISE and high > 1.0 + MAX_NOISE:
        return Verdict(candidate, reference, INCONCLUSIVE, ratio, low, high, margin, rounds, settled=False)
    inside = low >= 1.0 - margin and high <= 1.0 + margin
    return Verdict(candidate, reference, TIE, ratio, low, high, margin, rounds, settled=inside)


def undecided(verdicts: Mapping[str, Verdict]) -> list[str]:
    """The candidates whose verdict more rounds could still change (sequential testing measures these again)."""
    return [name for name, verdict in verdicts.items() if not verdict.settled]


def choose(
    verdicts: Mapping[str, Verdict], preferred: str, *, eligible: Sequence[str] | None = None, priority: Sequence[str] | None = None,
) -> tuple[str, str]:
    """The candidate to ship and why: the preferred one, unless a candidate significantly beats it.

    `verdicts` are against the preferred candidate. Winners whose intervals overlap the best winner's
    cannot be told apart by these rounds: among them the first in `priority` ships (a fixed order, e.g.
    the optimized graph before the original under the same settings), so equally fast winners never
    flip from run to run with the noise; without `priority`, the one whose interval reaches lowest.
    `eligible` (default: all) restricts who may win. Ties, losses and inconclusive verdicts keep the
    preferred one. The reason is a sentence without the chosen one's name.
    """
    allowed = set(verdicts if eligible is None else eligible)
    winners = [v for name, v in verdicts.items() if name in allowed and v.outcome == WIN]
    if winners:
        best = min(winners, key=lambda v: (v.high, v.ratio))
        rank = {name: index for index, name in enumerate(priority or ())}
        alike = [v for v in winners if v.low <= best.high]
        pick = min(alike, key=lambda v: (rank.get(v.candidate, len(rank)), v.high, v.ratio)) if priority else best
        return pick.candidate, pick.sentence
    if not verdicts:
        return preferred, "nothing else could be timed against it"
    if all(v.outcome == INCONCLUSIVE for v in verdicts.values()):
        example = max(verdicts.values(), key=lambda v: v.rounds)
        return preferred, f"inconclusive at this noise, so the preferred candidate ships ({example.sentence})"
    closest = min((v for v in verdicts.values() if v.outcome != INCONCLUSIVE), key=lambda v: v.ratio)
    return preferred, f"nothing beats it beyond the noise (closest: {closest.sentence})"
