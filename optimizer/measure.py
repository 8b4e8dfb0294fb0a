"""The one timing harness: candidates timed in rotated blocks, compared by minimum (DESIGN.md,
"Measurement discipline").

Warm every candidate up; then, each round, visit the candidates in an order rotated by one; a visit
is a block: a short pause (the previous session's spinning intra-op threads go quiet), one untimed
run, then k timed runs. Compare candidates by their minimum over all blocks (the host is shared and
run times are bimodal); report median and p90 to people. Time a second copy of the baseline as a
control: its distance from 1.0 is the noise floor. Every figure is recorded with `machine_info()`.
Used by the benchmarks today, and by tuning, the lossy speed gate and CI gates as they land.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LatencyStats", "machine_info", "time_candidates"]


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
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def time_candidates(
    runners: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 20,
    block_runs: int | None = None,
    block_seconds: float = 0.25,
    pause_s: float = 0.02,
    warmup_runs: int = 3,
    budget_s: float | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, LatencyStats], dict]:
    """Time each runner in rotated blocks; return per-candidate stats and the plan actually used.

    `block_runs` (k) defaults to what fills about `block_seconds` for the slowest candidate during
    warm-up, clamped to [3, 2000], and is the same for every candidate. A `budget_s` stops after the
    round that exhausts it (at least 3 rounds run).
    """
    names = list(runners)
    if not names:
        raise ValueError("no candidates")
    warm: dict[str, float] = {}
    for name in names:
        runner = runners[name]
        samples = []
        for _ in range(max(1, warmup_runs)):
            start = time.perf_counter()
            runner()
            samples.append(time.perf_counter() - start)
        warm[name] = min(samples)
    if block_runs is None:
        slowest = max(warm.values())
        block_runs = int(min(2000, max(3, math.ceil(block_seconds / max(slowest, 1e-6)))))
    times: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    rounds_done = 0
    for round_index in range(rounds):
        shift = round_index % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            runner = runners[name]
            time.sleep(pause_s)
            runner()  # untimed: wakes the pool, refills caches after the other sessions
            bucket = times[name]
            for _ in range(block_runs):
                start = time.perf_counter()
                runner()
                bucket.append(time.perf_counter() - start)
        rounds_done += 1
        if on_round:
            on_round(rounds_done, rounds)
        if budget_s is not None and rounds_done >= 3 and time.perf_counter() - started > budget_s:
            break
    stats = {name: LatencyStats.of(times[name], rounds_done) for name in names}
    plan = {
        "rounds": rounds_done,
        "rounds_requested": rounds,
        "block_runs": block_runs,
        "pause_ms": pause_s * 1e3,
        "warmup_runs": warmup_runs,
        "warmup_min_ms": {name: value * 1e3 for name, value in warm.items()},
        "seconds": time.perf_counter() - started,
    }
    return stats, plan
