"""Search for the fastest onnxruntime configuration (and model variant) on this machine.

The search space (`build_space`) holds only what can matter: execution providers the installed
onnxruntime offers; intra-op threads up to the cores this process may use; spinning only where a
thread pool exists; parallel execution with inter-op threads only when the graph has parallel
branches worth it (`optimizer.analysis`); the `extended` optimization level only next to `all` when
the graph has convolutions (the levels differ by NCHWc layouts); for the throughput objective,
concurrent requests x threads each. onnxruntime's defaults on the original graph are the reference.

The search (`tune`) is successive halving: every candidate is timed a few rounds, the best third
goes on with three times the rounds, until two remain; then a final run times the winner against
the reference, a control copy of the reference and the original graph under the winner's settings.
Candidates are compared by minimum latency relative to the reference timed in the same group
(`optimizer.measure`, DESIGN "Measurement discipline"). The decision never ships a graph slower than
the original under the chosen settings, and keeps onnxruntime's defaults unless the winner beats
them by more than the noise the control shows.
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

from optimizer.errors import UserError
import numpy as np

from optimizer.measure import LatencyStats, machine_info, time_candidates
from optimizer.runtime import INTER_SPINNING_KEY, SPINNING_KEY, RuntimeConfig
from optimizer.verify import first_line

__all__ = ["Candidate", "SearchSpace", "TuningError", "TuningResult", "build_space", "decide", "tune", "usable_cores", "exhaustive"]

logger = logging.getLogger(__name__)

REFERENCE_VARIANT = "original"
PARALLEL_WORTH = 1.10
"""Parallel execution is timed only when inter-op parallelism could give at least this speedup."""
NOISE_FLOOR = 0.02
"""Minimums of identical sessions differ by a few percent here: a smaller difference is a tie."""
ETA = 3
FINAL_ROUNDS = 9
"""Successive halving keeps the best 1/ETA of the candidates and gives them ETA times the rounds."""

# Execution providers we know how to tune, with their key options (each dict is one candidate).
PROVIDER_OPTIONS: dict[str, list[dict[str, str]]] = {
    "TensorrtExecutionProvider": [{}],
    "CUDAExecutionProvider": [{}, {"cudnn_conv_algo_search": "EXHAUSTIVE"}],
    "ROCMExecutionProvider": [{}],
    "OpenVINOExecutionProvider": [{"device_type": "CPU"}, {"device_type": "GPU"}],
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
        wanted = [p for p in available if p in PROVIDER_OPTIONS or p == "CPUExecutionProvider"]
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
        skipped.append(f"parallel execution: the graph's parallel branches could give at most {inter_op_speedup:.2f}x (< {PARALLEL_WORTH:.2f})")
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
class CandidateRecord:
    """What happened to one candidate during the search."""

    candidate: Candidate
    ratios: list[float] = dataclasses.field(default_factory=list)  # min / reference min, per rung
    stats: LatencyStats | None = None  # the latest timing
    eliminated_at: int | None = None
    error: str = ""

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
        }


@dataclasses.dataclass
class TuningResult:
    """The choice, the figures behind it, and how the search went."""

    objective: str
    chosen: Candidate
    reference: Candidate
    chosen_stats: LatencyStats
    reference_stats: LatencyStats
    control_ratio: float
    decision: str
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

    @property
    def noise(self) -> float:
        return max(abs(self.control_ratio - 1.0), NOISE_FLOOR)

    @property
    def speedup(self) -> float:
        """The reference's score over the chosen one's (minimum latency, or per request under concurrency)."""
        return _score(self.reference_stats, self.reference.config, self.objective) / _score(self.chosen_stats, self.chosen.config, self.objective)

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
        }


class _Sessions:
    """Live onnxruntime sessions by candidate, at most `capacity` at a time."""

    def __init__(self, variants: Mapping[str, str | os.PathLike], capacity: int) -> None:
        self.variants = variants
        self.capacity = max(2, capacity)
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


def _score(stats: LatencyStats, config: RuntimeConfig, objective: str) -> float:
    """Lower is better: minimum latency, or minimum time per request under concurrency."""
    return stats.min_ms / config.concurrent_requests if objective == "throughput" else stats.min_ms


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
    return int(max(2, min(12, available / 4 / max(2 * largest, 1))))


def _model_bytes(path: Path) -> int:
    total = path.stat().st_size
    for sibling in path.parent.glob(path.name + ".data"):
        total += sibling.stat().st_size
    return total


class _Search:
    def __init__(self, variants, feeds, objective, budget_s, on_progress, capacity):
        self.variants = variants
        self.feeds = feeds
        self.objective = objective
        self.budget_s = budget_s
        self.on_progress = on_progress or (lambda text, fraction: None)
        self.sessions = _Sessions(variants, capacity or _memory_capacity(variants))
        self.started = time.perf_counter()
        self.rungs: list[dict] = []
        self.pools: list[ThreadPoolExecutor] = []
        self.block_seconds = 0.05
        self.latency = 0.0
        self.block_runs: int | None = None  # runs per block, from the reference's latency: the same effort in every group
        self.records: dict[str, CandidateRecord] = {}
        self.reference_key = ""

    def calibrate(self, reference: Candidate) -> None:
        """Set the runs per block from the reference's latency (also creates its session)."""
        session = self.sessions.get(reference)
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            session.run(None, self.feeds)
            samples.append(time.perf_counter() - start)
        self.latency = min(samples)
        self.block_runs = int(min(2000, max(3, math.ceil(self.block_seconds / max(self.latency, 1e-6)))))

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def remaining(self) -> float:
        return math.inf if self.budget_s is None else self.budget_s - self.elapsed()

    def progress(self, text: str) -> None:
        fraction = 0.0 if self.budget_s is None else min(1.0, self.elapsed() / max(self.budget_s, 1e-9))
        self.on_progress(text, fraction)

    def time_group(self, members: Sequence[tuple[str, Candidate]], rounds: int, records: dict[str, CandidateRecord] | None = None, label: str = "") -> dict[str, LatencyStats]:
        """Time candidates (keys may repeat a candidate as a control) in one rotated-block run."""
        runners = {}
        for key, candidate in members:
            try:
                session = self.sessions.get(candidate, key)
            except Exception as error:  # noqa: BLE001 - a provider or option this machine cannot use
                message = first_line(error)
                logger.info("candidate %s cannot run: %s", key, message)
                if records is not None and key in records:
                    records[key].error = message
                continue
            runners[key] = _runner(session, self.feeds, candidate.config.concurrent_requests, self.pools)
        if not runners:
            return {}

        def report(done, total):
            self.progress(f"{label} round {done}/{total}")

        try:
            stats, _ = time_candidates(runners, rounds=rounds, block_runs=self.block_runs, block_seconds=self.block_seconds, on_round=report)
        except Exception as error:  # noqa: BLE001 - a run that fails under one configuration
            logger.info("timing failed: %s", error)
            failed = {}
            for key, runner in runners.items():
                try:
                    runner()
                except Exception as run_error:  # noqa: BLE001
                    failed[key] = first_line(run_error)
            if not failed:
                raise
            for key, message in failed.items():
                if records is not None and key in records:
                    records[key].error = message
            return self.time_group([(k, c) for k, c in members if k not in failed], rounds, records, label)
        finally:
            for pool in self.pools:
                pool.shutdown(wait=True)
            self.pools.clear()
        return stats

    def halving(self, candidates: Sequence[Candidate], reference: Candidate, records: dict[str, CandidateRecord], stage: str, keep_last: int = 2) -> list[Candidate]:
        """Successive halving over `candidates` (the reference is timed in every group); the survivors, best first.

        Before each group the budget is checked against the group's cost plus the final run's; what
        the budget cannot cover is left untimed (rung 1) or ends the halving (later rungs).
        """
        alive = [c for c in candidates if c.key != reference.key]
        rounds = 3
        rung = 0
        capacity = self.sessions.capacity - 1
        while True:
            self.progress(f"{stage}: timing {len(alive)} candidates")
            timed: list[Candidate] = []
            stopped = False
            for start in range(0, len(alive), capacity):
                group = alive[start : start + capacity]
                if timed and self._estimate(group, rounds) > self.remaining() - self.final_cost():
                    stopped = True
                    logger.info("budget: %d candidates left untimed at rung %d", len(alive) - start, rung + 1)
                    if rung == 0:
                        for candidate in alive[start:]:
                            records[candidate.key].eliminated_at = 0
                    else:
                        timed.extend(alive[start:])  # keep their earlier ratios
                    break
                self.sessions.keep_only({reference.key} | {c.key for c in group})
                members = [(reference.key, reference)] + [(c.key, c) for c in group]
                stats = self.time_group(members, rounds, records, f"{stage} rung {rung + 1}")
                if reference.key not in stats:
                    raise TuningError(f"onnxruntime cannot run the model under its default settings ({records[reference.key].error})")
                base = _score(stats[reference.key], reference.config, self.objective)
                records[reference.key].stats = stats[reference.key]
                for candidate in group:
                    if candidate.key in stats:
                        records[candidate.key].stats = stats[candidate.key]
                        records[candidate.key].ratios.append(_score(stats[candidate.key], candidate.config, self.objective) / base)
                timed.extend(group)
            alive = [c for c in timed if not records[c.key].error and records[c.key].ratios]
            alive.sort(key=lambda c: records[c.key].ratios[-1])
            self.rungs.append({"stage": stage, "rung": rung + 1, "candidates": len(alive), "rounds": rounds, "seconds": round(self.elapsed(), 2)})
            if stopped:
                self.rungs[-1]["stopped"] = "budget"
            if len(alive) <= keep_last or stopped:
                return alive
            keep = max(keep_last, math.ceil(len(alive) / ETA))
            for candidate in alive[keep:]:
                records[candidate.key].eliminated_at = rung + 1
            alive = alive[:keep]
            if keep <= keep_last:
                return alive  # the final run decides between the last few
            if self._estimate(alive, rounds * ETA) > self.remaining() - self.final_cost():
                logger.info("budget: stopping the halving at rung %d", rung + 1)
                self.rungs[-1]["stopped"] = "budget"
                return alive
            rounds *= ETA
            rung += 1

    def block_cost(self) -> float:
        """Seconds one block takes at the reference's latency: the pause, one untimed run, k timed runs."""
        if self.block_runs is None:
            return self.block_seconds + 0.03
        return 0.02 + (self.block_runs + 1) * self.latency

    def final_cost(self) -> float:
        """Seconds the final run takes (about four sessions, two of them new)."""
        return 4 * FINAL_ROUNDS * self.block_cost() + 2 * max(self.sessions.create_seconds, default=0.5)

    def _estimate(self, candidates: Sequence[Candidate], rounds: int, records: Mapping[str, CandidateRecord] | None = None) -> float:
        """Seconds to time these candidates (plus the reference) for `rounds` rounds.

        A candidate timed before costs its own measured minimum per run; others the reference's latency.
        """
        records = records if records is not None else self.records
        creation = max(self.sessions.create_seconds, default=0.5)
        total = rounds * self.block_cost() + (0 if self.reference_key in self.sessions.live else creation)
        for candidate in candidates:
            record = records.get(candidate.key)
            latency = record.stats.min_ms / 1e3 if record is not None and record.stats is not None else self.latency
            runs = (self.block_runs or 3) + 1
            total += rounds * (0.02 + runs * latency) + (0 if candidate.key in self.sessions.live else creation)
        return total


