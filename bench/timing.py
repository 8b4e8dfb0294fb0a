"""Latency of several onnxruntime sessions of one model, timed in one process by rotated blocks.

The discipline (DESIGN.md, "Measurement discipline"): warm every candidate up, then for each round
visit the candidates in an order rotated by one each round; a visit is a block: a 20 ms pause (so the
previous session's spinning intra-op threads go quiet), one untimed run, then k timed runs. Compare
candidates by their minimum over all blocks; report median and p90 too. A second session of the
baseline (the control) is timed like any other candidate: its ratio to the baseline is the noise floor.
Each candidate also gets the paired verdict against the baseline (`optimizer.decision`: the interval
of the ratio of low percentiles of block minimums, win/tie/loss/inconclusive beyond that noise).

The harness itself lives in `optimizer/measure.py`; this file adds input generation and is a
script: `python bench/timing.py --candidate original=a.onnx --candidate optimized=b.onnx ...` prints
one JSON object on stdout; `run_bench.py` runs it in a fresh process per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np

from optimizer import decision
from optimizer.measure import machine_info, time_blocks

__all__ = ["generate_inputs", "machine_info", "main"]

DEFAULT_SEQ_LEN = 128


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
    parser.add_argument(
        "--candidate", action="append", required=True, metavar="NAME=PATH[@SETTINGS.json]",
        help="a session to time; the first is the baseline; @SETTINGS.json runs it under that settings file (provider, options, threads)",
    )
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
        path, _, settings = path.partition("@")
        try:
            if settings:
                from optimizer.runtime import load_config

                sessions[name] = load_config(settings)[0].create_session(path)
                result.setdefault("settings", {})[name] = settings
            else:
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

    times = time_blocks(
        runners,
        rounds=args.rounds,
        block_runs=args.block_runs,
        block_seconds=args.block_seconds,
        budget_s=args.budget,
        on_round=progress if sys.stderr.isatty() else None,
    )
    result["plan"] = {"rounds": times.rounds, "rounds_requested": args.rounds, "block_runs": times.block_runs, "seconds": times.seconds}
    stats = {name: times.stats(name) for name in runners}
    base_min = stats[baseline].min_ms
    base_median = stats[baseline].median_ms
    margin = decision.noise_margin(times.minimums("control") if "control" in runners else None, times.minimums(baseline))
    for name, stat in stats.items():
        entry = result["candidates"][name]
        entry.update(asdict(stat))
        entry["speedup_min"] = base_min / stat.min_ms
        entry["speedup_median"] = base_median / stat.median_ms
        if name != baseline:
            entry["verdict_vs_" + baseline] = decision.compare(name, times.minimums(name), baseline, times.minimums(baseline), margin=margin).to_dict()
    result["baseline"] = baseline
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
