"""Per-node and per-op-type timings from onnxruntime's built-in profiler.

`profile_model` builds a session with profiling on (the trace goes to a private temporary directory
that is removed afterwards, also on error), runs the model `warmup` times untimed and `runs` times
timed, and summarizes the trace (`NothingToProfileError` when no kernel ran). onnxruntime profiles from session creation and cannot be paused,
so the warm-up runs are in the trace too: its `model_run` events give each run's time window, and
node events inside the first `warmup` windows are dropped. `read_trace` summarizes a trace file
written elsewhere (another machine, the C/C++ API) the same way.

What the figures are:

- Names and op types are those of the graph onnxruntime ran, after its own online optimizations
  (`graph_optimization_level`): fused nodes carry names and op types that onnxruntime invented, e.g.
  `/Mul/LayerNormFusion/` (LayerNormalization), `FusedMatMul`, `BiasGelu`, a Conv fused with its
  BatchNormalization and Relu, or NCHWc layout nodes (`ReorderInput`, `ReorderOutput`). A node of
  the original model may not appear at all because it was folded or fused away; that is real
  information, not an error. Nodes inside If/Loop/Scan bodies are listed under their own names.
- A node's time is its kernel's time (`<node>_kernel_time` events), averaged per run: the sum over
  the timed runs divided by their number. A control-flow node (If, Loop, Scan) is charged its own
  time only, without the time of the subgraph nodes it ran, which are listed on their own: nothing
  is counted twice, and the shares (fractions of the summed kernel time) add up to 1.
- `run_ms` is the mean duration of the `model_run` events. With sequential execution the kernel
  time is part of it (the rest is executor overhead, input/output copies); with parallel execution
  concurrent kernels can add up to more than the run took.
- With GPU execution providers onnxruntime's node times are measured on the host; kernels launched
  asynchronously may be charged to the node that waits for them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from optimizer.errors import UserError
from optimizer.runtime import run_interruptibly

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime

__all__ = ["NothingToProfileError", "NodeTiming", "OpTypeTiming", "ProfileResult", "profile_model", "read_trace"]

logger = logging.getLogger(__name__)

KERNEL_SUFFIX = "_kernel_time"
RUN_EVENT = "model_run"


class NothingToProfileError(UserError, ValueError):
    """The model runs no kernel (no nodes, or all folded by onnxruntime at load): there is nothing to time."""


@dataclass
class NodeTiming:
    """One node as onnxruntime ran it; `share` is its fraction of the summed kernel time."""

    name: str
    op_type: str
    provider: str
    mean_ms: float
    share: float


@dataclass
class OpTypeTiming:
    """All nodes of one op type: how many, their summed mean time per run and its share."""

    op_type: str
    nodes: int
    mean_ms: float
    share: float


@dataclass
class ProfileResult:
    """Timings of `runs` profiled runs; times are means per run, in milliseconds."""

    runs: int
    run_ms: float
    kernel_ms: float
    nodes: list[NodeTiming]
    by_op_type: list[OpTypeTiming]

    def top(self, n: int) -> list[NodeTiming]:
        """The `n` slowest nodes, slowest first."""
        return self.nodes[: max(n, 0)]

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def profile_model(
    model_path: str | os.PathLike,
    feeds: Mapping[str, np.ndarray],
    *,
    session_options: onnxruntime.SessionOptions | None = None,
    providers: Sequence[str] | None = None,
    provider_options: Sequence[dict] | None = None,
    runs: int = 20,
    warmup: int = 3,
) -> ProfileResult:
    """Profile `runs` runs of the model on `feeds` after `warmup` untimed ones.

    `session_options` is used as given, with profiling switched on for this session only (the
    object is restored afterwards). `providers` defaults to the CPU execution provider.
    """
    import onnxruntime as ort

    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must not be negative, got {warmup}")
    from optimizer.io import scratch_folder  # onnx and onnx-ir load only when profiling

    options = session_options if session_options is not None else ort.SessionOptions()
    runs, warmup = _within_event_budget(model_path, runs, warmup)
    with scratch_folder("profile") as directory:
        return _profile_in(directory, model_path, feeds, options, providers, provider_options, runs, warmup)


TRACE_EVENT_BUDGET = 200_000
"""Most node events one profile traces: the trace is JSON read whole (about 2 KB of memory per event),
so a graph of many nodes is profiled over fewer runs instead of over gigabytes of trace."""


def _within_event_budget(model_path, runs: int, warmup: int) -> tuple[int, int]:
    """(runs, warmup) cut so that (runs + warmup) * nodes stays within TRACE_EVENT_BUDGET (at least one timed run)."""
    import onnx

    try:
        nodes = _node_count(onnx.load_model(os.fspath(model_path), load_external_data=False).graph)
    except Exception:  # noqa: BLE001 - onnxruntime reports an unreadable model itself
        return runs, warmup
    allowed = max(2, TRACE_EVENT_BUDGET // max(nodes, 1))
    if runs + warmup <= allowed:
        return runs, warmup
    warmup = min(warmup, 1)
    cut = max(1, allowed - warmup)
    logger.info("profiling %d runs instead of %d: %d nodes would trace %d events", cut, runs, nodes, (runs + warmup) * nodes)
    return cut, warmup


def _node_count(graph) -> int:
    """Nodes of a GraphProto and of its subgraphs."""
    total = len(graph.node)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                total += _node_count(attr.g)
            total += sum(_node_count(sub) for sub in attr.graphs)
    return total


def _profile_in(directory, model_path, feeds, options, providers, provider_options, runs: int, warmup: int) -> ProfileResult:
    """`profile_model` with its trace written under `directory` (removed by the caller)."""
    import onnxruntime as ort

    saved = (options.enable_profiling, options.profile_file_prefix)
    session = None
    trace_path = None
    try:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(directory, "ort_profile")
        try:
            session = ort.InferenceSession(
                os.fspath(model_path),
                options,
                providers=list(providers) if providers is not None else ["CPUExecutionProvider"],
                provider_options=list(provider_options) if provider_options is not None else None,
            )
        finally:
            options.enable_profiling, options.profile_file_prefix = saved
        feeds = dict(feeds)
        for _ in range(warmup + runs):
            run_interruptibly(session, None, feeds)
        trace_path = session.end_profiling()
        result = read_trace(trace_path, skip_runs=warmup)
    finally:
        if session is not None and trace_path is None:
            try:  # close the trace file before removing it
                session.end_profiling()
            except Exception:  # noqa: BLE001 - already failing; the first error is the one to report
                pass
        del session
    if result.runs != runs:
        logger.warning("the profile holds %d timed runs of %d (onnxruntime caps the events it records)", result.runs, runs)
    return result


def read_trace(trace_path: str | os.PathLike, *, skip_runs: int = 0) -> ProfileResult:
    """Summarize an onnxruntime profile trace (chrome trace JSON), leaving out its first `skip_runs` runs."""
    with open(trace_path, encoding="utf-8") as handle:
        events = json.load(handle)
    if isinstance(events, dict):  # the chrome trace object form
        events = events.get("traceEvents", [])
    return _summarize(events, skip_runs)


# -- the trace ----------------------------------------------------------------------------------


def _summarize(events: list[dict], skip_runs: int) -> ProfileResult:
    """Per-node and per-op-type means over the model runs after the first `skip_runs` (ValueError when none)."""
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == RUN_EVENT)
    timed = windows[skip_runs:]
    if not timed:
        raise ValueError(f"the profile trace holds {len(windows)} model runs, none left after skipping {skip_runs}")
    starts = [start for start, _ in timed]

    def timed_run(ts: float) -> bool:
        """Whether an event at `ts` falls inside a timed run's window."""
        index = bisect_right(starts, ts) - 1
        return index >= 0 and ts <= timed[index][1]

    kernels = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith(KERNEL_SUFFIX)]
    self_us = _self_times(kernels)
    totals: dict[tuple[str, str, str], float] = {}
    for event, own in zip(kernels, self_us):
        if not timed_run(event["ts"]):
            continue
        args = event.get("args", {})
        key = (event["name"][: -len(KERNEL_SUFFIX)], str(args.get("op_name", "?")), str(args.get("provider", "?")))
        totals[key] = totals.get(key, 0.0) + own
    if not totals:
        raise NothingToProfileError("the profile trace holds no node events in the timed runs: onnxruntime ran no kernels (the model has no nodes, or onnxruntime computed them all when it loaded it)")

    runs = len(timed)
    kernel_ms = sum(totals.values()) / runs / 1e3
    run_ms = sum(end - start for start, end in timed) / runs / 1e3

    def share(ms: float) -> float:
        """The fraction of the summed kernel time."""
        return ms / kernel_ms if kernel_ms > 0 else 0.0

    nodes = [
        NodeTiming(name=name, op_type=op_type, provider=provider, mean_ms=us / runs / 1e3, share=share(us / runs / 1e3))
        for (name, op_type, provider), us in totals.items()
    ]
    nodes.sort(key=lambda n: (-n.mean_ms, n.name, n.op_type))
    by_type: dict[str, list[float]] = {}
    for node in nodes:
        by_type.setdefault(node.op_type, []).append(node.mean_ms)
    by_op_type = [OpTypeTiming(op_type=op, nodes=len(ms), mean_ms=math.fsum(ms), share=share(math.fsum(ms))) for op, ms in by_type.items()]
    by_op_type.sort(key=lambda t: (-t.mean_ms, t.op_type))
    return ProfileResult(runs=runs, run_ms=run_ms, kernel_ms=kernel_ms, nodes=nodes, by_op_type=by_op_type)


def _self_times(kernels: list[dict]) -> list[float]:
    """Each kernel event's duration less the kernels nested in it (a control-flow node's subgraph), in µs.

    A thread runs one kernel at a time, so on one thread a kernel that starts inside another one's
    interval was run by it.
    """
    own = [float(e["dur"]) for e in kernels]
    by_thread: dict[object, list[int]] = {}
    for index, event in enumerate(kernels):
        by_thread.setdefault((event.get("pid"), event.get("tid")), []).append(index)
    for indices in by_thread.values():
        indices.sort(key=lambda i: (kernels[i]["ts"], -kernels[i]["dur"]))
        stack: list[int] = []
        for index in indices:
            start = kernels[index]["ts"]
            while stack and start >= kernels[stack[-1]]["ts"] + kernels[stack[-1]]["dur"]:
                stack.pop()
            if stack:
                own[stack[-1]] -= kernels[index]["dur"]
            stack.append(index)
    return [max(value, 0.0) for value in own]