def tune(
    variants: Mapping[str, str | os.PathLike],
    feeds: Mapping[str, np.ndarray],
    space: SearchSpace,
    *,
    objective: str = "latency",
    budget_s: float | None = 60.0,
    reference_variant: str = REFERENCE_VARIANT,
    shipped_variant: str | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    max_sessions: int | None = None,
    inputs: str = "",
    batch: int = 1,
) -> TuningResult:
    """Find the fastest (variant, configuration) within `budget_s` seconds.

    `variants` maps names to model files; `reference_variant` (the original graph) under onnxruntime's
    defaults is the reference; `shipped_variant` is what would ship without tuning (e.g. the requested
    optimization level), preferred over the original when they tie.
    """
    if reference_variant not in variants:
        raise TuningError(f"the reference variant {reference_variant!r} is not among {list(variants)}")
    search = _Search(variants, feeds, objective, budget_s, on_progress, max_sessions)
    reference = Candidate(reference_variant, RuntimeConfig())
    candidates = [Candidate(v, c) for v in variants for c in space.configs]
    records = {c.key: CandidateRecord(c) for c in candidates}
    records.setdefault(reference.key, CandidateRecord(reference))
    search.records, search.reference_key = records, reference.key
    try:
        mode = "successive halving"
        try:
            search.calibrate(reference)
        except Exception as error:  # noqa: BLE001 - onnxruntime's own error, as one line
            raise TuningError(f"onnxruntime cannot run the original model under its default settings: {first_line(error)}") from None
        per_candidate = 3 * search.block_cost() + max(search.sessions.create_seconds)
        if budget_s is not None and len(variants) > 1 and len(space.configs) > 1 and per_candidate * len(candidates) > 0.5 * budget_s:
            # The product space does not fit: choose the variant under defaults, then the settings for it.
            mode = "variant, then settings (the budget cannot cover every combination)"
            by_variant = [Candidate(v, RuntimeConfig()) for v in variants]
            ranked = search.halving(by_variant, reference, records, "variants", keep_last=1)
            best_variant = ranked[0].variant if ranked and records[ranked[0].key].ratios[-1] < 1.0 else reference_variant
            survivors = search.halving([Candidate(best_variant, c) for c in space.configs], reference, records, "settings")
        else:
            survivors = search.halving(candidates, reference, records, "search")
        for record in records.values():
            if record.candidate.key not in {c.key for c in survivors} and record.eliminated_at is None and not record.error and not record.ratios and record.candidate.key != reference.key:
                record.eliminated_at = 0  # never timed (the variant stage eliminated its graph)
        chosen, final, control_ratio, decision = _final(search, survivors, reference, records, shipped_variant)
    finally:
        search.sessions.keep_only(set())
    return TuningResult(
        objective=objective,
        chosen=chosen,
        reference=reference,
        chosen_stats=final[chosen.key],
        reference_stats=final[reference.key],
        control_ratio=control_ratio,
        decision=decision,
        records=list(records.values()),
        space=space,
        rungs=search.rungs,
        final=final,
        seconds=search.elapsed(),
        budget_s=budget_s,
        mode=mode,
        machine=_machine(),
        inputs=inputs,
        batch=batch,
    )


