"""Search for the fastest onnxruntime configuration (and model variant) on this machine.

The search space (`build_space`) holds only what can matter: execution providers the installed
onnxruntime offers; intra-op threads up to the cores this process may use; spinning only where a
thread pool exists; parallel execution with inter-op threads only when the graph has parallel
branches worth it (`optimizer.analysis`); the `extended` optimization level only next to `all` when
the graph has convolutions (the levels differ by NCHWc layouts); for the throughput objective,
concurrent requests x threads each.

The decision is fixed in advance to favour the **preferred** candidate: the verified graph at the
requested level under onnxruntime's defaults. Every group of candidates is timed with it in the same
rotated blocks (`optimizer.measure`), so each candidate's figure is a paired ratio to it
(`optimizer.decision`). The search (`tune`) is successive halving: every candidate is timed a few
rounds, the best third goes on with three times the rounds, until a few remain; then the final run
times them with the preferred candidate, a control copy of it and the original graph under
onnxruntime's defaults, round after round while any pair is undecided and the deadline allows
(sequential testing), and stops early once every pair is clear. A candidate ships only when it
beats the preferred one beyond the noise; a tie, an inconclusive result or a single round keeps the
preferred one. One `Deadline` bounds the whole search (checked before every run); when it cannot
hold two rounds of the preferred candidate, the search says so and keeps it untimed rather than
overrun. Everything is summed up in one `DecisionRecord`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from optimizer import decision
from optimizer.errors import UserError
from optimizer.measure import BlockTimes, Deadline, LatencyStats, Progress, machine_info, time_blocks
from optimizer.providers import CPU, OPENVINO, lossless_settings
from optimizer.runtime import INTER_SPINNING_KEY, SPINNING_KEY, RuntimeConfig
from optimizer.verify import first_line

__all__ = [
    "Candidate", "CandidateFigures", "CandidateRecord", "DecisionRecord", "SearchSpace", "TuningError", "TuningResult",
    "build_space", "exhaustive", "tune", "usable_cores",
]

logger = logging.getLogger(__name__)

REFERENCE_VARIANT = "original"
PARALLEL_WORTH = 1.10
"""Parallel execution is timed only when inter-op parallelism could give at least this speedup."""
ETA = 3
"""Successive halving keeps the best 1/ETA of the candidates and gives them ETA times the rounds."""
FIRST_ROUNDS = 3
FINALISTS = 2
MAX_FINAL_ROUNDS = 30
"""The final run measures undecided pairs again up to this many rounds (the rule's tested range)."""
BLOCK_SECONDS = 0.05
PAUSE_S = 0.02
CONTROL = "control"

# Execution providers we know how to tune, with their key options (each dict is one candidate).
PROVIDER_OPTIONS: dict[str, list[dict[str, str]]] = {
    "TensorrtExecutionProvider": [{}],
    "CUDAExecutionProvider": [{}, {"cudnn_conv_algo_search": "EXHAUSTIVE"}],
    "ROCMExecutionProvider": [{}],
    "DmlExecutionProvider": [{}],
    "CoreMLExecutionProvider": [{}],
}
CONV_OPS = frozenset({"Conv", "ConvTranspose", "QLinearConv", "ConvInteger", "FusedConv", "MaxPool", "AveragePool"})


class TuningError(UserError):
    """The search cannot run as asked (an option this onnxruntime lacks, a model its defaults cannot run)."""


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A model variant under a runtime configuration."""

    variant: str
    config: RuntimeConfig

    @property
    def key(self) -> str:
        return f"{self.variant} | {self.config.label()}"


@dataclasses.dataclass
class SearchSpace:
    """The configurations worth timing, and why others were left out."""

    configs: list[RuntimeConfig]
    dimensions: dict[str, list]
    skipped: list[str]

    def to_dict(self) -> dict:
        return {"configurations": len(self.configs), "dimensions": self.dimensions, "skipped": self.skipped}


def build_space(
    *,
    objective: str = "latency",
    cores: int | None = None,
    providers_available: Sequence[str] = ("CPUExecutionProvider",),
    providers: Sequence[str] | None = None,
    intra: Sequence[int] | None = None,
    inter: Sequence[int] | None = None,
    inter_op_speedup: float | None = None,
    op_types: Sequence[str] = (),
) -> SearchSpace:
    """The configurations to time; `providers`, `intra`, `inter` restrict it as the user asks.

    `inter_op_speedup` is the graph analysis' bound on what parallel execution could give (None: unknown).
    Raises TuningError for a provider the installed onnxruntime does not offer.
    """
    if objective not in ("latency", "throughput"):
        raise TuningError(f"objective must be latency or throughput, not {objective!r}")
    cores = cores or usable_cores()
    skipped: list[str] = []
    available = list(providers_available)
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise TuningError(f"provider(s) {', '.join(missing)} not offered by this onnxruntime (it has {', '.join(available)})")
        wanted = list(providers)
    else:
        wanted = [p for p in available if p in PROVIDER_OPTIONS or p in (CPU, OPENVINO)]
        unknown = [p for p in available if p not in wanted]
        if unknown:
            skipped.append(f"providers {', '.join(unknown)}: not local compute providers we tune")
    if intra:
        intra_values = sorted(set(intra))
    else:
        intra_values = sorted({t for t in (1, 2, 4, 8, 16, 32, 64) if t < cores} | {cores})
        skipped.append(f"intra-op threads above {cores}: more threads than usable cores")
    if inter_op_speedup is not None and inter_op_speedup < PARALLEL_WORTH and not inter:
        parallel_inter: list[int] = []
        skipped.append(f"parallel execution: the graph's parallel branches could give at most {inter_op_speedup:.2f}x, under the {PARALLEL_WORTH:.2f}x worth timing")
    elif cores < 2 and not inter:
        parallel_inter = []
        skipped.append("parallel execution: one usable core")
    else:
        parallel_inter = sorted(set(inter)) if inter else sorted({t for t in (2, 4, 8) if t <= cores})
        parallel_inter = [t for t in parallel_inter if t >= 2]
    has_conv = bool(CONV_OPS & set(op_types))
    levels = ["all", "extended"] if has_conv else ["all"]
    if not has_conv:
        skipped.append("optimization level 'extended': equals 'all' without convolution layouts")
    skipped.append("inter-op threads with sequential execution: unused by onnxruntime")

    configs: list[RuntimeConfig] = [RuntimeConfig()]  # onnxruntime's defaults: the reference
    seen = {RuntimeConfig()}

    def add(config: RuntimeConfig) -> None:
        if config not in seen:
            seen.add(config)
            configs.append(config)

    cpu_only = [p for p in wanted if p == "CPUExecutionProvider"]
    for provider in wanted:
        if provider == "CPUExecutionProvider":
            continue
        if provider == OPENVINO:
            for setting in lossless_settings([OPENVINO], objective=objective, cores=cores, threads=intra_values):
                add(RuntimeConfig(providers=(OPENVINO, CPU), provider_options=(setting.options, ())))
            skipped.append("onnxruntime's threads, spinning and levels with OpenVINO: the nodes it takes do not use them")
            continue
        for options in PROVIDER_OPTIONS.get(provider, [{}]):
            add(RuntimeConfig(providers=(provider, "CPUExecutionProvider"), provider_options=(tuple(sorted(options.items())), ())))
    if cpu_only:
        spin_off = ((SPINNING_KEY, "0"),)
        streams_values = [1] if objective == "latency" else sorted({s for s in (1, 2, 4, 8, 16) if s <= cores} | {cores})
        for streams in streams_values:
            for threads, level in itertools.product(intra_values, levels):
                if streams * threads > cores and streams > 1:
                    continue  # concurrent requests share the cores: oversubscribed
                spins = [(), spin_off] if threads > 1 else [()]
                for entries in spins:
                    add(RuntimeConfig(intra_op_num_threads=threads, graph_optimization_level=level, session_config_entries=entries, concurrent_requests=streams))
            if streams == 1:
                for workers, threads, level in itertools.product(parallel_inter, intra_values, levels):
                    if workers * threads > cores:
                        continue
                    for entries in ((), ((INTER_SPINNING_KEY, "0"), *spin_off)):
                        add(RuntimeConfig(intra_op_num_threads=threads, inter_op_num_threads=workers, execution_mode="parallel", graph_optimization_level=level, session_config_entries=entries))
        if objective == "throughput":
            skipped.append("concurrent requests x threads above the usable cores: oversubscribed")
    dimensions = {
        "providers": wanted,
        "intra_op_num_threads": intra_values,
        "inter_op_num_threads (parallel)": parallel_inter,
        "graph_optimization_level": levels,
        "spinning": [True, False],
        "concurrent_requests": [1] if objective == "latency" else sorted({c.concurrent_requests for c in configs}),
    }
    return SearchSpace(configs, dimensions, skipped)


@dataclasses.dataclass
@dataclasses.dataclass
class CandidateRecord:
    """What happened to one candidate during the search."""

    candidate: Candidate
    ratios: list[float] = dataclasses.field(default_factory=list)  # time over the preferred candidate's, per rung (paired)
    stats: LatencyStats | None = None  # the latest timing
    eliminated_at: int | None = None
    error: str = ""
    verdict: decision.Verdict | None = None  # against the preferred candidate, from its latest timing

    def to_dict(self) -> dict:
        return {
            "variant": self.candidate.variant,
            "label": self.candidate.config.label(),
            "config": self.candidate.config.to_dict(),
            "ratios_to_reference": [round(r, 4) for r in self.ratios],
            "min_ms": self.stats.min_ms if self.stats else None,
            "median_ms": self.stats.median_ms if self.stats else None,
            "p90_ms": self.stats.p90_ms if self.stats else None,
            "eliminated_at_rung": self.eliminated_at,
            "error": self.error or None,
            "verdict": self.verdict.to_dict() if self.verdict else None,
        }


@dataclasses.dataclass(frozen=True)
class CandidateFigures:
    """One candidate's line in the decision record: its latency and its paired figure against the preferred one."""

    key: str
    variant: str
    label: str
    min_ms: float | None
    median_ms: float | None
    p90_ms: float | None
    speedup: float | None  # the preferred candidate's time over this one's (paired low percentile of block minimums)
    interval: tuple[float, float] | None  # the speedup's interval
    outcome: str  # a verdict (win/tie/loss/inconclusive), "preferred", "control", "failed" or "untimed"
    stage: str  # where its figures come from: "final", "rung N", "calibration" or ""

    @classmethod
    def of(cls, key: str, candidate: Candidate, stats: LatencyStats | None, verdict: decision.Verdict | None, outcome: str, stage: str) -> CandidateFigures:
        finite = verdict is not None and np.isfinite(verdict.ratio) and verdict.ratio > 0
        return cls(
            key, candidate.variant, candidate.config.label(),
            stats.min_ms if stats else None, stats.median_ms if stats else None, stats.p90_ms if stats else None,
            verdict.speedup if finite else (1.0 if outcome == "preferred" else None),
            (1.0 / verdict.high, 1.0 / verdict.low) if finite and verdict.low > 0 else None,
            verdict.outcome if verdict is not None and outcome == "" else outcome, stage,
        )

    def to_dict(self) -> dict:
        def r(value):
            return None if value is None or not np.isfinite(value) else round(float(value), 4)

        return {
            "key": self.key, "variant": self.variant, "label": self.label, "min_ms": self.min_ms, "median_ms": self.median_ms,
            "p90_ms": self.p90_ms, "speedup_vs_preferred": r(self.speedup), "interval": [r(v) for v in self.interval] if self.interval else None,
            "outcome": self.outcome, "stage": self.stage,
        }


@dataclasses.dataclass
class DecisionRecord:
    """The one account of a tuning decision: what the sentence, the JSON, the tables and the charts show."""

    preferred: str  # the candidate that ships unless something beats it (key)
    chosen: CandidateFigures
    candidates: list[CandidateFigures]  # the preferred first, then the final run's, then the rest
    verdict: decision.Verdict | None  # the chosen one's against the preferred (or the closest contender's)
    sentence: str
    margin: float
    rounds: int  # paired rounds in the final run
    budget_s: float | None
    spent_s: float
    stopped_early: bool  # every pair was clear before the budget ran out
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "preferred": self.preferred, "chosen": self.chosen.to_dict(), "verdict": self.verdict.to_dict() if self.verdict else None,
            "sentence": self.sentence, "margin": round(self.margin, 4), "rounds": self.rounds, "budget_s": self.budget_s,
            "spent_s": round(self.spent_s, 3), "stopped_early": self.stopped_early, "notes": self.notes,
            "candidates": [c.to_dict() for c in self.candidates],
        }


