"""Where `optimizer.api.optimize` spends its time and memory on one model.

    .venv/bin/python bench/profile_optimize.py bench/data/suite/bert_base.onnx [--top 25] [--no-cprofile]

Prints, per stage the API reports through `on_stage`, the wall time and the process's RSS and peak RSS
(VmRSS / VmHWM from /proc/self/status) when the stage began, then the top functions by cumulative
time under cProfile. cProfile slows Python-heavy code; compare stage times with `--no-cprofile`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--level", default="O2")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-cprofile", action="store_true")
    parser.add_argument("--no-verify", action="store_true")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    from optimizer import api

    marks = [("import", time.perf_counter() - t0, _status_kib("VmRSS"), _status_kib("VmHWM"))]
    start = time.perf_counter()

    def on_stage(text: str) -> None:
        marks.append((text, time.perf_counter() - start, _status_kib("VmRSS"), _status_kib("VmHWM")))

    profiler = None if args.no_cprofile else cProfile.Profile()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out.onnx"
        if profiler:
            profiler.enable()
        result = api.optimize(args.model, out, level=args.level, verify=not args.no_verify, on_stage=on_stage, force=True)
        if profiler:
            profiler.disable()
        marks.append(("done", time.perf_counter() - start, _status_kib("VmRSS"), _status_kib("VmHWM")))
    size = Path(args.model).stat().st_size
    print(f"model {args.model}: {size / 2**20:.0f} MiB; stage seconds {result.seconds}")
    print(f"{'stage (begins)':40s} {'t s':>8s} {'RSS MiB':>9s} {'peak MiB':>9s}")
    for name, t, rss, hwm in marks:
        print(f"{name:40s} {t:8.2f} {rss / 1024:9.0f} {hwm / 1024:9.0f}")
    print(f"peak / model size: {marks[-1][3] * 1024 / size:.2f}")
    if profiler:
        buffer = io.StringIO()
        stats = pstats.Stats(profiler, stream=buffer).sort_stats("cumulative")
        stats.print_stats(args.top)
        print(buffer.getvalue())
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(15)
        print(buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
