"""Benchmark `optimize` on a set of models: its time and peak memory against onnxruntime's offline
optimizer, nodes and size before/after, and the latency of the result against the original.

    python bench/run_bench.py sample_models/ bench/data/suite/ \
        --out bench/out/results.json --markdown bench/out/results.md

Per model, each step in its own fresh process (so that a peak RSS is that process's alone, read with
os.wait4, and no step inherits another's threads or memory):

1. `optimize MODEL -o OUT --force --json --level L`: wall time, peak RSS, its JSON summary;
2. onnxruntime offline optimization (ORT_ENABLE_EXTENDED, `optimized_model_filepath`): wall time,
   session-creation time, peak RSS;
3. latency (bench/timing.py): original, a control second session of the original, and the optimized
   model, all in one process under a default CPU session, timed in rotated blocks (DESIGN.md,
   "Measurement discipline"); speedup = original's minimum / variant's minimum; the control's ratio
   is the noise floor.

Wall times include interpreter start-up and imports for both tools; the "inner" times do not
(optimize's own `seconds` total; ORT's session creation).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from timing import machine_info  # noqa: E402

SCHEMA_VERSION = 1

_ORT_OFFLINE = r"""
import json, sys, time
t0 = time.perf_counter()
import onnxruntime as ort
t1 = time.perf_counter()
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
options.optimized_model_filepath = sys.argv[2]
t2 = time.perf_counter()
ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
t3 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "session_seconds": t3 - t2}))
"""


def _run_measured(argv: list[str], timeout: float | None, cwd: Path | None = None) -> dict:
    """Run argv in a fresh child; its wall time, exit code, stdout/stderr and peak RSS (os.wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=cwd)
        deadline = None if timeout is None else start + timeout
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if deadline and time.perf_counter() > deadline:
                proc.kill()
                timed_out = True
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: keep Popen quiet
        out.seek(0)
        err.seek(0)
        return {
            "returncode": proc.returncode,
            "timed_out": timed_out,
            "wall_seconds": wall,
            "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux: kilobytes
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
        }


def _model_bytes(path: Path) -> int:
    """The model file plus any external-data files beside it that it names (best effort)."""
    total = path.stat().st_size
    for candidate in (path.with_suffix(path.suffix + ".data"), path.with_name(path.stem + ".data")):
        if candidate.is_file():
            total += candidate.stat().st_size
    return total


def _optimize_argv(args) -> list[str]:
    if args.optimize_cmd:
        return args.optimize_cmd.split()
    exe = REPO / ".venv" / "bin" / "optimize"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "optimizer.cli"]


def _ort_python(args) -> str:
    if args.python:
        return args.python
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


_COUNT_NODES = r"""
import sys, onnx
print(len(onnx.load(sys.argv[1], load_external_data=False).graph.node))
"""


