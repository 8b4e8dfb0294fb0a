"""The tuner against onnxruntime's defaults and against an exhaustive sweep of the same space.

Per model: build the search space (`optimizer.tune.build_space`, pruned by the graph analysis), run
the tuner (successive halving, `--budget`), then an exhaustive sweep that times every configuration
for as many rounds as the tuner's finalists get (27: rungs of 3, 9, 27). Then one validation run
times onnxruntime's defaults, a control copy of them, the exhaustive best and the tuner's pick
together in rotated blocks, so the pick is judged against the best in the same run by minimum.

    .venv/bin/python bench/tune_vs_exhaustive.py sample_models/cnn_bn.onnx bench/data/suite-perturbed/bert_base.onnx \\
        --out bench/out/tuning.json --markdown bench/out/tuning.md

Goal (issue #4): the pick within 5% of the exhaustive best, at no more than 40% of the exhaustive time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import generate_inputs  # noqa: E402

from optimizer import io, runtime, tune  # noqa: E402
from optimizer.analysis import inter_op_speedup_of  # noqa: E402
from optimizer.measure import machine_info, time_candidates  # noqa: E402

EXHAUSTIVE_ROUNDS = 27
VALIDATION_ROUNDS = 20


def _level_variants(path: Path, folder: Path) -> dict[str, Path]:
    """The original and each level's verified output (identical outputs once), as `optimize` tunes them."""
    from optimizer.api import distinct_variants, optimize

    variants: dict[str, Path] = {"original": path}
    for level in ("O1", "O2", "O3"):
        out = folder / f"{path.stem}.{level}.onnx"
        if optimize(path, out, level=level, force=True).verified:
            variants[level] = out
    return distinct_variants(variants)


def bench_model(path: Path, budget: float, with_variants: bool = False) -> dict:
    model = io.load(path)
    op_types = sorted({node.op_type for node in model.graph})
    speedup_bound = inter_op_speedup_of(model)
    del model
    space = tune.build_space(providers_available=runtime.available_providers(), inter_op_speedup=speedup_bound, op_types=op_types)
    probe = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = generate_inputs(probe)
    del probe
    scratch = tempfile.TemporaryDirectory(prefix="tune-bench-")
    variants = _level_variants(path, Path(scratch.name)) if with_variants else {"original": path}

    started = time.perf_counter()
    tuned = tune.tune(variants, feeds, space, budget_s=budget, shipped_variant=list(variants)[-1] if with_variants else None)
    tune_seconds = time.perf_counter() - started

    ratios, candidates, exhaustive_seconds = tune.exhaustive(variants, feeds, space, rounds=EXHAUSTIVE_ROUNDS)
    best_key = min(ratios, key=ratios.get)
    best = candidates.get(best_key, tuned.reference)

    contenders = {"defaults": tuned.reference, "control": tuned.reference, "exhaustive best": best, "tuner pick": tuned.chosen}
    sessions = {name: candidate.config.create_session(variants[candidate.variant]) for name, candidate in contenders.items()}
    runners = {name: (lambda s=session: s.run(None, feeds)) for name, session in sessions.items()}
    stats, _ = time_candidates(runners, rounds=VALIDATION_ROUNDS, block_seconds=0.1)
    base = stats["defaults"].min_ms
    scratch.cleanup()
    return {
        "model": path.stem + (" (graphs x settings)" if with_variants else ""),
        "variants": list(variants),
        "inputs": {name: list(array.shape) for name, array in feeds.items()},
        "configurations": len(space.configs),
        "skipped": space.skipped,
        "inter_op_speedup_bound": speedup_bound,
        "tuner": {"seconds": tune_seconds, "mode": tuned.mode, "rungs": tuned.rungs, "pick": tuned.chosen.key, "decision": tuned.decision},
        "exhaustive": {"seconds": exhaustive_seconds, "best": best.key, "ratios": ratios},
        "validation": {name: {"min_ms": s.min_ms, "median_ms": s.median_ms, "p90_ms": s.p90_ms, "speedup_by_min": base / s.min_ms} for name, s in stats.items()},
        "pick_vs_best": stats["tuner pick"].min_ms / stats["exhaustive best"].min_ms,
        "time_ratio": tune_seconds / exhaustive_seconds,
    }


def markdown(results: list[dict], machine: dict) -> str:
    lines = [
        f"Machine: {machine['cpu_model']}, {machine['cpu_affinity']} usable cores, onnxruntime {machine['onnxruntime']}.",
        "",
        "| model | configs | tuner s | exhaustive s | time ratio | tuner pick | exhaustive best | pick / best (min) | tuned vs defaults | best vs defaults | control |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        v = r["validation"]
        r = {**r, "tuner": {**r["tuner"], "pick": r["tuner"]["pick"].replace(" | ", ": ")}, "exhaustive": {**r["exhaustive"], "best": r["exhaustive"]["best"].replace(" | ", ": ")}}
        lines.append(
            f"| {r['model']} | {r['configurations']} | {r['tuner']['seconds']:.1f} | {r['exhaustive']['seconds']:.1f} | {r['time_ratio']:.2f} "
            f"| {r['tuner']['pick']} | {r['exhaustive']['best']} | {r['pick_vs_best']:.3f} | {v['tuner pick']['speedup_by_min']:.2f} "
            f"| {v['exhaustive best']['speedup_by_min']:.2f} | {v['control']['speedup_by_min']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--budget", type=float, default=60.0, help="the tuner's budget in seconds")
    parser.add_argument("--append", action="store_true", help="add to the results already in --out")
    parser.add_argument("--variants", action="store_true", help="also tune the graph: the original and each level's output, as `optimize` does")
    parser.add_argument("--out", type=Path, default=Path("bench/out/tuning.json"))
    parser.add_argument("--markdown", type=Path, default=Path("bench/out/tuning.md"))
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text())["results"] if args.append and args.out.exists() else []
    for path in args.models:
        print(f"{path} ...", file=sys.stderr, flush=True)
        results.append(bench_model(path, args.budget, args.variants))
        r = results[-1]
        print(f"  pick/best {r['pick_vs_best']:.3f}, time ratio {r['time_ratio']:.2f}, pick {r['tuner']['pick']}, best {r['exhaustive']['best']}", file=sys.stderr, flush=True)
        machine = machine_info()
        args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2, default=str))
        args.markdown.write_text(markdown(results, machine))
    print(args.markdown.read_text())
    return 0


if __name__ == "__main__":
    np.random.seed(0)
    sys.exit(main())
