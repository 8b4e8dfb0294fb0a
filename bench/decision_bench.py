"""Does the tuner's decision survive noise? Repeated tuning runs with and without a background load (issue 16).

Per model: the original and its verified output at `--level` are the variants, the space is the one
`optimize` would search. Each engine (this one, and the previous one loaded from git at `--previous`)
tunes the model `--repeats` times, in alternation, quiet and then beside `--load` CPU-burning
processes. Reported per model, load and engine: the flip rate of the shipped choice (1 - the share of
the most frequent one), the budget overrun (wall time over the budget, worst and median), and the
speedup each engine's most frequent choice actually gives over the original under onnxruntime's
defaults in an independent paired timing run afterwards (quiet, `--validation-rounds` rounds, with a
control copy; `optimizer.decision` gives the interval).

    .venv/bin/python bench/decision_bench.py sample_models/cnn_bn.onnx sample_models/transformer_block.onnx \\
        --budget 10 --repeats 5 --out bench/out/decision.json --markdown bench/out/decision.md

Goal: flip rate 0 on ties under load, overrun within 10% plus one run, and a choice never slower
than the original in the validation run.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from timing import generate_inputs  # noqa: E402

from optimizer import decision, io, runtime, tune  # noqa: E402
from optimizer.analysis import inter_op_speedup_of  # noqa: E402
from optimizer.measure import machine_info, time_blocks  # noqa: E402
from tests.load import cpu_burners  # noqa: E402

PREVIOUS = "26371e0"
"""The last commit with the engine before this one (minimum ratios, a noise floor, no intervals)."""


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--level", default="O2")
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--load", type=int, default=2, help="CPU-burning processes in the loaded runs")
    parser.add_argument("--validation-rounds", type=int, default=20)
    parser.add_argument("--previous", default=PREVIOUS, help="git revision of the previous engine ('' to skip it)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/decision.json"))
    parser.add_argument("--markdown", type=Path, default=Path("bench/out/decision.md"))
    return parser.parse_args()


def previous_engine(revision: str):
    """The tuner module as it was at `revision`, loaded beside the current one."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:optimizer/tune.py"], check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("previous_tune", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:optimizer/tune.py", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module


def model_setup(path: Path, level: str, folder: Path):
    """The variants (original, level), the inputs and the search space `optimize` would use."""
    from optimizer.api import optimize

    variants = {"original": path}
    out = folder / f"{path.stem}.{level}.onnx"
    if optimize(path, out, level=level, force=True, tune=False).verified:
        variants[level] = out
    model = io.load(path)
    space = tune.build_space(
        providers_available=runtime.available_providers(), inter_op_speedup=inter_op_speedup_of(model),
        op_types=sorted({node.op_type for node in model.graph}),
    )
    del model
    feeds = generate_inputs(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    return variants, feeds, space


def repeated_runs(engines: dict, variants, feeds, space, level: str, budget: float, repeats: int) -> dict:
    """Each engine `repeats` times, in alternation: the choices, wall times and overruns."""
    runs = {name: [] for name in engines}
    for _ in range(repeats):
        for name, engine in engines.items():
            start = time.perf_counter()
            result = engine.tune(variants, feeds, space, budget_s=budget, shipped_variant=level if level in variants else None)
            wall = time.perf_counter() - start
            runs[name].append({"chosen": result.chosen.key, "candidate": result.chosen, "wall_s": wall, "overrun_s": wall - budget, "decision": result.decision})
    return runs


def summary(runs: list[dict], budget: float) -> dict:
    """Flip rate and overrun of one engine's repeated runs."""
    counts = collections.Counter(r["chosen"] for r in runs)
    modal, count = counts.most_common(1)[0]
    overruns = [r["overrun_s"] for r in runs]
    return {
        "choices": dict(counts), "modal": modal, "flip_rate": 1 - count / len(runs),
        "overrun_worst_s": max(overruns), "overrun_median_s": statistics.median(overruns), "overrun_worst_pct": max(overruns) / budget,
        "decisions": [r["decision"] for r in runs],
    }


def validate(choices: dict, variants, feeds, rounds: int) -> dict:
    """Time each engine's modal choice against the original under defaults (and a control) in the same blocks."""
    reference = tune.Candidate("original", runtime.RuntimeConfig())
    members = {"original | defaults": reference, "control": reference, **choices}
    sessions = {name: c.config.create_session(variants[c.variant]) for name, c in members.items()}
    runners = {name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()}
    times = time_blocks(runners, rounds=rounds, block_seconds=0.1, min_block_runs=1)
    base = times.minimums("original | defaults")
    margin = decision.noise_margin(times.minimums("control"), base)
    verdicts = {name: decision.compare(name, times.minimums(name), "original | defaults", base, margin=margin) for name in choices}
    return {name: {"speedup": v.speedup, "interval": [1 / v.high, 1 / v.low], "outcome": v.outcome, "sentence": v.sentence} for name, v in verdicts.items()}


def bench_model(path: Path, args, engines: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="decision-bench-") as scratch:
        variants, feeds, space = model_setup(path, args.level, Path(scratch))
        entry = {"model": path.stem, "variants": list(variants), "configurations": len(space.configs), "loads": {}}
        modal: dict = {}
        for load in (0, args.load):
            with cpu_burners(load):
                runs = repeated_runs(engines, variants, feeds, space, args.level, args.budget, args.repeats)
            entry["loads"][str(load)] = {name: summary(r, args.budget) for name, r in runs.items()}
            for name, r in runs.items():
                top = entry["loads"][str(load)][name]["modal"]
                modal[f"{name} @ load {load}"] = next(x["candidate"] for x in r if x["chosen"] == top)
        entry["validation"] = validate(modal, variants, feeds, args.validation_rounds)
        entry["validation_choices"] = {name: c.key for name, c in modal.items()}
    return entry


def _row(model: str, load: str, engine: str, s: dict, v: dict) -> str:
    overrun = f"{s['overrun_worst_s']:+.2f} s ({s['overrun_worst_pct']:+.0%})"
    validated = f"{v['speedup']:.2f}x ({v['interval'][0]:.2f}-{v['interval'][1]:.2f}, {v['outcome']})"
    return f"| {model} | {load} | {engine} | {s['flip_rate']:.0%} | {overrun} | {s['modal'].replace(' | ', ': ')} | {validated} |"


def markdown(results: list[dict], machine: dict, args) -> str:
    header = [
        f"Machine: {machine['cpu_model']}, {machine['cpu_affinity']} usable cores, onnxruntime {machine['onnxruntime']}. "
        f"Budget {args.budget:g} s, {args.repeats} runs per engine and load, load = {args.load} CPU-burning processes.",
        "",
        "| model | load | engine | flip rate | worst overrun | modal choice | validated speedup vs original (interval) |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [
        _row(r["model"], load, name, s, r["validation"][f"{name} @ load {load}"])
        for r in results for load, engines in r["loads"].items() for name, s in engines.items()
    ]
    return "\n".join(header + rows) + "\n"


def main() -> int:
    args = _arguments()
    engines = {"new": tune}
    if args.previous:
        engines["previous"] = previous_engine(args.previous)
    machine = machine_info()
    results = [bench_model(path, args, engines) for path in args.models]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "budget_s": args.budget, "repeats": args.repeats, "load": args.load, "results": results}, indent=1))
    args.markdown.write_text(markdown(results, machine, args))
    print(markdown(results, machine, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