@dataclasses.dataclass
class TuningResult:
    """The choice, the figures behind it, and how the search went."""

    objective: str
    chosen: Candidate
    reference: Candidate  # the original graph under onnxruntime's defaults
    chosen_stats: LatencyStats
    reference_stats: LatencyStats
    control_ratio: float
    decision: str  # the record's sentence
    records: list[CandidateRecord]
    space: SearchSpace
    rungs: list[dict]
    final: dict[str, LatencyStats]
    seconds: float
    budget_s: float | None
    mode: str
    machine: dict
    inputs: str
    batch: int
    record: DecisionRecord | None = None
    speedup_vs_reference: float = 1.0

    @property
    def noise(self) -> float:
        """The margin a difference must clear (the control's distance from 1.0, at least the floor)."""
        return self.record.margin if self.record else max(abs(self.control_ratio - 1.0), decision.NOISE_FLOOR)

    @property
    def speedup(self) -> float:
        """The original graph under defaults over the chosen one, paired as every figure (above 1: faster)."""
        return self.speedup_vs_reference

    def throughput(self, stats: LatencyStats, config: RuntimeConfig) -> float:
        """Inferences per second (batch x concurrent requests per median call)."""
        return self.batch * config.concurrent_requests * 1000.0 / stats.median_ms

    def measured(self) -> dict:
        """The `measured` section of the configuration file."""
        section = {
            "objective": self.objective,
            "median_ms": self.chosen_stats.median_ms,
            "p90_ms": self.chosen_stats.p90_ms,
            "p99_ms": self.chosen_stats.p99_ms,
            "min_ms": self.chosen_stats.min_ms,
            "baseline_median_ms": self.reference_stats.median_ms,
            "baseline_p90_ms": self.reference_stats.p90_ms,
            "baseline_min_ms": self.reference_stats.min_ms,
            "speedup_vs_defaults": round(self.speedup, 4),
            "noise": round(self.noise, 4),
            "per_call": "one request" if self.chosen.config.concurrent_requests == 1 else f"{self.chosen.config.concurrent_requests} concurrent requests",
            "variant": self.chosen.variant,
            "decision": self.decision,
            "inputs": self.inputs,
            "batch": self.batch,
            "search": {"mode": self.mode, "seconds": round(self.seconds, 2), "budget_s": self.budget_s, "rungs": self.rungs, "skipped": self.space.skipped},
            "candidates": [r.to_dict() for r in self.records],
        }
        if self.objective == "throughput":
            section["throughput_per_s"] = self.throughput(self.chosen_stats, self.chosen.config)
            section["baseline_throughput_per_s"] = self.throughput(self.reference_stats, self.reference.config)
        return section

    def to_dict(self) -> dict:
        return {
            "chosen": {"variant": self.chosen.variant, "label": self.chosen.config.label(), **self.chosen.config.to_dict()},
            "measured": self.measured(),
            "final": {key: dataclasses.asdict(stats) for key, stats in self.final.items()},
            "space": self.space.to_dict(),
            "machine": self.machine,
            "decision": self.record.to_dict() if self.record else None,
        }


