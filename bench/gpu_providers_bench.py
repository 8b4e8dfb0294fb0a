"""For a GPU owner: the providers table of `providers_bench.py` on CUDA and TensorRT, with fp16. NOT RUN HERE
(this project's machines have no GPU); run it on a machine with `onnxruntime-gpu` installed:

    python3 -m venv .venv-gpu && .venv-gpu/bin/pip install onnxruntime-gpu -r requirements.lock -e . --no-deps
    .venv-gpu/bin/python bench/gpu_providers_bench.py bench/data/suite/*.onnx --markdown bench/out/gpu.md

Per model, in one process, rotated blocks with a control copy of the baseline (optimizer.measure):
- the baseline: onnxruntime's CPU provider at fp32 under its defaults;
- `optimize`'s lossless graph (O2) on the CPU, on CUDA, and on TensorRT;
- fp16 variants: the graph converted by the lossy stage's fp16 converter on CUDA, and TensorRT with
  `trt_fp16_enable`; each with its error against the fp32 CPU baseline.
Providers the installed onnxruntime lacks are listed as not run, never timed on the CPU under their name
(sessions are created without onnxruntime's silent fallback and checked).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from timing import generate_inputs  # noqa: E402

from optimizer import decision, optimize  # noqa: E402
from optimizer.measure import machine_info, time_blocks  # noqa: E402
from optimizer.runtime import RuntimeConfig  # noqa: E402

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def _candidates(lossless: Path, fp16: Path | None, available: list[str]) -> dict[str, tuple[Path, RuntimeConfig] | str]:
    """Name -> (model, settings), or the reason it is not run."""
    out: dict[str, tuple[Path, RuntimeConfig] | str] = {"O2 CPU fp32": (lossless, RuntimeConfig())}
    for provider, name, options in ((CUDA, "O2 CUDA fp32", {}), (TRT, "O2 TensorRT fp32", {}), (TRT, "O2 TensorRT fp16", {"trt_fp16_enable": "True"})):
        if provider in available:
            out[name] = (lossless, RuntimeConfig(providers=(provider, CPU), provider_options=(tuple(options.items()), ())))
        else:
            out[name] = f"not run: {provider} is not in this onnxruntime ({', '.join(available)})"
    if fp16 is not None and CUDA in available:
        out["O2 fp16 graph on CUDA"] = (fp16, RuntimeConfig(providers=(CUDA, CPU), provider_options=((), ())))
    else:
        out["O2 fp16 graph on CUDA"] = "not run: needs CUDAExecutionProvider"
    return out


def _error(reference: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    worst = 0.0
    for ref, out in zip(reference, outputs):
        ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
        scale = float(np.max(np.abs(ref))) or 1.0
        worst = max(worst, float(np.max(np.abs(ref - out))) / scale)
    return worst


def bench_model(model: Path, work: Path, rounds: int, budget: float) -> dict:
    import onnxruntime as ort

    from optimizer.lossy.quantization import convert_fp16

    available = ort.get_available_providers()
    lossless = work / f"{model.stem}.O2.onnx"
    optimize(model, lossless, level="O2", force=True)
    fp16 = work / f"{model.stem}.O2.fp16.onnx"
    try:
        convert_fp16(lossless, fp16)
    except Exception as error:  # noqa: BLE001 - reported, the rest still runs
        print(f"{model.name}: fp16 conversion failed: {error}", file=sys.stderr)
        fp16 = None
    baseline = ort.InferenceSession(str(model), providers=[CPU])
    control = ort.InferenceSession(str(model), providers=[CPU])
    feeds = generate_inputs(baseline)
    reference = baseline.run(None, feeds)
    runners = {"baseline": lambda: baseline.run(None, feeds), "control": lambda: control.run(None, feeds)}
    rows: dict[str, dict] = {}
    for name, spec in _candidates(lossless, fp16, available).items():
        if isinstance(spec, str):
            rows[name] = {"status": spec}
            continue
        path, config = spec
        try:
            session = config.create_session(path)  # refuses a silent fallback to the CPU
            rows[name] = {"error_vs_cpu_fp32": _error(reference, session.run(None, feeds)), "providers": session.get_providers()}
            runners[name] = lambda s=session: s.run(None, feeds)
        except Exception as error:  # noqa: BLE001
            rows[name] = {"status": f"failed: {error}".splitlines()[0]}
    times = time_blocks(runners, rounds=rounds, budget_s=budget)
    margin = decision.noise_margin(times.minimums("control"), times.minimums("baseline"))
    for name in runners:
        if name in ("baseline", "control"):
            continue
        verdict = decision.compare(name, times.minimums(name), "baseline", times.minimums("baseline"), margin=margin)
        rows[name].update(min_ms=times.stats(name).min_ms, speedup=verdict.speedup, verdict=verdict.outcome, interval=[verdict.low, verdict.high])
    return {"model": model.stem, "baseline_min_ms": times.stats("baseline").min_ms, "margin": margin, "rows": rows}


def _markdown(results: list[dict]) -> str:
    lines = ["| model | candidate | min ms | speedup vs CPU fp32 | verdict | max rel error | status |", "|---|---|---|---|---|---|---|"]
    for result in results:
        lines.append(f"| {result['model']} | CPU fp32 defaults (baseline) | {result['baseline_min_ms']:.2f} | 1.00x | | | noise margin {result['margin']:.1%} |")
        for name, row in result["rows"].items():
            if "min_ms" in row:
                lines.append(f"| {result['model']} | {name} | {row['min_ms']:.2f} | {row['speedup']:.2f}x | {row['verdict']} | {row['error_vs_cpu_fp32']:.2e} | ran on {row['providers'][0]} |")
            else:
                lines.append(f"| {result['model']} | {name} | | | | | {row.get('status')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--budget", type=float, default=120.0, help="timing seconds per model")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as scratch:
        results = [bench_model(model, Path(scratch), args.rounds, args.budget) for model in args.models]
    text = _markdown(results) + f"\nMachine: {json.dumps(machine_info())}\n"
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    if args.markdown:
        args.markdown.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
