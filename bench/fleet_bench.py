"""Benchmark `optimize fleet`: wall time of a folder of models, one by one versus the local engine and Ray.

    .venv/bin/python bench/fleet_bench.py [--copies 4] [--workers N] [--no-ray] [--markdown bench/out/fleet.md]

The folder is `--copies` copies of each sample model (6 samples x 4 = 24 models by default), all
`--no-tune` (optimize + verify: the CPU part of a fleet; tuning is timed alone by design, so it does
not parallelize on one machine). Four ways, each into a fresh output folder:

1. `optimize MODEL --no-tune` as a subprocess per model, one after another (what a CI shell loop does);
2. `optimizer.api.optimize` per model in one fresh process, one after another (one interpreter start);
3. `optimize fleet --engine local` with N workers (default: the usable cores);
4. `optimize fleet --engine ray --address local` (a private Ray instance with N CPUs, started and
   stopped inside the timing: what a one-machine user pays).

Every row includes its interpreter start and imports. Every figure is wall time on this (shared)
machine, once: read the ratios, not the seconds, and rerun when the host is busy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_models").glob("*.onnx"))


def build_folder(folder: Path, copies: int) -> list[Path]:
    """`copies` copies of every sample, in subfolders copy-0 ... copy-(k-1)."""
    paths = []
    for index in range(copies):
        target = folder / f"copy-{index}"
        target.mkdir(parents=True)
        paths += [Path(shutil.copy(sample, target / sample.name)) for sample in SAMPLES]
    return paths


def one_by_one_cli(models: list[Path], out: Path) -> float:
    out.mkdir()
    start = time.perf_counter()
    for number, model in enumerate(models):
        output = out / f"{number}-{model.name}"
        subprocess.run([sys.executable, "-m", "optimizer.cli", str(model), "-o", str(output), "--no-tune", "-q"], check=True)
    return time.perf_counter() - start


LOOP = """
import sys
from pathlib import Path
from optimizer import api
out = Path(sys.argv[1])
for number, model in enumerate(sys.argv[2:]):
    api.optimize(model, out / f"{number}-{Path(model).name}", tune=False)
"""


def one_by_one_api(models: list[Path], out: Path) -> float:
    """One fresh interpreter (its start and imports included, as in every other row) looping over the models."""
    out.mkdir()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", LOOP, str(out), *map(str, models)], check=True)
    return time.perf_counter() - start


def fleet(folder: Path, out: Path, engine: str, workers: int) -> float:
    command = [sys.executable, "-m", "optimizer.fleet", str(folder), "-o", str(out), "--no-tune", "-q", "--engine", engine]
    command += ["--workers", str(workers)] + (["--address", "local"] if engine == "ray" else [])
    environment = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    completed = subprocess.run(command, env=environment)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{engine} fleet exited {completed.returncode}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--skip-cli", action="store_true", help="Leave out the subprocess-per-model loop (the slowest).")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as scratch:
        folder = Path(scratch) / "models"
        models = build_folder(folder, args.copies)
        rows = []
        if not args.skip_cli:
            rows.append(("one by one, `optimize` CLI per model", one_by_one_cli(models, Path(scratch) / "cli")))
        rows.append(("one by one, api.optimize in one process", one_by_one_api(models, Path(scratch) / "api")))
        rows.append((f"fleet --engine local --workers {args.workers}", fleet(folder, Path(scratch) / "local", "local", args.workers)))
        if not args.no_ray:
            rows.append((f"fleet --engine ray --address local ({args.workers} CPUs, start included)", fleet(folder, Path(scratch) / "ray", "ray", args.workers)))
    baseline = rows[0][1]
    lines = [f"{len(models)} models ({args.copies} copies of {len(SAMPLES)} samples), --no-tune, {os.cpu_count()} CPUs visible, {args.workers} workers", "",
             "| way | wall s | per model s | vs first row |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {seconds:.1f} | {seconds / len(models):.2f} | {baseline / seconds:.2f}x |" for name, seconds in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