class _Sessions:
    """Live onnxruntime sessions by candidate, at most `capacity` at a time."""

    def __init__(self, variants: Mapping[str, str | os.PathLike], capacity: int) -> None:
        self.variants = variants
        self.capacity = max(3, capacity)
        self.live: dict[str, tuple[object, Candidate]] = {}
        self.create_seconds: list[float] = []

    def get(self, candidate: Candidate, key: str | None = None):
        key = key or candidate.key
        if key not in self.live:
            while len(self.live) >= self.capacity:
                self.live.pop(next(iter(self.live)))
            start = time.perf_counter()
            session = candidate.config.create_session(self.variants[candidate.variant])
            self.create_seconds.append(time.perf_counter() - start)
            self.live[key] = (session, candidate)
        return self.live[key][0]

    def keep_only(self, keys: set[str]) -> None:
        for key in [k for k in self.live if k not in keys]:
            del self.live[key]


def _runner(session, feeds: Mapping[str, np.ndarray], streams: int, pools: list[ThreadPoolExecutor]) -> Callable[[], object]:
    if streams == 1:
        return lambda: session.run(None, feeds)
    pool = ThreadPoolExecutor(max_workers=streams)
    pools.append(pool)
    return lambda: list(pool.map(lambda _: session.run(None, feeds), range(streams)))