def _count_nodes(path: Path, python: str) -> int | None:
    """Node count, read in a child: loading a model here would raise this process's peak RSS, which
    children started by vfork+exec inherit into their own ru_maxrss."""
    try:
        done = subprocess.run([python, "-c", _COUNT_NODES, str(path)], capture_output=True, text=True, timeout=600)
        return int(done.stdout.strip()) if done.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def _own_peak_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def bench_model(path: Path, work: Path, args, log) -> dict:
    record: dict = {"model": path.stem, "path": str(path), "model_bytes": _model_bytes(path)}
    out_path = work / f"{path.stem}.opt.onnx"
    ort_path = work / f"{path.stem}.ort.onnx"

    # 1. optimize, in its own process
    argv = [*_optimize_argv(args), str(path), "-o", str(out_path), "--force", "--json", "--level", args.level, *args.optimize_arg]
    best = None
    for _ in range(args.tool_repeats):
        run = _run_measured(argv, timeout=args.tool_timeout, cwd=REPO)
        if best is None or (run["returncode"] == 0 and run["wall_seconds"] < best["wall_seconds"]):
            best = run
        if run["returncode"] != 0:
            break
    opt: dict = {
        "argv": argv,
        "returncode": best["returncode"],
        "timed_out": best["timed_out"],
        "wall_seconds": best["wall_seconds"],
        "peak_rss_bytes": best["peak_rss_bytes"],
    }
    summary = None
    if best["returncode"] == 0:
        try:
            summary = json.loads(best["stdout"])
        except json.JSONDecodeError as error:
            opt["error"] = f"--json output did not parse: {error}"
    else:
        opt["error"] = _last_line(best["stderr"]) or f"exit code {best['returncode']}"
        opt["stderr_tail"] = best["stderr"][-4000:]
    if summary:
        opt["inner_seconds"] = summary.get("seconds", {})
        opt["inner_total_seconds"] = float(sum(v for v in summary.get("seconds", {}).values() if isinstance(v, (int, float))))
        opt["passes"] = [
            {k: p.get(k) for k in ("name", "runs", "changes", "seconds", "dropped") if k in p} for p in summary.get("passes", [])
        ]
        opt["dropped_passes"] = summary.get("dropped_passes", [])
        opt["warnings"] = summary.get("warnings", [])
        opt["verification"] = summary.get("verification", {})
        record["nodes_before"] = summary.get("input", {}).get("nodes")
        record["nodes_after"] = summary.get("output", {}).get("nodes")
        record["file_bytes_before"] = summary.get("input", {}).get("file_bytes")
        record["file_bytes_after"] = summary.get("output", {}).get("file_bytes")
        record["op_counts_before"] = summary.get("input", {}).get("op_counts")
        record["op_counts_after"] = summary.get("output", {}).get("op_counts")
        record["verification_status"] = (summary.get("verification") or {}).get("status")
    else:
        record["nodes_before"] = _count_nodes(path, _ort_python(args))
    record["optimize"] = opt
    log(
        f"  optimize: rc={opt['returncode']} wall {opt['wall_seconds']:.2f}s peak {opt['peak_rss_bytes'] / 2**20:.0f} MiB"
        + (f" nodes {record.get('nodes_before')} -> {record.get('nodes_after')} [{record.get('verification_status')}]" if summary else f"  ERROR: {opt.get('error')}")
    )

    # 2. onnxruntime offline optimization, in its own process
    if not args.no_ort_offline:
        best_ort = None
        for _ in range(args.tool_repeats):
            run = _run_measured([_ort_python(args), "-c", _ORT_OFFLINE, str(path), str(ort_path)], timeout=args.tool_timeout)
            if best_ort is None or (run["returncode"] == 0 and run["wall_seconds"] < best_ort["wall_seconds"]):
                best_ort = run
            if run["returncode"] != 0:
                break
        ort_rec = {
            "returncode": best_ort["returncode"],
            "wall_seconds": best_ort["wall_seconds"],
            "peak_rss_bytes": best_ort["peak_rss_bytes"],
        }
        if best_ort["returncode"] == 0:
            try:
                ort_rec.update(json.loads(_last_line(best_ort["stdout"])))
            except json.JSONDecodeError:
                pass
            if ort_path.exists():
                ort_rec["file_bytes"] = _model_bytes(ort_path)
                ort_rec["nodes"] = _count_nodes(ort_path, _ort_python(args))
        else:
            ort_rec["error"] = _last_line(best_ort["stderr"])
        record["ort_offline"] = ort_rec
        log(f"  ORT offline: rc={ort_rec['returncode']} wall {ort_rec['wall_seconds']:.2f}s session {ort_rec.get('session_seconds', float('nan')):.2f}s peak {ort_rec['peak_rss_bytes'] / 2**20:.0f} MiB")

    # 3. latency: original, control, optimized (and ORT's offline output on request), one process
    if not args.no_latency:
        candidates = [f"original={path}"]
        if out_path.exists() and best["returncode"] == 0:
            candidates.append(f"optimized={out_path}")
        if args.include_ort_variant and ort_path.exists():
            candidates.append(f"ort_offline={ort_path}")
        argv = [_ort_python(args), str(HERE / "timing.py"), "--control", "--rounds", str(args.rounds), *(f"--candidate={c}" for c in candidates)]
        if args.block_runs:
            argv += ["--block-runs", str(args.block_runs)]
        if args.latency_budget:
            argv += ["--budget", str(args.latency_budget)]
        for item in args.input_shape:
            argv += ["--input-shape", item]
        if args.intra_op_threads is not None:
            argv += ["--intra-op-threads", str(args.intra_op_threads)]
        run = _run_measured(argv, timeout=args.latency_timeout)
        latency = None
        try:
            latency = json.loads(run["stdout"])
        except json.JSONDecodeError:
            record["latency_error"] = _last_line(run["stderr"]) or f"exit code {run['returncode']}"
        if latency:
            record["latency"] = {
                "session_options": latency.get("session_options"),
                "plan": latency.get("plan"),
                "inputs": latency.get("inputs"),
                "candidates": latency.get("candidates"),
                "errors": latency.get("errors"),
            }
            if latency.get("errors"):
                record["latency_error"] = "; ".join(f"{k}: {v}" for k, v in latency["errors"].items())
            cands = latency.get("candidates", {})
            parts = []
            for name in ("control", "optimized", "ort_offline"):
                if name in cands and "speedup_min" in cands[name]:
                    parts.append(f"{name} {cands[name]['speedup_min']:.3f}")
            base = cands.get("original", {})
            if "min_ms" in base:
                log(f"  latency: original min {base['min_ms']:.2f} ms median {base['median_ms']:.2f} ms; speedup " + ", ".join(parts))
        if record.get("latency_error"):
            log(f"  latency ERROR: {record['latency_error']}")

    # A child's ru_maxrss can never be below this process's peak (vfork+exec carries it over): it is
    # the floor under every peak above, and should stay small.
    record["bench_process_peak_rss_bytes"] = _own_peak_bytes()
    _derive(record)
    if not args.keep_outputs:
        for leftover in work.glob(f"{path.stem}.*"):
            if leftover.is_file():
                leftover.unlink()
    return record


