"""The one timing harness: candidates timed in rotated blocks, compared by minimum (DESIGN.md,
"Measurement discipline").

Warm every candidate up; then, each round, visit the candidates in an order rotated by one; a visit
is a block: a short pause (the previous session's spinning intra-op threads go quiet), one untimed
run, then k timed runs. `time_blocks` records every block's runs by candidate and round
(`BlockTimes`), so `optimizer.decision` can pair candidates round by round; `time_candidates`
summarizes them (`LatencyStats`: minimum to compare, median and p90 for people). Time a second copy
of the baseline as a control: its distance from 1.0 is the noise floor. One `Deadline` bounds all
measuring in a run: checked before every run, so it is overrun by one run at most. Every figure is
recorded with `machine_info()`. Used by tuning, the lossy speed gate, comparisons, gates and bench.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BlockTimes", "Deadline", "LatencyStats", "Progress", "machine_info", "time_blocks", "time_candidates"]


class Deadline:
    """One wall-clock deadline shared by everything that measures in a run (None: no limit)."""

    def __init__(self, budget_s: float | None, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget_s = budget_s
        self.clock = clock
        self.started = clock()
        self.ends = math.inf if budget_s is None else self.started + max(0.0, budget_s)

    def elapsed(self) -> float:
        """Seconds since the deadline was set."""
        return self.clock() - self.started

    def remaining(self) -> float:
        """Seconds left (math.inf without a budget; never below 0)."""
        return max(0.0, self.ends - self.clock()) if self.budget_s is not None else math.inf

    def expired(self) -> bool:
        return self.budget_s is not None and self.clock() >= self.ends

    def fraction(self) -> float:
        """Elapsed over budget, in [0, 1] (0 without a budget)."""
        return 0.0 if not self.budget_s else min(1.0, self.elapsed() / self.budget_s)

    def progress(self, label: str) -> Progress:
        return Progress(label, self.fraction(), self.elapsed(), None if self.budget_s is None else self.remaining(), self.budget_s)


@dataclass(frozen=True)
class Progress:
    """What a progress display shows for a stage that measures: time spent and time left against the budget."""

    label: str
    fraction: float
    elapsed_s: float
    remaining_s: float | None
    budget_s: float | None


@dataclass
class LatencyStats:
    """Per-candidate latency summary, in milliseconds."""

    runs: int
    blocks: int
    min_ms: float
    p10_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float], blocks: int) -> LatencyStats:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(
            runs=int(ms.size),
            blocks=blocks,
            min_ms=float(ms.min()),
            p10_ms=float(np.percentile(ms, 10)),
            median_ms=float(np.median(ms)),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
            mean_ms=float(ms.mean()),
            max_ms=float(ms.max()),
        )


def machine_info() -> dict:
    """CPU model, core counts, onnxruntime/numpy/python versions: recorded with every figure."""
    cpu_model, flags = None, ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if cpu_model is None and line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                elif not flags and line.startswith("flags"):
                    flags = line.split(":", 1)[1]
    except OSError:
        pass
    info = {
        "cpu_model": cpu_model or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8") if re.search(rf"\b{f}\b", flags)],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        from optimizer.providers import runtime_flavour

        flavour = runtime_flavour()
        info["onnxruntime"] = flavour.version
        info["onnxruntime_flavour"] = flavour.distribution
        info["providers_available"] = list(flavour.providers)
    except ImportError:
        info["onnxruntime"] = None
    return info


@dataclass
class BlockTimes:
    """Every timed run by candidate and round, in seconds; a round a candidate sat out is absent."""

    block_runs: int
    pause_s: float
    warmup_runs: int
    runs: dict[str, dict[int, list[float]]] = dataclasses.field(default_factory=dict)
    warmup: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    rounds: int = 0  # rounds started, over every call that added to these times
    seconds: float = 0.0  # spent timing (warm-up included)
    stopped: str = ""  # why the last call stopped early ("deadline", "budget"), else ""

    def minimums(self, name: str) -> dict[int, float]:
        """Block minimums by round: what `optimizer.decision` pairs."""
        return {index: min(times) for index, times in self.runs.get(name, {}).items() if times}

    def samples(self, name: str) -> list[float]:
        return [t for index in sorted(self.runs.get(name, {})) for t in self.runs[name][index]]

    def stats(self, name: str) -> LatencyStats:
        """The candidate's summary over its blocks (its warm-up runs when no block completed)."""
        samples = self.samples(name)
        return LatencyStats.of(samples, len(self.runs.get(name, {}))) if samples else LatencyStats.of(self.warmup[name], 0)

    def slowest_run(self) -> float:
        """The slowest candidate's fastest warm-up run, in seconds: what one run costs at worst."""
        return max((min(v) for v in self.warmup.values() if v), default=0.0)


