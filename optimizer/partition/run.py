"""Run a partitioned model in onnxruntime (CPU), check it against the whole model, and time both.

The parts of one schedule step run concurrently on threads (`_Schedule`); with a stream of inputs,
one thread per step passes them on through queues (`_Pipeline`). Outputs are compared with the whole
model's (rtol 1e-4, atol 1e-5); timing goes through `optimizer.measure.time_candidates` with a
control copy of the whole model, whose distance from it is the noise floor of the verdict.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from optimizer.measure import machine_info, time_candidates
from optimizer.partition.errors import PartitionError
from optimizer.partition.manifest import Manifest, sha256_of
from optimizer.verify import Tolerance, compare_arrays, first_line

__all__ = ["RunReport", "run_partitioned"]

_RTOL, _ATOL = 1e-4, 1e-5
_MIN_NOISE = 0.01  # below this, a difference between identical sessions is still a tie


@dataclasses.dataclass
class RunReport:
    """A partitioned run checked against the whole model, and timed against it."""

    directory: str
    strategy: str
    schedule: list[list[str]]
    matches: bool
    outputs: list[dict]  # per graph output: name, max_abs, max_rel, passed, note
    tolerance: dict
    stream: int
    stream_matches: bool | None  # every input of the stream gave the whole model's outputs
    latency: dict | None  # candidate -> LatencyStats as a dict ("whole", "partitioned", "control")
    latency_speedup: float | None  # whole min / partitioned min
    throughput: dict | None  # candidate -> inputs/s, from the minimum time of a stream
    throughput_speedup: float | None
    noise: float | None  # |control / whole - 1| of the headline figure
    pays: bool
    verdict: str
    notes: list[str]
    machine: dict

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def _session(path: str | os.PathLike, *, threads: int | None = None, reference: bool = False, spin: bool = True):
    """A CPU session of `path`; `reference`: optimizations off, as the whole model's check runs it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if reference:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several types
        raise PartitionError(f"{path}: onnxruntime cannot load it: {first_line(error)}") from None