def _derive(record: dict) -> None:
    """Ratios the targets are stated in."""
    opt = record.get("optimize", {})
    ort_rec = record.get("ort_offline", {})
    size = record.get("file_bytes_before") or record.get("model_bytes")
    derived = {}
    if opt.get("returncode") == 0 and ort_rec.get("returncode") == 0:
        derived["time_ratio_wall"] = opt["wall_seconds"] / ort_rec["wall_seconds"]
        if ort_rec.get("session_seconds") and opt.get("inner_total_seconds"):
            derived["time_ratio_inner"] = opt["inner_total_seconds"] / ort_rec["session_seconds"]
    if size and opt.get("peak_rss_bytes"):
        derived["peak_over_size"] = opt["peak_rss_bytes"] / size
    if size and ort_rec.get("peak_rss_bytes"):
        derived["ort_peak_over_size"] = ort_rec["peak_rss_bytes"] / size
    cands = (record.get("latency") or {}).get("candidates") or {}
    for name in ("optimized", "control", "ort_offline"):
        if name in cands and "speedup_min" in cands[name]:
            derived[f"speedup_{name}"] = cands[name]["speedup_min"]
            derived[f"speedup_{name}_median"] = cands[name]["speedup_median"]
    if "control" in cands and "speedup_min" in cands["control"]:
        derived["noise"] = abs(cands["control"]["speedup_min"] - 1.0)
    record["derived"] = derived


def _fmt(value, spec: str = ".2f", missing: str = "-") -> str:
    if value is None:
        return missing
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _mib(value) -> str:
    if value is None:
        return "-"
    return f"{value / 2**20:.0f}" if value >= 10 * 2**20 else f"{value / 2**20:.2f}"


COLUMNS = [
    "model", "MiB", "nodes", "verify", "opt s", "ORT s", "time x", "opt inner s", "ORT sess s", "inner x", "peak MiB", "peak/size", "ORT peak/size",
    "orig min ms", "orig med ms", "speedup", "(median)", "control", "ORT-variant",
]


def table_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for r in records:
        d = r.get("derived", {})
        opt = r.get("optimize", {})
        ort_rec = r.get("ort_offline", {})
        base = ((r.get("latency") or {}).get("candidates") or {}).get("original", {})
        nodes = f"{_fmt(r.get('nodes_before'), 'd')} -> {_fmt(r.get('nodes_after'), 'd')}"
        status = r.get("verification_status") or ("FAILED" if opt.get("returncode") not in (0, None) else "-")
        rows.append([
            r["model"],
            _mib(r.get("file_bytes_before") or r.get("model_bytes")),
            nodes,
            status,
            _fmt(opt.get("wall_seconds")),
            _fmt(ort_rec.get("wall_seconds")),
            _fmt(d.get("time_ratio_wall")),
            _fmt(opt.get("inner_total_seconds")),
            _fmt(ort_rec.get("session_seconds")),
            _fmt(d.get("time_ratio_inner")),
            _mib(opt.get("peak_rss_bytes")),
            _fmt(d.get("peak_over_size")),
            _fmt(d.get("ort_peak_over_size")),
            _fmt(base.get("min_ms"), ".3f"),
            _fmt(base.get("median_ms"), ".3f"),
            _fmt(d.get("speedup_optimized"), ".3f"),
            _fmt(d.get("speedup_optimized_median"), ".3f"),
            _fmt(d.get("speedup_control"), ".3f"),
            _fmt(d.get("speedup_ort_offline"), ".3f"),
        ])
    return rows