def _memory_capacity(variants: Mapping[str, str | os.PathLike]) -> int:
    """How many sessions may live at once: a quarter of available memory over twice the largest model."""
    largest = max((_model_bytes(Path(p)) for p in variants.values()), default=1)
    available = 4 * 1024**3
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(max(3, min(12, available / 4 / max(2 * largest, 1))))


def _model_bytes(path: Path) -> int:
    total = path.stat().st_size
    for sibling in path.parent.glob(path.name + ".data"):
        total += sibling.stat().st_size
    return total


class _Search:
    """Sessions, costs and timing under one deadline; every group is paired with the preferred candidate (`anchor`)."""

    def __init__(self, variants, feeds, objective: str, deadline: Deadline, report: Callable[[str], None], capacity: int | None) -> None:
        self.feeds = feeds
        self.objective = objective
        self.deadline = deadline
        self.report = report
        self.sessions = _Sessions(variants, capacity or _memory_capacity(variants))
        self.rungs: list[dict] = []
        self.pools: list[ThreadPoolExecutor] = []
        self.latency: dict[str, float] = {}  # seconds per run, by key, as measured
        self.anchor: Candidate | None = None
        self.candidates: dict[str, Candidate] = {}
        self.records: dict[str, CandidateRecord] = {}

    # -- costs ------------------------------------------------------------------------------------

    def calibrate(self, anchor: Candidate) -> LatencyStats:
        """Create the preferred candidate's session and time two runs (one when the deadline has passed): what estimates start from."""
        self.anchor = anchor
        session = self.sessions.get(anchor)
        samples: list[float] = []
        while len(samples) < 2 and not (samples and self.deadline.expired()):
            start = time.perf_counter()
            session.run(None, self.feeds)
            samples.append(time.perf_counter() - start)
        self.latency[anchor.key] = self.latency[CONTROL] = min(samples)
        return LatencyStats.of(samples, 0)

    def run_cost(self, key: str) -> float:
        return self.latency.get(key, self.latency.get(self.anchor.key if self.anchor else "", 0.0))

    def block_runs_for(self, keys: Sequence[str]) -> int:
        """Timed runs per block: what fills `BLOCK_SECONDS` for the slowest of these (as far as known)."""
        slowest = max((self.run_cost(k) for k in keys), default=0.0)
        return int(min(2000, max(1, math.ceil(BLOCK_SECONDS / max(slowest, 1e-6)))))

    def estimate(self, keys: Sequence[str], rounds: int) -> float:
        """Seconds to time these candidates for `rounds` rounds, creating the sessions not alive yet."""
        creation = max(self.sessions.create_seconds, default=0.5)
        runs = self.block_runs_for(keys) + 1
        blocks = sum(PAUSE_S + runs * self.run_cost(k) for k in keys)
        return rounds * blocks + sum(creation + self.run_cost(k) for k in keys if k not in self.sessions.live)

    def fits(self, keys: Sequence[str], rounds: int, reserve: float = 0.0) -> bool:
        return self.estimate(keys, rounds) <= self.deadline.remaining() - reserve

    # -- timing -----------------------------------------------------------------------------------

    def _runners(self, members: Mapping[str, Candidate]) -> dict[str, Callable[[], object]]:
        runners = {}
        for key, candidate in members.items():
            if self.deadline.expired():
                break
            try:
                session = self.sessions.get(candidate, key)
            except Exception as error:  # noqa: BLE001 - a provider or option this machine cannot use
                self._fail(key, first_line(error))
                continue
            runners[key] = _runner(session, self.feeds, candidate.config.concurrent_requests, self.pools)
        return runners

    def _fail(self, key: str, message: str) -> None:
        logger.info("candidate %s cannot run: %s", key, message)
        if key in self.records:
            self.records[key].error = message

    def time_group(self, members: Mapping[str, Candidate], rounds: int, label: str, into: BlockTimes | None = None) -> BlockTimes | None:
        """Time candidates (keys may repeat a candidate as the control) in rotated blocks; a failing one is recorded and left out."""
        runners = self._runners(members)
        if not runners:
            return into
        try:
            times = time_blocks(
                runners, rounds=rounds, block_seconds=BLOCK_SECONDS, min_block_runs=1, pause_s=PAUSE_S, warmup_runs=1, deadline=self.deadline,
                on_round=lambda done, total: self.report(f"{label} round {done}/{total}"), into=into,
            )
        except Exception:  # noqa: BLE001 - a run that fails under one configuration
            failed = {}
            for key, runner in runners.items():
                try:
                    runner()
                except Exception as run_error:  # noqa: BLE001
                    failed[key] = first_line(run_error)
            if not failed:
                raise
            for key, message in failed.items():
                self._fail(key, message)
            return self.time_group({k: c for k, c in members.items() if k not in failed}, rounds, label, into)
        finally:
            for pool in self.pools:
                pool.shutdown(wait=True)
            self.pools.clear()
        for key in runners:
            samples = times.samples(key) or times.warmup.get(key, [])
            if samples:
                self.latency[key] = min(samples)
        return times

    def verdict(self, times: BlockTimes, key: str, margin: float) -> decision.Verdict:
        """`key` against the preferred candidate in the same blocks (per request under concurrency)."""
        return decision.compare(key, self.minimums(times, key), self.anchor.key, self.minimums(times, self.anchor.key), margin=margin)

    def minimums(self, times: BlockTimes, key: str) -> dict[int, float]:
        streams = self.candidates[key].config.concurrent_requests if self.objective == "throughput" and key in self.candidates else 1
        return {r: m / streams for r, m in times.minimums(key).items()}

    def margin(self, times: BlockTimes) -> float:
        if CONTROL not in times.runs:
            return decision.NOISE_FLOOR
        return decision.noise_margin(times.minimums(CONTROL), times.minimums(self.anchor.key))

    # -- the search -------------------------------------------------------------------------------

    def final_reserve(self) -> float:
        """Seconds the final run needs for a verdict: the preferred candidate, its control, the original and the finalists."""
        return self.estimate([self.anchor.key, CONTROL] + [self.anchor.key] * (2 + FINALISTS), decision.MIN_ROUNDS)

    def _fitting(self, waiting: Sequence[Candidate], rounds: int) -> list[Candidate]:
        """The longest head of `waiting` that one group can time for `rounds` rounds and still leave the final its reserve."""
        group = list(waiting[: self.sessions.capacity - 1])
        while group and not self.fits([self.anchor.key] + [c.key for c in group], rounds, self.final_reserve()):
            group.pop()
        return group

    def halving(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Successive halving, each group paired with the preferred candidate; the survivors, best first.

        A group holds as many candidates as fit the deadline with the final run's reserve; what does
        not fit stays untimed (rung 1) or ends the halving (later rungs).
        """
        alive = [c for c in candidates if c.key != self.anchor.key]
        rounds, rung = FIRST_ROUNDS, 0
        while alive:
            timed, stopped, start = [], False, 0
            while start < len(alive):
                group = self._fitting(alive[start:], rounds)
                if not group:
                    stopped = True
                    logger.info("budget: %d candidates left untimed at rung %d", len(alive) - start, rung + 1)
                    for candidate in alive[start:]:
                        if rung == 0:
                            self.records[candidate.key].eliminated_at = 0
                        else:
                            timed.append(candidate)  # keeps its earlier ratios
                    break
                self.sessions.keep_only({self.anchor.key} | {c.key for c in group})
                self.report(f"search rung {rung + 1}: {len(alive)} candidates")
                times = self.time_group({self.anchor.key: self.anchor, **{c.key: c for c in group}}, rounds, f"rung {rung + 1}")
                if times is None or self.anchor.key not in times.runs:
                    break
                for candidate in group:
                    if times.runs.get(candidate.key):
                        record = self.records[candidate.key]
                        record.stats, record.verdict = times.stats(candidate.key), self.verdict(times, candidate.key, decision.NOISE_FLOOR)
                        record.ratios.append(record.verdict.ratio)
                        timed.append(candidate)
                start += len(group)
            alive = sorted((c for c in timed if self.records[c.key].ratios and not self.records[c.key].error), key=lambda c: self.records[c.key].ratios[-1])
            self.rungs.append({"stage": "search", "rung": rung + 1, "candidates": len(alive), "rounds": rounds, "seconds": round(self.deadline.elapsed(), 2)})
            if stopped:
                self.rungs[-1]["stopped"] = "budget"
            if len(alive) <= FINALISTS or stopped:
                return alive
            keep = max(FINALISTS, math.ceil(len(alive) / ETA))
            for candidate in alive[keep:]:
                self.records[candidate.key].eliminated_at = rung + 1
            alive = alive[:keep]
            if keep <= FINALISTS:
                return alive
            rounds, rung = rounds * ETA, rung + 1
        return alive

    def final(self, members: Mapping[str, Candidate]) -> tuple[BlockTimes | None, dict[str, decision.Verdict], float, bool]:
        """Time the finalists with the preferred candidate and its control; measure undecided pairs again while the deadline allows.

        The block times, the verdicts against the preferred candidate, the noise margin, and whether
        every pair was clear before the deadline (an early stop).
        """
        self.sessions.keep_only(set(members))
        active, times, step = dict(members), None, decision.MIN_ROUNDS
        verdicts: dict[str, decision.Verdict] = {}
        margin = decision.NOISE_FLOOR
        while True:
            done = times.rounds if times else 0
            per_round = max(self.estimate(list(active), 1), 1e-6)
            rounds = min(step, MAX_FINAL_ROUNDS - done)
            if self.deadline.budget_s is not None:
                rounds = min(rounds, int(self.deadline.remaining() / per_round))
            if rounds < 1:
                return times, verdicts, margin, False
            times = self.time_group(active, rounds, "final", into=times)
            if times is None or self.anchor.key not in times.runs:
                return times, verdicts, margin, False
            margin = self.margin(times)
            verdicts = {key: self.verdict(times, key, margin) for key in members if key not in (self.anchor.key, CONTROL) and times.runs.get(key)}
            still_open = decision.undecided(verdicts)
            if not still_open:
                return times, verdicts, margin, True
            if times.stopped or times.rounds >= MAX_FINAL_ROUNDS:
                return times, verdicts, margin, False
            active = {self.anchor.key: self.anchor, CONTROL: self.anchor, **{key: members[key] for key in still_open}}
            step = 3


def tune(
    variants: Mapping[str, str | os.PathLike],
    feeds: Mapping[str, np.ndarray],
    space: SearchSpace,
    *,
    objective: str = "latency",
    budget_s: float | None = 60.0,
    reference_variant: str = REFERENCE_VARIANT,
    shipped_variant: str | None = None,
    preferred: str | None = None,
    deadline: Deadline | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    on_status: Callable[[Progress], None] | None = None,
    max_sessions: int | None = None,
    inputs: str = "",
    batch: int = 1,
    pinned: Mapping[str, Sequence[RuntimeConfig]] | None = None,
) -> TuningResult:
    """Find the fastest (variant, configuration) within `budget_s` seconds, or by `deadline` when given (shared with other stages).

    `variants` maps names to model files; `reference_variant` (the original graph) under onnxruntime's
    defaults is what the speedup is quoted against. The preferred candidate is the `preferred` variant
    (default `shipped_variant`, the requested level; else the original) under onnxruntime's defaults:
    it ships unless another candidate beats it beyond the noise. `on_progress(label, fraction)` gets
    the fraction of the budget spent; `on_status(Progress)` also gets elapsed and remaining seconds.
    `pinned` maps variants that only run under their own settings (a precision variant: the lossless file
    under a provider's bf16) to those settings; they are timed under nothing else.
    """
    if reference_variant not in variants:
        raise TuningError(f"the reference variant {reference_variant!r} is not among {list(variants)}")
    deadline = deadline or Deadline(budget_s)
    budget_s = deadline.budget_s

    def report(label: str) -> None:
        if on_progress:
            on_progress(label, deadline.fraction())
        if on_status:
            on_status(deadline.progress(label))

    preferred_variant = next((v for v in (preferred, shipped_variant) if v in variants), reference_variant)
    anchor, reference = Candidate(preferred_variant, RuntimeConfig()), Candidate(reference_variant, RuntimeConfig())
    search = _Search(variants, feeds, objective, deadline, report, max_sessions)
    candidates = _ordered(variants, space, preferred_variant, pinned or {})
    search.candidates = {c.key: c for c in candidates} | {anchor.key: anchor, CONTROL: anchor, reference.key: reference}
    search.records = {c.key: CandidateRecord(c) for c in candidates}
    search.records.setdefault(reference.key, CandidateRecord(reference))
    search.records.setdefault(anchor.key, CandidateRecord(anchor))
    try:
        try:
            calibration = search.calibrate(anchor)
        except Exception as error:  # noqa: BLE001 - onnxruntime's own error, as one line
            raise TuningError(f"onnxruntime cannot run the {preferred_variant} model under its default settings: {first_line(error)}") from None
        if not search.fits([anchor.key, CONTROL], 2):
            why = f"the budget of {budget_s:g} s cannot hold two rounds of it (one run takes {search.latency[anchor.key]:.3g} s)"
            return _untuned(search, anchor, reference, calibration, space, inputs, batch, why)
        survivors = search.halving(candidates)
        members = _final_members(search, anchor, reference, survivors)
        times, verdicts, margin, early = search.final(members)
        if times is None or not times.runs.get(anchor.key):
            return _untuned(search, anchor, reference, calibration, space, inputs, batch, "the budget ran out before a final round")
    finally:
        search.sessions.keep_only(set())
    return _result(search, anchor, reference, members, times, verdicts, margin, early, space, inputs, batch)


def _ordered(variants: Mapping[str, object], space: SearchSpace, preferred_variant: str, pinned: Mapping[str, Sequence[RuntimeConfig]]) -> list[Candidate]:
    """Every (variant, configuration), in the order the budget should reach them: each graph under the
    defaults (or its pinned settings), then the preferred graph's settings, then the rest."""
    everything = [Candidate(v, c) for v in variants for c in pinned.get(v, space.configs)]
    first = [c for c in everything if c.config == RuntimeConfig() or c.variant in pinned]
    second = [c for c in everything if c.variant == preferred_variant and c not in first]
    return first + second + [c for c in everything if c not in first and c not in second]


def _final_members(search: _Search, anchor: Candidate, reference: Candidate, survivors: Sequence[Candidate]) -> dict[str, Candidate]:
    """The final run: the preferred candidate, its control, the original under defaults, the finalists, and
    the leader's settings on the original and the preferred graphs (what the choice is weighed against)."""
    members = {anchor.key: anchor, CONTROL: anchor, reference.key: reference}
    for candidate in survivors[:FINALISTS]:
        members.setdefault(candidate.key, candidate)
    if survivors:
        for candidate in (Candidate(reference.variant, survivors[0].config), Candidate(anchor.variant, survivors[0].config)):
            if len(members) < search.sessions.capacity and candidate.key in search.records:
                members.setdefault(candidate.key, candidate)
    return members


def _result(search: _Search, anchor, reference, members, times, verdicts, margin, early, space, inputs, batch) -> TuningResult:
    """The TuningResult and its decision record from the final run."""
    # Among winners these rounds cannot tell apart: the preferred graph, then other optimized graphs, the original
    # last; within a graph the search order (defaults first). So the original never ships on a tie with a graph.
    order = list(members)
    priority = sorted(members, key=lambda key: (members[key].variant != anchor.variant, members[key].variant == reference.variant, order.index(key)))
    chosen_key, reason = decision.choose(verdicts, anchor.key, priority=priority)
    chosen_key, reason = _original_must_beat_its_graph(search, times, members, verdicts, anchor, reference, chosen_key, reason, margin)
    chosen = members[chosen_key]
    final = {key: times.stats(key) for key in members if times is not None and key in times.warmup}
    for key, verdict in verdicts.items():
        record = search.records[key]
        record.stats, record.verdict, record.eliminated_at = final[key], verdict, None
        record.ratios.append(verdict.ratio)
    search.records[anchor.key].stats = final.get(anchor.key)
    search.rungs.append({"stage": "final", "candidates": len(final), "rounds": times.rounds if times else 0, "seconds": round(search.deadline.elapsed(), 2)})
    for record in search.records.values():
        if not record.ratios and record.eliminated_at is None and not record.error and record.candidate.key not in final:
            record.eliminated_at = 0  # never timed
    reference_verdict = verdicts.get(reference.key)
    if chosen_key == anchor.key:
        sentence = f"onnxruntime's defaults on the {anchor.variant} graph ship (the preferred candidate): {reason}"
    else:
        sentence = f"{chosen.config.label()} on the {chosen.variant} graph ships: {reason}"
    speedup = _speedup_vs_reference(search, times, chosen_key, reference.key) if times else 1.0
    record = _record(search, anchor, chosen_key, members, final, verdicts, sentence, margin, times.rounds if times else 0, early)
    stats_of = lambda key: final.get(key) or final[anchor.key]  # noqa: E731 - the original may have failed
    control_ratio = decision.paired_ratio(times.minimums(CONTROL), times.minimums(anchor.key)) if times.runs.get(CONTROL) else 1.0
    return TuningResult(
        objective=search.objective, chosen=chosen, reference=reference, chosen_stats=final[chosen_key], reference_stats=stats_of(reference.key),
        control_ratio=control_ratio, decision=sentence, records=list(search.records.values()), space=space,
        rungs=search.rungs, final=final, seconds=search.deadline.elapsed(), budget_s=search.deadline.budget_s,
        mode="successive halving, then paired final rounds until decided", machine=_machine(), inputs=inputs, batch=batch,
        record=record, speedup_vs_reference=speedup if reference_verdict is not None or reference.key == anchor.key else 1.0,
    )


def _original_must_beat_its_graph(search: _Search, times, members, verdicts, anchor, reference, chosen_key: str, reason: str, margin: float) -> tuple[str, str]:
    """The original graph under some settings ships only when it also beats the preferred graph under those same
    settings beyond the noise (the settings, not the graph, may be what won); else that graph with them does, or
    the preferred candidate when it was not timed or lost."""
    chosen = members[chosen_key]
    if times is None or chosen.variant != reference.variant or anchor.variant == reference.variant:
        return chosen_key, reason
    twin = next((key for key, c in members.items() if c.variant == anchor.variant and c.config == chosen.config and key != chosen_key), None)
    if twin is None or not times.runs.get(twin):
        return anchor.key, f"the original graph's lead could not be weighed against the {anchor.variant} graph under the same settings ({reason})"
    against = decision.compare(chosen_key, search.minimums(times, chosen_key), twin, search.minimums(times, twin), margin=margin)
    if against.outcome == decision.WIN:
        return chosen_key, f"{reason}; and it beats the {anchor.variant} graph under the same settings ({against.sentence})"
    fallback = verdicts.get(twin)
    if twin == anchor.key or (fallback is not None and fallback.outcome == decision.WIN):
        return twin, f"{fallback.sentence if fallback is not None else reason}; the original under these settings was not faster than it ({against.sentence})"
    return anchor.key, f"the original's lead came from its settings, not its graph ({against.sentence})"


def _speedup_vs_reference(search: _Search, times: BlockTimes, chosen_key: str, reference_key: str) -> float:
    """The original under defaults over the chosen candidate, by the same paired statistic as every verdict."""
    if chosen_key == reference_key or not times.runs.get(reference_key):
        return 1.0
    ratio = decision.paired_ratio(search.minimums(times, chosen_key), search.minimums(times, reference_key))
    return 1.0 / ratio if np.isfinite(ratio) and ratio > 0 else 1.0


def _record(search: _Search, anchor, chosen_key, members, final, verdicts, sentence, margin, rounds, early) -> DecisionRecord:
    """The decision record: the preferred candidate first, the final run's, then everything the search timed or left."""
    figures = [CandidateFigures.of(anchor.key, anchor, final.get(anchor.key), None, "preferred", "final")]
    if CONTROL in final:
        figures.append(CandidateFigures.of(CONTROL, anchor, final[CONTROL], None, "control", "final"))
    for key in members:
        if key not in (anchor.key, CONTROL):
            outcome = "" if key in verdicts else ("failed" if search.records[key].error else "untimed")
            figures.append(CandidateFigures.of(key, members[key], final.get(key), verdicts.get(key), outcome, "final" if key in verdicts else ""))
    for key, record in search.records.items():
        if key in members:
            continue
        if record.error:
            outcome, stage = "failed", ""
        elif record.verdict is None:
            outcome, stage = "untimed", ""
        else:
            outcome, stage = "", f"rung {len(record.ratios)}"
        figures.append(CandidateFigures.of(key, record.candidate, record.stats, record.verdict, outcome, stage))
    chosen = next(f for f in figures if f.key == chosen_key)
    closest = verdicts.get(chosen_key) or min(verdicts.values(), key=lambda v: v.ratio if np.isfinite(v.ratio) else math.inf, default=None)
    return DecisionRecord(
        preferred=anchor.key, chosen=chosen, candidates=figures, verdict=closest, sentence=sentence, margin=margin, rounds=rounds,
        budget_s=search.deadline.budget_s, spent_s=search.deadline.elapsed(), stopped_early=early and search.deadline.remaining() > 0,
    )


def _untuned(search: _Search, anchor: Candidate, reference: Candidate, calibration: LatencyStats, space: SearchSpace, inputs: str, batch: int, why: str) -> TuningResult:
    """The budget cannot hold a verdict: say so and keep the preferred candidate, with its calibration runs as its figures."""
    sentence = f"onnxruntime's defaults on the {anchor.variant} graph ship untuned (the preferred candidate): {why}"
    figures = CandidateFigures.of(anchor.key, anchor, calibration, None, "preferred", "calibration")
    record = DecisionRecord(anchor.key, figures, [figures], None, sentence, decision.NOISE_FLOOR, 0, search.deadline.budget_s, search.deadline.elapsed(), False,
                            notes=["the original graph was not timed" if reference != anchor else "no other candidate was timed"])
    search.records[anchor.key].stats = calibration
    for record_of in search.records.values():
        if record_of.candidate != anchor and not record_of.ratios and record_of.eliminated_at is None:
            record_of.eliminated_at = 0  # never timed
    search.rungs.append({"stage": "calibration", "candidates": 1, "rounds": 0, "seconds": round(search.deadline.elapsed(), 2), "stopped": "budget"})
    return TuningResult(
        objective=search.objective, chosen=anchor, reference=reference, chosen_stats=calibration, reference_stats=calibration, control_ratio=1.0,
        decision=sentence, records=list(search.records.values()), space=space, rungs=search.rungs, final={anchor.key: calibration},
        seconds=search.deadline.elapsed(), budget_s=search.deadline.budget_s, mode="untuned: " + why,
        machine=_machine(), inputs=inputs, batch=batch, record=record,
    )


def _machine() -> dict:
    """The `machine` section: the schema's cpu/cores/onnxruntime/providers_available, then the details."""
    info = machine_info()
    import onnxruntime as ort

    return {"cpu": info["cpu_model"], "cores": usable_cores(), "onnxruntime": info["onnxruntime"], "providers_available": ort.get_available_providers(), **info}


def exhaustive(
    variants: Mapping[str, str | os.PathLike],
    feeds: Mapping[str, np.ndarray],
    space: SearchSpace,
    *,
    rounds: int,
    objective: str = "latency",
    max_sessions: int | None = None,
) -> tuple[dict[str, float], dict[str, Candidate], float]:
    """Every candidate timed `rounds` rounds (groups share the reference): ratios to the reference, candidates, seconds.

    The benchmark's yardstick for `tune` (bench/tune_vs_exhaustive.py).
    """
    search = _Search(variants, feeds, objective, Deadline(None), lambda label: None, max_sessions)
    reference = Candidate(REFERENCE_VARIANT, RuntimeConfig())
    search.calibrate(reference)
    candidates = {c.key: c for c in (Candidate(v, cfg) for v in variants for cfg in space.configs)}
    search.candidates = dict(candidates)
    search.records = {key: CandidateRecord(c) for key, c in candidates.items()}
    alive = [c for c in candidates.values() if c.key != reference.key]
    capacity = search.sessions.capacity - 1
    ratios = {reference.key: 1.0}
    for start in range(0, len(alive), capacity):
        group = alive[start : start + capacity]
        times = search.time_group({reference.key: reference, **{c.key: c for c in group}}, rounds, "exhaustive")
        for candidate in group:
            if times is not None and times.runs.get(candidate.key):
                ratios[candidate.key] = search.verdict(times, candidate.key, decision.NOISE_FLOOR).ratio
        search.sessions.keep_only({reference.key})
    search.sessions.keep_only(set())
    return ratios, candidates, search.deadline.elapsed()