def _warm_up(runners: Mapping[str, Callable[[], object]], times: BlockTimes, deadline: Deadline | None) -> None:
    """Run each new candidate `warmup_runs` times (once at least, even past the deadline: every candidate gets a figure)."""
    for name, runner in runners.items():
        if name in times.warmup:
            continue
        samples = times.warmup[name] = []
        for _ in range(max(1, times.warmup_runs)):
            if samples and deadline is not None and deadline.expired():
                break
            start = time.perf_counter()
            runner()
            samples.append(time.perf_counter() - start)


def _block(runner: Callable[[], object], times: BlockTimes, deadline: Deadline | None) -> list[float] | None:
    """One visit: a pause, one untimed run, k timed runs; None when the deadline cut it short."""
    time.sleep(times.pause_s)
    if deadline is not None and deadline.expired():
        return None
    runner()  # untimed: wakes the pool, refills caches after the other sessions
    samples = []
    for _ in range(times.block_runs):
        if deadline is not None and deadline.expired():
            return None
        start = time.perf_counter()
        runner()
        samples.append(time.perf_counter() - start)
    return samples


def time_blocks(
    runners: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 20,
    block_runs: int | None = None,
    block_seconds: float = 0.25,
    min_block_runs: int = 3,
    pause_s: float = 0.02,
    warmup_runs: int = 3,
    budget_s: float | None = None,
    deadline: Deadline | None = None,
    on_round: Callable[[int, int], None] | None = None,
    into: BlockTimes | None = None,
) -> BlockTimes:
    """Time each runner in rotated blocks for `rounds` more rounds; every block's runs, by candidate and round.

    `block_runs` (k) defaults to what fills about `block_seconds` for the slowest candidate during
    warm-up, clamped to [`min_block_runs`, 2000], and is the same for every candidate. `into` goes on
    from earlier times (same k, rounds numbered on, possibly a subset of the candidates: the ones
    still undecided and their reference). A `budget_s` stops after the round that exhausts it (at
    least 3 rounds run); a `deadline` is checked before every run and stops at once (the cut block
    is dropped), so it is overrun by one run at most.
    """
    names = list(runners)
    if not names:
        raise ValueError("no candidates")
    started = time.perf_counter()
    times = into or BlockTimes(block_runs or 0, pause_s, warmup_runs)
    _warm_up(runners, times, deadline)
    if not times.block_runs:
        slowest = max(min(times.warmup[name]) for name in names)
        times.block_runs = int(min(2000, max(min_block_runs, math.ceil(block_seconds / max(slowest, 1e-6)))))
    times.stopped = ""
    for done in range(1, rounds + 1):
        index = times.rounds
        times.rounds += 1
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples = _block(runners[name], times, deadline)
            if samples is None:
                times.stopped = "deadline"
                break
            times.runs.setdefault(name, {})[index] = samples
        if times.stopped:
            break
        if on_round:
            on_round(done, rounds)
        if budget_s is not None and done >= 3 and time.perf_counter() - started > budget_s:
            times.stopped = "budget" if done < rounds else ""
            break
    times.seconds += time.perf_counter() - started
    return times


def time_candidates(runners: Mapping[str, Callable[[], object]], *, rounds: int = 20, **options) -> tuple[dict[str, LatencyStats], dict]:
    """Time each runner in rotated blocks (`time_blocks`, which takes the same `options`); per-candidate
    stats and the plan actually used."""
    times = time_blocks(runners, rounds=rounds, **options)
    stats = {name: times.stats(name) for name in runners}
    plan = {
        "rounds": min(s.blocks for s in stats.values()) if times.stopped == "deadline" else times.rounds,
        "rounds_requested": rounds,
        "block_runs": times.block_runs,
        "pause_ms": times.pause_s * 1e3,
        "warmup_runs": times.warmup_runs,
        "warmup_min_ms": {name: min(values) * 1e3 for name, values in times.warmup.items()},
        "seconds": times.seconds,
        "stopped": times.stopped or None,
    }
    return stats, plan