def _machine() -> dict:
    """The `machine` section: the schema's cpu/cores/onnxruntime/providers_available, then the details."""
    info = machine_info()
    import onnxruntime as ort

    return {"cpu": info["cpu_model"], "cores": usable_cores(), "onnxruntime": info["onnxruntime"], "providers_available": ort.get_available_providers(), **info}


def _final(search: _Search, finalists: Sequence[Candidate], reference: Candidate, records, shipped_variant: str | None):
    """Time the finalists against the reference, a control copy, and the alternatives the decision needs.

    The leader's alternatives (the original and the requested graph under its settings, the requested
    graph under the defaults) are timed too; the winner is the finalist with the best final score.
    """
    winner = finalists[0] if finalists else reference
    members = {reference.key: reference, "control": reference, winner.key: winner}
    for candidate in finalists[1:2]:
        members.setdefault(candidate.key, candidate)
    alternatives = [Candidate(reference.variant, winner.config)]
    if shipped_variant:
        alternatives += [Candidate(shipped_variant, winner.config), Candidate(shipped_variant, RuntimeConfig())]
    for candidate in alternatives:
        if len(members) < max(5, search.sessions.capacity):
            members.setdefault(candidate.key, candidate)
    remaining = search.remaining()
    per_round = search._estimate(list(members.values()), 1) - search._estimate([], 1)
    rounds = FINAL_ROUNDS if remaining == math.inf else int(max(3, min(FINAL_ROUNDS, remaining / max(per_round, 1e-3))))
    search.sessions.keep_only(set(members))
    stats = search.time_group(list(members.items()), rounds, None, "final")
    search.rungs.append({"stage": "final", "candidates": len(stats), "rounds": rounds, "seconds": round(search.elapsed(), 2)})
    if reference.key not in stats or "control" not in stats:
        raise TuningError("onnxruntime cannot run the original model under its default settings")
    score = {key: _score(s, members[key].config, search.objective) for key, s in stats.items()}
    control_ratio = score["control"] / score[reference.key]
    noise = max(abs(control_ratio - 1.0), NOISE_FLOOR)
    timed_finalists = [c.key for c in finalists[:2] if c.key in score]
    if timed_finalists:
        winner = members[min(timed_finalists, key=score.get)]
    chosen_key, decision = decide(score, noise, winner.key, reference.key, {key: members[key] for key in score}, shipped_variant)
    chosen = members[chosen_key]
    records.setdefault(chosen.key, CandidateRecord(chosen))
    return chosen, stats, control_ratio, decision


