"""Benchmark `optimize --quantize auto` (or another method) on a suite: speed, error and size of what ships.

    .venv/bin/python bench/lossy_bench.py bench/data/suite-perturbed --quantize auto --max-error rel=0.05 \
        --markdown bench/out/lossy.md [--models bert_base,resnet50] [--calibration-samples 8] [--budget 240]

Per model, in this process:
1. inputs: a verification sample (seed 1, passed as --inputs), calibration samples (seeds 100+, a folder
   of .npz, passed as --calibration) and a held-out sample (seed 2) nobody saw: ids in [0, 1000), masks
   of ones, token types of zeros, images N(0, 1);
2. `optimize MODEL --level L --no-tune` (the lossless model) and `optimize MODEL --level L --no-tune
   --quantize Q ...` (what ships), both through the Python API, timed;
3. one timing run (rotated blocks, minimums; DESIGN.md "Measurement discipline") of the original, a
   control copy of it, the lossless model and the shipped model;
4. the shipped model's error on the held-out sample against the original (rel = max|a-b| / max|a|,
   cosine), and weight bytes original / shipped.
Every figure is a ratio measured in the same run; the control's distance from 1.0 is the noise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from optimizer import io  # noqa: E402
from optimizer.api import optimize  # noqa: E402
from optimizer.stats import ModelStats  # noqa: E402
from optimizer.error_budget import ErrorBudget, measure_errors  # noqa: E402
from optimizer.lossy import LossyOptions  # noqa: E402
from optimizer.measure import machine_info, time_candidates  # noqa: E402


def sample(model, seed: int) -> dict[str, np.ndarray]:
    """One input sample for a suite model (token ids, masks, token types, or images)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.inputs:
        shape = [d if isinstance(d, int) else (1 if i == 0 else 128) for i, d in enumerate(value.shape)]
        dtype = value.dtype.numpy()
        if np.issubdtype(dtype, np.integer):
            if "mask" in value.name:
                feeds[value.name] = np.ones(shape, dtype=dtype)
            elif "type" in value.name:
                feeds[value.name] = np.zeros(shape, dtype=dtype)
            else:
                feeds[value.name] = rng.integers(0, 1000, size=shape).astype(dtype)
        else:
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def bench_model(path: Path, args, work: Path) -> dict:
    import onnxruntime as ort

    model = io.load(path)
    verification = sample(model, 1)
    held_out = sample(model, 2)
    calibration = work / f"{path.stem}-calibration"
    calibration.mkdir()
    for index in range(args.calibration_samples):
        np.savez(calibration / f"{index}.npz", **sample(model, 100 + index))
    before = ModelStats.of(model, path)
    del model

    lossless, shipped = work / f"{path.stem}.lossless.onnx", work / f"{path.stem}.shipped.onnx"
    start = time.perf_counter()
    optimize(path, lossless, level=args.level, inputs=verification)
    lossless_s = time.perf_counter() - start
    options = LossyOptions(
        quantize=args.quantize, calibration=calibration if args.calibration_samples else None,
        budget=ErrorBudget.parse(args.max_error), time_budget_s=args.budget,
    )
    start = time.perf_counter()
    result = optimize(path, shipped, level=args.level, inputs=verification, lossy=options)
    lossy_s = time.perf_counter() - start

    def runner(file: Path):
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        return lambda: session.run(None, held_out)

    runners = {"original": runner(path), "control": runner(path), "lossless": runner(lossless), "shipped": runner(shipped)}
    stats, plan = time_candidates(runners, rounds=args.rounds)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, held_out)
    names = [o.name for o in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()]
    actual = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"]).run(None, held_out)
    errors = measure_errors(names, expected, actual)
    lossy = result.lossy.to_dict() if result.lossy else None
    return {
        "model": path.stem,
        "chosen": result.lossy.chosen.method if result.lossy and result.lossy.chosen else None,
        "variants": [v["summary"] for v in lossy["variants"]] if lossy else [],
        "excluded": {v["method"]: len(v["excluded_nodes"]) for v in lossy["variants"]} if lossy else {},
        "min_ms": {k: s.min_ms for k, s in stats.items()},
        "median_ms": {k: s.median_ms for k, s in stats.items()},
        "speedup_vs_original": stats["original"].min_ms / stats["shipped"].min_ms,
        "speedup_vs_lossless": stats["lossless"].min_ms / stats["shipped"].min_ms,
        "lossless_vs_original": stats["original"].min_ms / stats["lossless"].min_ms,
        "control": stats["original"].min_ms / stats["control"].min_ms,
        "held_out_errors": [e.to_dict() for e in errors],
        "weight_bytes": {"original": before.initializer_bytes, "shipped": result.after.initializer_bytes},
        "weight_ratio": before.initializer_bytes / max(1, result.after.initializer_bytes),
        "weight_bytes_by_dtype": result.after.weight_bytes_by_dtype,
        "seconds": {"lossless": lossless_s, "lossy": lossy_s, "lossy_stage": result.seconds.get("lossy")},
        "timing_plan": {"rounds": plan["rounds"], "block_runs": plan["block_runs"]},
    }


def markdown(rows: list[dict], args) -> str:
    lines = [
        f"`optimize --level {args.level} --quantize {args.quantize} --max-error {' '.join(args.max_error) or 'rel=0.05'}`"
        f" ({args.calibration_samples} synthetic calibration samples; held-out sample for the error)",
        "",
        "| model | ships | vs original | vs lossless | lossless vs original | control | rel err (held out) | cos | weights orig/shipped | optimize s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | error: {row['error']} | | | | | | | | |")
            continue
        worst = max(row["held_out_errors"], key=lambda e: e["rel"])
        lines.append(
            f"| {row['model']} | {row['chosen'] or 'lossless'} | {row['speedup_vs_original']:.2f} | {row['speedup_vs_lossless']:.2f} | "
            f"{row['lossless_vs_original']:.2f} | {row['control']:.2f} | {worst['rel']:.3f} | {worst['cos']:.4f} | {row['weight_ratio']:.2f} | {row['seconds']['lossy']:.0f} |"
        )
    lines.append("")
    for row in rows:
        if "variants" in row:
            lines.append(f"- {row['model']}: " + "; ".join(row["variants"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path)
    parser.add_argument("--models", default="")
    parser.add_argument("--level", default="O2")
    parser.add_argument("--quantize", default="auto")
    parser.add_argument("--max-error", action="append", default=[])
    parser.add_argument("--calibration-samples", type=int, default=8)
    parser.add_argument("--budget", type=float, default=240.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "lossy.json")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    wanted = [m for m in args.models.split(",") if m]
    paths = sorted(p for p in args.suite.glob("*.onnx") if not wanted or p.stem in wanted)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="lossy-bench-"))
    try:
        for path in paths:
            print(f"{path.stem} ...", flush=True)
            try:
                row = bench_model(path, args, work)
            except Exception as error:  # noqa: BLE001 - one model's failure is a result, not the end
                row = {"model": path.stem, "error": f"{type(error).__name__}: {error}"}
            rows.append(row)
            print(json.dumps({k: row.get(k) for k in ("model", "chosen", "speedup_vs_original", "speedup_vs_lossless", "control", "weight_ratio", "error")}), flush=True)
            for leftover in work.iterdir():
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": _dt.date.today().isoformat(), "machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(markdown(rows, args))
    print(markdown(rows, args))


if __name__ == "__main__":
    main()