def render_text(records: list[dict]) -> str:
    rows = [COLUMNS, *table_rows(records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    m = report["machine"]
    out = [
        "# optimize benchmark",
        "",
        f"{report['created']}; {m.get('cpu_model')}, {m.get('cpu_count')} cores ({', '.join(m.get('cpu_isa') or [])}); "
        f"onnxruntime {m.get('onnxruntime')}; level {report['settings']['level']}; "
        f"{report['settings']['rounds']} rounds of rotated blocks per model; latency sessions: "
        + ("onnxruntime's default" if report["settings"].get("intra_op_threads") is None else f"intra_op_num_threads={report['settings']['intra_op_threads']}")
        + ".",
        "",
        "Speedup = original's minimum / variant's minimum (CPU sessions as stated above); control = a second session of the "
        "original: its distance from 1.00 is the noise floor. Times are wall seconds of a fresh process "
        "(`time x` = optimize / ORT offline, ORT_ENABLE_EXTENDED); peak = that process's max RSS.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLUMNS))) + "|",
    ]
    for row in table_rows(report["models"]):
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    errors = [(r["model"], r["optimize"].get("error")) for r in report["models"] if r.get("optimize", {}).get("error")]
    errors += [(r["model"], "latency: " + r["latency_error"]) for r in report["models"] if r.get("latency_error")]
    if errors:
        out += ["", "## Errors", ""]
        out += [f"- **{name}**: `{message}`" for name, message in errors]
    dropped = [(r["model"], d) for r in report["models"] for d in r.get("optimize", {}).get("dropped_passes", [])]
    if dropped:
        out += ["", "## Dropped passes", ""]
        out += [f"- **{name}**: {d.get('name')}: {d.get('reason')}" for name, d in dropped]
    out += ["", "Figures hold for this machine only; rerun on the target machine before relying on them.", ""]
    return "\n".join(out)


def _collect(items: list[str]) -> list[Path]:
    models: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            models += sorted(p for p in path.glob("*.onnx") if not p.name.endswith((".opt.onnx", ".ort.onnx")))
        elif path.is_file():
            models.append(path)
        else:
            raise SystemExit(f"error: {item}: no such file or directory")
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help=".onnx files or directories of them")
    parser.add_argument("--out", default=str(HERE / "out" / "results.json"))
    parser.add_argument("--markdown", default=None, help="also write a Markdown table here")
    parser.add_argument("--level", default="O2")
    parser.add_argument("--rounds", type=int, default=20, help="rotated rounds of latency blocks per model")
    parser.add_argument("--block-runs", type=int, default=None, help="timed runs per block [default: ~0.25 s worth]")
    parser.add_argument("--latency-budget", type=float, default=None, help="seconds of timing per model before stopping early (>= 3 rounds)")
    parser.add_argument("--tool-repeats", type=int, default=1, help="run optimize and ORT offline this many times each; keep the fastest")
    parser.add_argument("--tool-timeout", type=float, default=1800)
    parser.add_argument("--latency-timeout", type=float, default=1800)
    parser.add_argument("--intra-op-threads", type=int, default=None, help="latency sessions' intra_op_num_threads [default: onnxruntime's default session]")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...")
    parser.add_argument("--optimize-cmd", default=None, help="command for optimize [default: .venv/bin/optimize]")
    parser.add_argument("--optimize-arg", action="append", default=[], help="extra argument passed to optimize (repeatable)")
    parser.add_argument("--python", default=None, help="python with onnxruntime for the ORT and latency steps [default: .venv/bin/python]")
    parser.add_argument("--include-ort-variant", action="store_true", help="also time ORT's offline-optimized model")
    parser.add_argument("--no-ort-offline", action="store_true")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--keep-outputs", action="store_true", help="keep optimized models in the work dir")
    parser.add_argument("--work-dir", default=None, help="where outputs go [default: a temporary directory]")
    args = parser.parse_args(argv)

    models = _collect(args.models)
    if not models:
        print("error: no .onnx models found", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {k: v for k, v in vars(args).items() if k != "models"},
        "models": [],
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="optimize-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for index, path in enumerate(models, 1):
            log(f"[{index}/{len(models)}] {path}")
            report["models"].append(bench_model(path, work, args, log))
            out_path.write_text(json.dumps(report, indent=1, default=str))  # partial results survive a crash
    finally:
        if not args.work_dir and not args.keep_outputs:
            shutil.rmtree(work, ignore_errors=True)
    out_path.write_text(json.dumps(report, indent=1, default=str))
    print(render_text(report["models"]))
    m = report["machine"]
    print(f"\n{m['cpu_model']}, {m['cpu_count']} cores; onnxruntime {m['onnxruntime']}. JSON: {out_path}")
    if args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(render_markdown(report))
        print(f"Markdown: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