class _Schedule:
    """Sessions of every part, run step by step; the parts of one step run concurrently on threads."""

    def __init__(self, manifest: Manifest, *, single_thread: bool) -> None:
        self.steps = []
        self.pools: list[ThreadPoolExecutor] = []
        for step in manifest.schedule:
            runs = []
            for file in step:
                part = manifest.part(file)
                threads = 1 if single_thread or len(step) > 1 else None
                # back to back, a session's spinning threads would steal the next one's cores
                session = _session(manifest.directory / file, threads=threads, spin=len(manifest.parts) == 1)
                feeds = [i.name for i in session.get_inputs()]
                runs.append((file, session, feeds, list(part.outputs)))
            pool = ThreadPoolExecutor(max_workers=len(step)) if len(step) > 1 else None
            if pool is not None:
                self.pools.append(pool)
            self.steps.append((runs, pool))

    @staticmethod
    def _run_part(run, env: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs of one part's session on the values of `env` it reads."""
        file, session, feeds, outputs = run
        try:
            results = session.run(outputs, {name: env[name] for name in feeds if name in env})
        except Exception as error:  # noqa: BLE001
            raise PartitionError(f"{file}: onnxruntime failed: {first_line(error)}") from None
        return dict(zip(outputs, results))

    def run_step(self, index: int, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`env` with what the parts of step `index` produce from it added."""
        runs, pool = self.steps[index]
        env = dict(env)
        if pool is None:
            for run in runs:
                env.update(self._run_part(run, env))
        else:
            for produced in pool.map(lambda run: self._run_part(run, env), runs):
                env.update(produced)
        return env

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env = dict(feeds)
        for index in range(len(self.steps)):
            env = self.run_step(index, env)
        return env

    def close(self) -> None:
        """Shut the step thread pools down."""
        for pool in self.pools:
            pool.shutdown()


class _Pipeline:
    """One thread per schedule step, connected by queues: a stream of inputs flows through the steps."""

    def __init__(self, schedule: _Schedule) -> None:
        self.schedule = schedule
        self.queues: list[queue.Queue] = [queue.Queue() for _ in range(len(schedule.steps) + 1)]
        self.threads = [threading.Thread(target=self._work, args=(k,), daemon=True) for k in range(len(schedule.steps))]
        for thread in self.threads:
            thread.start()

    def _work(self, index: int) -> None:
        """Step `index`'s thread: run the step on each input passed on, hand errors on; None stops it."""
        inbox, outbox = self.queues[index], self.queues[index + 1]
        while True:
            item = inbox.get()
            if item is None:
                outbox.put(None)
                return
            if not isinstance(item, BaseException):
                try:
                    item = self.schedule.run_step(index, item)
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    item = error
            outbox.put(item)

    def __call__(self, stream: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        for feeds in stream:
            self.queues[0].put(dict(feeds))
        results = [self.queues[-1].get() for _ in stream]
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    def close(self) -> None:
        """Stop the step threads and wait for them."""
        self.queues[0].put(None)
        for thread in self.threads:
            thread.join()


def _compare(names: Sequence[str], expected: Sequence, env: Mapping[str, np.ndarray]) -> list[dict]:
    """One row per graph output: the partitioned result against the whole model's."""
    tolerance = Tolerance(rtol=_RTOL, atol=_ATOL)
    rows = []
    for name, reference in zip(names, expected):
        result = compare_arrays(name, reference, env[name], tolerance)
        rows.append({"name": name, "max_abs": result.max_abs, "max_rel": result.max_rel, "passed": result.passed, "note": result.note})
    return rows


def _verdict(what: str, speedup: float, noise: float, cores: int | None) -> tuple[bool, str]:
    """Whether the speedup clears the noise margin, and the sentence saying so."""
    margin = max(noise, _MIN_NOISE)
    pays = speedup > 1.0 + margin
    where = f"this machine ({cores} cores)" if cores else "this machine"
    figures = f"partitioned {what} {speedup:.2f}x the whole model's (noise {margin:.1%})"
    if pays:
        return True, f"{figures}: partitioning pays on {where}"
    return False, f"{figures}: partitioning does not pay on {where}; run the whole model"


@dataclasses.dataclass
class _Timing:
    """The timed figures of a run and its verdict (figures None when not timed)."""

    verdict: str
    latency: dict | None = None
    latency_speedup: float | None = None
    throughput: dict | None = None
    throughput_speedup: float | None = None
    noise: float | None = None
    pays: bool = False


def _check_counts(stream: int, rounds: int) -> None:
    """Refuse a stream below 1 or a negative number of rounds."""
    if isinstance(stream, bool) or not isinstance(stream, int) or stream < 1:
        raise PartitionError(f"stream must be a whole number >= 1, got {stream!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise PartitionError(f"rounds must be a whole number >= 0, got {rounds!r}")


def _whole_model_outputs(manifest: Manifest, feeds: Mapping[str, np.ndarray], notes: list[str]) -> tuple[Path, dict, list]:
    """The source model's path, the feeds as arrays, and the whole model's outputs on them."""
    missing = [name for name in manifest.inputs if name not in feeds]
    if missing:
        raise PartitionError(f"feeds lack graph input {missing[0]!r} (the model reads {', '.join(manifest.inputs)})")
    source = Path(manifest.source_path)
    if not source.is_file():
        raise PartitionError(f"source model {source} is missing: cannot check the parts against it")
    if sha256_of(source) != manifest.source_sha256:
        notes.append(f"the source model {source} changed since it was partitioned (sha256 differs)")
    feeds = {name: np.asarray(array) for name, array in feeds.items()}
    reference = _session(source, reference=True)
    known = {i.name for i in reference.get_inputs()}
    unknown = sorted(set(feeds) - known)
    if unknown:
        raise PartitionError(f"feeds name {unknown[0]!r}, which is no input of the model")
    try:
        expected = reference.run(manifest.outputs, feeds)
    except Exception as error:  # noqa: BLE001
        raise PartitionError(f"the whole model cannot run on these feeds: {first_line(error)}") from None
    return source, feeds, expected


def _threading_notes(manifest: Manifest) -> list[str]:
    """What the part sessions are told about threads and spinning, and why."""
    notes = []
    if len(manifest.parts) > 1:
        notes.append("part sessions do not spin (session.intra_op.allow_spinning=0): run back to back, "
                     "one session's spinning threads would steal the next one's cores")
    concurrent = [step for step in manifest.schedule if len(step) > 1]
    if concurrent:
        notes.append(f"parts of a step run concurrently on up to {max(map(len, concurrent))} threads, "
                     "each session with intra_op_num_threads=1")
    return notes


def _time(source: Path, schedule: _Schedule, pipeline: _Pipeline | None, feeds: dict, stream: int, rounds: int) -> _Timing:
    """Latency (and with a stream, throughput) of the parts against the whole model and its control copy."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    whole, control = _session(source), _session(source)
    stats, _ = time_candidates({
        "whole": lambda: whole.run(None, feeds),
        "partitioned": lambda: schedule(feeds),
        "control": lambda: control.run(None, feeds),
    }, rounds=rounds)
    latency = {name: dataclasses.asdict(s) for name, s in stats.items()}
    latency_speedup = stats["whole"].min_ms / stats["partitioned"].min_ms
    noise = abs(stats["control"].min_ms / stats["whole"].min_ms - 1.0)
    pays, verdict = _verdict("latency is", latency_speedup, noise, cores)
    timing = _Timing(verdict, latency, latency_speedup, noise=noise, pays=pays)
    if stream > 1:
        batch = [feeds] * stream
        stats, _ = time_candidates({
            "whole": lambda: [whole.run(None, feeds) for _ in batch],
            "partitioned": lambda: pipeline(batch),
            "control": lambda: [control.run(None, feeds) for _ in batch],
        }, rounds=rounds)
        timing.throughput = throughput = {name: stream / (s.min_ms / 1e3) for name, s in stats.items()}
        timing.throughput_speedup = throughput["partitioned"] / throughput["whole"]
        timing.noise = abs(throughput["control"] / throughput["whole"] - 1.0)
        timing.pays, stream_verdict = _verdict("throughput is", timing.throughput_speedup, timing.noise, cores)
        timing.verdict = f"{stream_verdict} (latency: {latency_speedup:.2f}x)"
    return timing


def run_partitioned(
    directory: str | os.PathLike,
    feeds: Mapping[str, np.ndarray],
    *,
    stream: int = 1,
    rounds: int = 5,
) -> RunReport:
    """Run the parts in `directory` on `feeds`, check them against the whole source model and time both.

    `stream` > 1 also sends that many copies of the inputs through the schedule's steps as a pipeline
    (one thread per step) and compares throughput with the whole model running them one by one.
    `rounds` is the number of rotated timing rounds (0: check only, no timing).
    """
    _check_counts(stream, rounds)
    manifest = Manifest.load(directory)
    notes: list[str] = []
    source, feeds, expected = _whole_model_outputs(manifest, feeds, notes)
    notes += _threading_notes(manifest)
    schedule = _Schedule(manifest, single_thread=False)
    pipeline = pipeline_schedule = None
    try:
        outputs = _compare(manifest.outputs, expected, schedule(feeds))
        matches = all(row["passed"] for row in outputs)
        stream_matches = None
        if stream > 1:
            pipeline_schedule = _Schedule(manifest, single_thread=True)
            pipeline = _Pipeline(pipeline_schedule)
            notes.append(f"stream of {stream}: one thread per step ({len(manifest.schedule)}), every part session "
                         "with intra_op_num_threads=1; the whole model runs the stream one input after another")
            stream_matches = all(
                row["passed"] for env in pipeline([feeds] * stream) for row in _compare(manifest.outputs, expected, env)
            )
        if not matches:
            worst = max(outputs, key=lambda row: row["max_abs"])
            timing = _Timing(f"the partitioned outputs differ from the whole model's ({worst['name']}: max abs error "
                             f"{worst['max_abs']:.3g}): the parts are wrong; not timed")
        elif stream_matches is False:
            timing = _Timing("the stream pipeline's outputs differ from the whole model's: not timed")
        elif rounds == 0:
            timing = _Timing("the partitioned outputs match the whole model's; not timed (rounds=0)")
        else:
            timing = _time(source, schedule, pipeline, feeds, stream, rounds)
    finally:
        schedule.close()
        if pipeline is not None:
            pipeline.close()
        if pipeline_schedule is not None:
            pipeline_schedule.close()
    return RunReport(
        directory=str(manifest.directory),
        strategy=manifest.strategy,
        schedule=[list(step) for step in manifest.schedule],
        matches=matches,
        outputs=outputs,
        tolerance={"rtol": _RTOL, "atol": _ATOL},
        stream=stream,
        stream_matches=stream_matches,
        notes=notes,
        **{field.name: getattr(timing, field.name) for field in dataclasses.fields(timing)},
        machine=machine_info(),
    )
