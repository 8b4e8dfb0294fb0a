"""Per model and per onnxruntime flavour: what `optimize` ships and how fast it is against onnxruntime's CPU
provider at fp32 under its defaults, with the error of what ships and the time and memory of the search.

    .venv/bin/python bench/providers_bench.py bench/data/suite/resnet50.onnx ... \\
        --runtime cpu=.venv --runtime openvino=.venv-openvino --out bench/out/providers.json --markdown bench/out/providers.md

For each runtime (a venv holding one onnxruntime flavour and this package) and model, in fresh processes:
1. `optimize MODEL -o OUT --quantize auto --budget B --json` (wall time and peak RSS of the whole search);
2. `bench/timing.py` in that venv: the original under the CPU provider's defaults (the baseline), a control
   copy of it, and the shipped model under its settings file, in rotated blocks; the speedup is the ratio
   of minimums with the paired verdict, and the error is the shipped model's against the fp32 baseline.
Baselines of different flavours run in different processes (one onnxruntime per process): the
`vs cpu flavour` column divides minimums across processes and is only as good as the host's drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import _run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _optimize(venv: Path, model: Path, out: Path, budget: float, extra: list[str]) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(venv / "bin" / "optimize"), str(model), "-o", str(out), "--force", "--json", "--quantize", "auto", "--budget", str(budget), *extra]
    run = _run_measured(argv, timeout=budget * 6 + 300)
    result = {"wall_seconds": run["wall_seconds"], "peak_rss_bytes": run["peak_rss_bytes"], "returncode": run["returncode"]}
    if run["returncode"] != 0:
        result["error"] = (run["stderr"].strip().splitlines() or ["?"])[-1]
        return result
    document = json.loads(run["stdout"])
    settings = Path(str(out) + ".json")
    config = json.loads(settings.read_text()) if settings.is_file() else None
    lossy = document.get("lossy") or {}
    result.update(
        shipped_variant=document.get("shipped_variant"),
        lossy_chosen=lossy.get("chosen"),
        settings=str(settings) if config else None,
        providers=config["providers"] if config else ["CPUExecutionProvider"],
        provider_options=config["provider_options"] if config else [{}],
        tool=document.get("tool"),
    )
    return result


def _time(venv: Path, model: Path, out: Path, settings: str | None, rounds: int, budget: float) -> dict:
    shipped = f"{out}@{settings}" if settings else str(out)
    argv = [
        str(venv / "bin" / "python"), str(ROOT / "bench" / "timing.py"), "--candidate", f"fp32_cpu_defaults={model}", "--control",
        "--candidate", f"shipped={shipped}", "--rounds", str(rounds), "--budget", str(budget),
    ]
    run = _run_measured(argv, timeout=budget * 4 + 300)
    if run["returncode"] != 0 and not run["stdout"].strip():
        return {"error": (run["stderr"].strip().splitlines() or ["?"])[-1]}
    return json.loads(run["stdout"])


def _row(model: str, runtime: str, opt: dict, timing: dict, cpu_baseline_ms: float | None) -> dict:
    candidates = timing.get("candidates", {})
    shipped, base, control = candidates.get("shipped", {}), candidates.get("fp32_cpu_defaults", {}), candidates.get("control", {})
    verdict = shipped.get("verdict_vs_fp32_cpu_defaults", {})
    error = shipped.get("error_vs_fp32_cpu_defaults", {})
    return {
        "model": model,
        "runtime": runtime,
        "shipped": opt.get("shipped_variant"),
        "lossy": opt.get("lossy_chosen"),
        "provider": ",".join(p.replace("ExecutionProvider", "") for p in opt.get("providers", [])),
        "provider_options": opt.get("provider_options"),
        "baseline_min_ms": base.get("min_ms"),
        "shipped_min_ms": shipped.get("min_ms"),
        "control_ratio": (control.get("min_ms") / base["min_ms"]) if control.get("min_ms") and base.get("min_ms") else None,
        "speedup_min": shipped.get("speedup_min"),
        "speedup_median": shipped.get("speedup_median"),
        "verdict": verdict.get("outcome"),
        "interval": verdict.get("interval"),
        "vs_cpu_flavour": (cpu_baseline_ms / shipped["min_ms"]) if cpu_baseline_ms and shipped.get("min_ms") else None,
        "error": error,
        "search_seconds": opt.get("wall_seconds"),
        "search_peak_rss_mib": (opt.get("peak_rss_bytes") or 0) / 2**20,
        "failure": opt.get("error") or timing.get("error") or timing.get("errors") or None,
    }


def _markdown(rows: list[dict], machine: dict | None) -> str:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    lines = [
        "| model | flavour | shipped | provider | fp32 CPU defaults (min ms) | shipped (min ms) | speedup (min) | verdict | vs cpu flavour | control | max rel error | search s | search MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        shipped = row["shipped"] or "-"
        if row["lossy"]:
            shipped += f" ({row['lossy']})"
        options = row["provider_options"][0] if row["provider_options"] else {}
        precision = "bf16" if "bf16" in json.dumps(options) else options.get("precision", "")
        lines.append(
            f"| {row['model']} | {row['runtime']} | {shipped} | {row['provider']} {precision} | {fmt(row['baseline_min_ms'], '.2f')} | "
            f"{fmt(row['shipped_min_ms'], '.2f')} | {fmt(row['speedup_min'], '.2f')}x | {row['verdict'] or '-'} | {fmt(row['vs_cpu_flavour'], '.2f')}x | "
            f"{fmt(row['control_ratio'], '.3f')} | {fmt((row['error'] or {}).get('max_rel_to_max'), '.2e')} | {fmt(row['search_seconds'], '.0f')} | "
            f"{fmt(row['search_peak_rss_mib'], '.0f')} |"
        )
        if row["failure"]:
            lines.append(f"|  | | failure: {row['failure']} | | | | | | | | | | |")
    if machine:
        lines += ["", f"Machine: {machine.get('cpu_model')}, {machine.get('cpu_affinity')} usable cores, ISA {', '.join(machine.get('cpu_isa', []))}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--runtime", action="append", required=True, metavar="NAME=VENV", help="a venv with one onnxruntime flavour and this package; the first is the cpu baseline flavour")
    parser.add_argument("--budget", type=float, default=60.0, help="optimize --budget per model and runtime")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--timing-budget", type=float, default=60.0)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "providers")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--optimize-arg", action="append", default=[], help="passed to optimize (repeatable)")
    args = parser.parse_args(argv)
    runtimes = [(name, Path(venv)) for name, _, venv in (item.partition("=") for item in args.runtime)]
    rows, machine = [], None
    for model in args.models:
        cpu_baseline = None
        for index, (name, venv) in enumerate(runtimes):
            out = args.work / name / model.name
            print(f"{model.name} [{name}]: optimize", file=sys.stderr, flush=True)
            opt = _optimize(venv, model, out, args.budget, args.optimize_arg)
            timing = _time(venv, model, out, opt.get("settings"), args.rounds, args.timing_budget) if "error" not in opt else {}
            machine = machine or timing.get("machine")
            if index == 0:
                cpu_baseline = timing.get("candidates", {}).get("fp32_cpu_defaults", {}).get("min_ms")
            row = _row(model.stem, name, opt, timing, cpu_baseline)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    text = _markdown(rows, machine)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