def decide(score: Mapping[str, float], noise: float, winner: str, reference: str, candidates: Mapping[str, Candidate], shipped_variant: str | None) -> tuple[str, str]:
    """The candidate to ship and why, from final-run scores (lower is better) and the noise floor.

    Settings other than onnxruntime's defaults ship only when they beat the defaults by more than
    the noise. Between graphs under the chosen settings, the shipped variant (the requested level)
    wins ties; the original wins when the others are slower by more than the noise.
    """

    def faster(a: str | None, b: str | None) -> bool:
        return a in score and b in score and score[a] < score[b] * (1 - noise)

    def key_of(variant: str | None, config: RuntimeConfig) -> str | None:
        return Candidate(variant, config).key if variant is not None else None

    base = candidates[reference]
    if winner in score and faster(winner, reference) and candidates[winner].config == RuntimeConfig():
        config, why = RuntimeConfig(), f"onnxruntime's defaults, on a graph {score[reference] / score[winner]:.2f}x faster than the original (noise {noise:.1%})"
    elif winner in score and faster(winner, reference):
        config, why = candidates[winner].config, f"{candidates[winner].config.label()}: {score[reference] / score[winner]:.2f}x faster than the original under onnxruntime's defaults (noise {noise:.1%})"
    elif winner not in score and winner != reference:
        config, why = RuntimeConfig(), f"onnxruntime's defaults: the best candidate ({winner}) failed in the final run"
    elif winner == reference:
        config, why = RuntimeConfig(), "onnxruntime's defaults: no other candidate could be timed"
    elif score[winner] > score[reference] * (1 + noise):
        config, why = RuntimeConfig(), f"onnxruntime's defaults were fastest (the best other candidate, {winner}, took {score[winner] / score[reference]:.2f}x as long)"
    else:
        config, why = RuntimeConfig(), f"onnxruntime's defaults were already best (the best candidate, {winner}, is within the noise of {noise:.1%})"
    original = key_of(base.variant, config)
    preferred = key_of(shipped_variant, config)
    graph = candidates[winner].variant if winner in score and config == candidates[winner].config else base.variant
    chosen = key_of(graph, config)
    if preferred in score and (chosen not in score or not faster(chosen, preferred)):
        chosen, graph = preferred, shipped_variant  # ties go to the requested level
    if chosen not in score or (graph != base.variant and faster(original, chosen)):
        chosen, graph = original, base.variant  # never a graph slower than the original
    if graph == base.variant and shipped_variant and shipped_variant != base.variant:
        measured = f" ({score[preferred] / score[original]:.2f}x the original's time)" if preferred in score else " (not measured)"
        why += f"; the original graph ships: the {shipped_variant} graph is slower under these settings{measured}"
    elif graph != base.variant:
        why += f"; ships the {graph} graph"
    return chosen, why


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
    search = _Search(variants, feeds, objective, None, None, max_sessions)
    reference = Candidate(REFERENCE_VARIANT, RuntimeConfig())
    search.calibrate(reference)
    candidates = {c.key: c for c in (Candidate(v, cfg) for v in variants for cfg in space.configs)}
    records = {key: CandidateRecord(c) for key, c in candidates.items()}
    alive = [c for c in candidates.values() if c.key != reference.key]
    capacity = search.sessions.capacity - 1
    ratios = {reference.key: 1.0}
    for start in range(0, len(alive), capacity):
        group = alive[start : start + capacity]
        stats = search.time_group([(reference.key, reference)] + [(c.key, c) for c in group], rounds, records, "exhaustive")
        base = _score(stats[reference.key], reference.config, objective)
        for candidate in group:
            if candidate.key in stats:
                ratios[candidate.key] = _score(stats[candidate.key], candidate.config, objective) / base
        search.sessions.keep_only({reference.key})
    search.sessions.keep_only(set())
    return ratios, candidates, search.elapsed()
