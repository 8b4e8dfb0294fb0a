"""Latency of several onnxruntime sessions of one model, timed in one process by rotated blocks.

The discipline (DESIGN.md, "Measurement discipline"): warm every candidate up, then for each round
visit the candidates in an order rotated by one each round; a visit is a block: a 20 ms pause (so the
previous session's spinning intra-op threads go quiet), one untimed run, then k timed runs. Compare
candidates by their minimum over all blocks; report median and p90 too. A second session of the
baseline (the control) is timed like any other candidate: its ratio to the baseline is the noise floor.

This file is the bench's own copy of the harness until `optimizer/measure.py` exists. It is also a
script: `python bench/timing.py --candidate original=a.onnx --candidate optimized=b.onnx ...` prints
one JSON object on stdout; `run_bench.py` runs it in a fresh process per model.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "LatencyStats",
    "machine_info",
    "generate_inputs",
    "time_candidates",
    "main",
]

DEFAULT_SEQ_LEN = 128


@dataclass
class LatencyStats:
    """Per-candidate latency summary, in milliseconds."""

    runs: int
    blocks: int
    min_ms: float
    p10_ms: float
    median_ms: float
    p90_ms: float
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
    import os

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


_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def _is_token_like(name: str) -> bool:
    lowered = name.lower()
    return any(key in lowered for key in ("ids", "mask", "token", "position", "segment"))


def _bind_dims(name: str, shape: Sequence, integer: bool, overrides: Mapping[str, Sequence[int]]) -> list[int]:
    if name in overrides:
        return [int(d) for d in overrides[name]]
    dims = []
    for axis, dim in enumerate(shape):
        if isinstance(dim, int) and dim >= 0:
            dims.append(dim)
            continue
        label = str(dim or "").lower()
        if "batch" in label or axis == 0:
            dims.append(1)
        elif integer and _is_token_like(name):
            dims.append(DEFAULT_SEQ_LEN)
        elif any(key in label for key in ("seq", "len", "token")):
            dims.append(DEFAULT_SEQ_LEN)
        else:
            dims.append(1)
    return dims


def generate_inputs(session, seed: int = 0, overrides: Mapping[str, Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """Inputs from the declared shapes: dynamic dims batch 1, seq 128 for int ids/mask inputs, else 1.

    Floats are standard normal; ints uniform in [0, 100); masks are ones; token-type/segment ids are
    zeros (their embedding tables are tiny); position ids count 0..n-1.
    """
    rng = np.random.default_rng(seed)
    overrides = overrides or {}
    feeds: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        dtype = _NP_TYPES.get(arg.type)
        if dtype is None:
            raise ValueError(f"input {arg.name!r}: cannot generate values of type {arg.type}")
        integer = np.issubdtype(dtype, np.integer)
        dims = _bind_dims(arg.name, arg.shape, integer, overrides)
        lowered = arg.name.lower()
        if dtype == np.bool_:
            value = np.ones(dims, dtype=np.bool_)
        elif integer and "mask" in lowered:
            value = np.ones(dims, dtype=dtype)
        elif integer and ("token_type" in lowered or "segment" in lowered):
            value = np.zeros(dims, dtype=dtype)
        elif integer and "position" in lowered:
            value = np.broadcast_to(np.arange(dims[-1] if dims else 1, dtype=dtype), dims).copy()
        elif integer:
            high = 100 if np.iinfo(dtype).max >= 100 else int(np.iinfo(dtype).max) + 1
            value = rng.integers(0, high, size=dims).astype(dtype)
        elif "mask" in lowered:
            value = np.ones(dims, dtype=dtype)
        else:
            value = rng.standard_normal(dims).astype(dtype)
        feeds[arg.name] = value
    return feeds


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


def _output_error(reference: list[np.ndarray], other: list[np.ndarray]) -> dict:
    worst_abs, worst_rel = 0.0, 0.0
    for ref, out in zip(reference, other):
        ref = np.asarray(ref)
        out = np.asarray(out)
        if ref.shape != out.shape:
            return {"max_abs": None, "max_rel_to_max": None, "note": f"shape {out.shape} != {ref.shape}"}
        if ref.dtype.kind in "fc":
            diff = float(np.max(np.abs(ref.astype(np.float64) - out.astype(np.float64)))) if ref.size else 0.0
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        else:
            diff = float(np.max(ref != out)) if ref.size else 0.0
            scale = 1.0
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / scale if scale else diff)
    return {"max_abs": worst_abs, "max_rel_to_max": worst_rel}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", action="append", required=True, metavar="NAME=PATH", help="a session to time; the first is the baseline")
    parser.add_argument("--control", action="store_true", help="also time a second session of the first candidate, named 'control'")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--block-runs", type=int, default=None, help="k timed runs per block [default: fill ~0.25 s]")
    parser.add_argument("--block-seconds", type=float, default=0.25)
    parser.add_argument("--budget", type=float, default=None, help="stop after the round that passes this many seconds")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--intra-op-threads", type=int, default=None, help="SessionOptions.intra_op_num_threads [default: onnxruntime's default]")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    paths: dict[str, str] = {}
    for item in args.candidate:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"--candidate {item!r}: expected NAME=PATH")
        paths[name] = path
    names = list(paths)
    if args.control:
        paths = {names[0]: paths[names[0]], "control": paths[names[0]], **{n: paths[n] for n in names[1:]}}
    overrides = {}
    for item in args.input_shape:
        name, _, dims = item.partition("=")
        overrides[name] = [int(d) for d in dims.split(",") if d]

    result: dict = {"machine": machine_info(), "candidates": {}, "errors": {}}
    sessions = {}
    options = ort.SessionOptions()
    if args.intra_op_threads is not None:
        options.intra_op_num_threads = args.intra_op_threads
    result["session_options"] = {"intra_op_num_threads": args.intra_op_threads}
    for name, path in paths.items():
        start = time.perf_counter()
        try:
            sessions[name] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - a candidate that does not load is reported, not fatal
            result["errors"][name] = f"{type(error).__name__}: {error}"
            continue
        result["candidates"][name] = {"path": path, "session_seconds": time.perf_counter() - start}
    baseline = names[0]
    if baseline not in sessions:
        print(json.dumps(result))
        return 1
    feeds = generate_inputs(sessions[baseline], seed=args.seed, overrides=overrides)
    result["inputs"] = {name: {"shape": list(value.shape), "dtype": str(value.dtype)} for name, value in feeds.items()}

    reference = sessions[baseline].run(None, feeds)
    runners = {}
    for name, session in sessions.items():
        try:
            outputs = session.run(None, feeds)
        except Exception as error:  # noqa: BLE001
            result["errors"][name] = f"{type(error).__name__}: {error}"
            continue
        result["candidates"][name]["error_vs_" + baseline] = _output_error(reference, outputs)
        runners[name] = (lambda s=session: s.run(None, feeds))

    def progress(done: int, total: int) -> None:
        print(f"  round {done}/{total}", file=sys.stderr, end="\r" if done < total else "\n", flush=True)

    stats, plan = time_candidates(
        runners,
        rounds=args.rounds,
        block_runs=args.block_runs,
        block_seconds=args.block_seconds,
        budget_s=args.budget,
        on_round=progress if sys.stderr.isatty() else None,
    )
    result["plan"] = plan
    base_min = stats[baseline].min_ms
    base_median = stats[baseline].median_ms
    for name, stat in stats.items():
        entry = result["candidates"][name]
        entry.update(asdict(stat))
        entry["speedup_min"] = base_min / stat.min_ms
        entry["speedup_median"] = base_median / stat.median_ms
    result["baseline"] = baseline
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
