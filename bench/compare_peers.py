"""Compare `optimize` with its peers, model by model: onnxsim, onnxslim, onnxruntime's offline
optimizer, onnxruntime.transformers' `optimize_model`, and `optimize --level O2/O3`.

    .venv/bin/python bench/compare_peers.py bench/data/suite/ --models distilbert,resnet50 \
        --rounds 10 --out bench/out/peers.json --markdown bench/out/peers.md

Per model and variant: did the tool succeed (else its one-line error), its wall time and peak RSS
(each tool in its own fresh process, peak read with os.wait4), node count, op types it introduced
(contrib ops such as com.microsoft::Attention included), the largest output difference from the
original on the same random inputs, and latency. All variants of one model that load are timed in
ONE process by bench/timing.py (rotated blocks, a control second session of the original; DESIGN.md,
"Measurement discipline"), with onnxruntime sessions of --intra-op-threads threads (default 1).

Interpreters: onnxsim and onnxslim run in the bench venv (`.venv-bench`, see
bench/requirements-peers.txt), never the project's; everything that uses onnxruntime (ORT offline,
onnxruntime.transformers, the latency/error check) runs in the project's `.venv`, so that every
figure is onnxruntime 1.31.x; `optimize` is the project's `.venv/bin/optimize`.

speedup = original's minimum / variant's minimum (> 1 is faster). The control's ratio is the noise
floor: a variant closer to 1.00 than the control is a tie.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from run_bench import _last_line, _model_bytes, _own_peak_bytes, _run_measured  # noqa: E402

SCHEMA_VERSION = 1

PEERS = ("onnxsim", "onnxslim", "ort_offline", "ort_transformers")
LABELS = {
    "onnxsim": "onnxsim",
    "onnxslim": "onnxslim",
    "ort_offline": "ORT offline",
    "ort_transformers": "ORT transformers",
    "control": "control",
}
ORT_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}

# onnxruntime.transformers model_type, num_heads, hidden_size per model name (the file's stem);
# models not listed are "n/a" (CNNs have nothing for it to fuse). --transformers-type overrides.
TRANSFORMERS_TYPES = {
    "bert_base": ("bert", 12, 768),
    "distilbert": ("bert", 12, 768),
    "gpt2": ("gpt2", 12, 768),
    "vit_base": ("vit", 12, 768),
    "transformer_block": ("bert", 4, 64),  # sample_models: 4 heads, hidden 64
}

# A relative output difference above this is flagged in the Markdown (onnxslim's own check uses 1e-3).
FLAG_REL_ERROR = 1e-3

# ---- runner snippets: each runs in a fresh child and prints one JSON line last on stdout ----------

_SAVE = r"""
def _save(model, path):
    import onnx
    if model.ByteSize() > 2**31 - 2**26:  # protobuf's 2 GB limit: weights to a side file
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=path.split("/")[-1] + ".data")
    else:
        onnx.save(model, path)
"""

_ONNXSIM = _SAVE + r"""
import json, sys, time
t0 = time.perf_counter()
import onnx, onnxsim
t1 = time.perf_counter()
model, check_ok = onnxsim.simplify(sys.argv[1])
t2 = time.perf_counter()
_save(model, sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "inner_seconds": t2 - t1, "save_seconds": t3 - t2, "check_ok": bool(check_ok)}))
"""

_ONNXSLIM = _SAVE + r"""
import json, sys, time
t0 = time.perf_counter()
import onnx, onnxslim
t1 = time.perf_counter()
model = onnxslim.slim(sys.argv[1])
t2 = time.perf_counter()
if model is None:
    raise SystemExit("onnxslim returned no model")
_save(model, sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "inner_seconds": t2 - t1, "save_seconds": t3 - t2}))
"""

_ORT_OFFLINE = r"""
import json, sys, time
t0 = time.perf_counter()
import onnxruntime as ort
t1 = time.perf_counter()
options = ort.SessionOptions()
options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, sys.argv[3])
options.optimized_model_filepath = sys.argv[2]
t2 = time.perf_counter()
ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
t3 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "inner_seconds": t3 - t2}))
"""

_ORT_TRANSFORMERS = _SAVE + r"""
import json, sys, time
t0 = time.perf_counter()
from onnxruntime.transformers.optimizer import optimize_model
t1 = time.perf_counter()
src, dst, model_type, heads, hidden, level = sys.argv[1:7]
opt = optimize_model(src, model_type=model_type, num_heads=int(heads), hidden_size=int(hidden), opt_level=int(level), use_gpu=False)
t2 = time.perf_counter()
stats = {k: v for k, v in (opt.get_fused_operator_statistics() or {}).items() if v}
_save(opt.model, dst)
t3 = time.perf_counter()
print(json.dumps({"import_seconds": t1 - t0, "inner_seconds": t2 - t1, "save_seconds": t3 - t2, "fused": stats}))
"""

_VERSIONS = r"""
import json, importlib
out = {}
for name in ("onnxsim", "onnxslim", "onnx", "onnxruntime"):
    try:
        out[name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as error:
        out[name] = None
        out[name + "_error"] = f"{type(error).__name__}: {error}".splitlines()[0]
print(json.dumps(out))
"""

_INSPECT = r"""
import json, os, sys, collections, onnx
out = {}
for path in sys.argv[1:]:
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:
        out[path] = {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
        continue
    ops = collections.Counter((n.domain or "ai.onnx") + "::" + n.op_type for n in model.graph.node)
    out[path] = {"nodes": len(model.graph.node), "op_counts": dict(sorted(ops.items())), "initializers": len(model.graph.initializer)}
    del model
print(json.dumps(out))
"""

_MACHINE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from timing import machine_info
print(json.dumps(machine_info()))
"""


def _python(venv: str) -> str:
    path = REPO / venv / "bin" / "python"
    return str(path) if path.exists() else sys.executable


def _json_child(argv: list[str], timeout: float = 600) -> dict | None:
    """Run a small child that prints one JSON line last; None if it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        return json.loads(_last_line(done.stdout))
    except json.JSONDecodeError:
        return None


def _total_bytes(path: Path) -> int:
    """The model file plus its external-data side files (ours write OUT.onnx.data, the snippets OUT.onnx.data)."""
    return _model_bytes(path) if path.exists() else 0


def _error_line(run: dict) -> str:
    if run.get("timed_out"):
        return f"timed out after {run['wall_seconds']:.0f} s"
    line = _last_line(run.get("stderr", ""))
    return line[:400] if line else f"exit code {run['returncode']}"


# ---- variants ------------------------------------------------------------------------------------


def _variant_plan(path: Path, args, versions: dict) -> list[dict]:
    """Which variants to run on this model, each with its argv, or a status why not."""
    src, stem, work = str(path), path.stem, Path(args.work)
    bench_py, proj_py = args.bench_python, args.python
    plan: list[dict] = []
    wanted = args.variant_list

    def add(name: str, **fields) -> None:
        if name in wanted:
            plan.append({"name": name, **fields})

    for peer, snippet in (("onnxsim", _ONNXSIM), ("onnxslim", _ONNXSLIM)):
        out = work / f"{stem}.{peer}.onnx"
        if versions.get(peer) is None:
            add(peer, status="not installed", error=versions.get(peer + "_error"), interpreter=bench_py)
        else:
            add(peer, argv=[bench_py, "-c", snippet, src, str(out)], output=str(out), interpreter=bench_py, version=versions.get(peer))
    out = work / f"{stem}.ort_offline.onnx"
    level = ORT_LEVELS[args.ort_level]
    add("ort_offline", argv=[proj_py, "-c", _ORT_OFFLINE, src, str(out), level], output=str(out), interpreter=proj_py, settings={"graph_optimization_level": level})
    spec = args.transformers_types.get(stem)
    if spec is None:
        add("ort_transformers", status="n/a", error="not a transformer model this script knows (see --transformers-type)")
    else:
        model_type, heads, hidden = spec
        out = work / f"{stem}.ort_transformers.onnx"
        add(
            "ort_transformers",
            argv=[proj_py, "-c", _ORT_TRANSFORMERS, src, str(out), model_type, str(heads), str(hidden), str(args.transformers_opt_level)],
            output=str(out),
            interpreter=proj_py,
            settings={"model_type": model_type, "num_heads": heads, "hidden_size": hidden, "opt_level": args.transformers_opt_level, "use_gpu": False},
        )
    for level_name in args.level_list:
        name = f"optimize_{level_name}"
        out = work / f"{stem}.{name}.onnx"
        argv = [*args.optimize_argv, src, "-o", str(out), "--force", "--json", "--level", level_name, *args.optimize_arg]
        plan.append({"name": name, "argv": argv, "output": str(out), "settings": {"level": level_name, "extra_args": list(args.optimize_arg)}})
    return plan


def _run_variant(item: dict, args, log) -> dict:
    rec = {k: v for k, v in item.items() if k not in ("argv",)}
    if "argv" not in item:
        log(f"  {item['name']}: {item['status']}")
        return rec
    argv = item["argv"]
    rec["command"] = [a if len(a) < 200 else "<snippet>" for a in argv]
    run = _run_measured(argv, timeout=args.tool_timeout, cwd=REPO)
    rec["returncode"] = run["returncode"]
    rec["timed_out"] = run["timed_out"]
    rec["wall_seconds"] = run["wall_seconds"]
    rec["peak_rss_bytes"] = run["peak_rss_bytes"]
    out = Path(item["output"])
    summary = None
    if run["returncode"] == 0:
        try:
            summary = json.loads(run["stdout"] if item["name"].startswith("optimize_") else _last_line(run["stdout"]))
        except json.JSONDecodeError as error:
            rec["parse_error"] = str(error)
    if run["returncode"] != 0:
        rec["status"] = "failed"
        rec["error"] = _error_line(run)
        rec["stderr_tail"] = run["stderr"][-3000:]
    elif not out.exists():
        rec["status"] = "failed"
        rec["error"] = "exited 0 but wrote no model"
    else:
        rec["status"] = "ok"
        rec["file_bytes"] = _total_bytes(out)
    if summary and item["name"].startswith("optimize_"):
        seconds = summary.get("seconds", {})
        rec["inner_seconds"] = float(sum(v for v in seconds.values() if isinstance(v, (int, float))))
        rec["verification"] = (summary.get("verification") or {}).get("status")
        rec["dropped_passes"] = summary.get("dropped_passes", [])
        rec["warnings"] = summary.get("warnings", [])
        rec["pass_changes"] = {p.get("name"): p.get("changes") for p in summary.get("passes", []) if p.get("changes")}
    elif summary:
        rec.update({k: v for k, v in summary.items() if k not in rec})
    extra = f" [{rec['verification']}]" if rec.get("verification") else ""
    log(
        f"  {item['name']}: {rec['status']} in {rec['wall_seconds']:.2f}s, peak {rec['peak_rss_bytes'] / 2**20:.0f} MiB{extra}"
        + (f"  ERROR: {rec['error']}" if rec.get("error") else "")
    )
    return rec


def bench_model(path: Path, args, versions: dict, log) -> dict:
    record: dict = {"model": path.stem, "path": str(path), "file_bytes": _model_bytes(path), "variants": {}}
    plan = _variant_plan(path, args, versions)
    for item in plan:
        record["variants"][item["name"]] = _run_variant(item, args, log)
    ok = {name: rec for name, rec in record["variants"].items() if rec.get("status") == "ok"}

    # structure: nodes and op types, read in a child (this process stays small: see run_bench.py)
    paths = [str(path), *(rec["output"] for rec in ok.values())]
    info = _json_child([args.python, "-c", _INSPECT, *paths]) or {}
    base = info.get(str(path), {})
    record["nodes"] = base.get("nodes")
    record["op_counts"] = base.get("op_counts")
    base_ops = set((base.get("op_counts") or {}).keys())
    for rec in ok.values():
        got = info.get(rec["output"], {})
        rec["nodes"] = got.get("nodes")
        rec["op_counts"] = got.get("op_counts")
        ops = set((got.get("op_counts") or {}).keys())
        rec["ops_introduced"] = sorted(ops - base_ops)
        rec["ops_removed"] = sorted(base_ops - ops)
        rec["contrib_ops"] = sorted(op for op in ops if not op.startswith(("ai.onnx::", "ai.onnx.ml::")))

    # outputs and latency: the original, a control copy and every variant that was written, one process
    candidates = [f"original={path}", *(f"{name}={rec['output']}" for name, rec in ok.items())]
    argv = [args.python, str(HERE / "timing.py"), "--control", "--rounds", str(args.rounds), "--seed", str(args.seed)]
    argv += [f"--candidate={c}" for c in candidates]
    if args.intra_op_threads is not None:
        argv += ["--intra-op-threads", str(args.intra_op_threads)]
    if args.latency_budget:
        argv += ["--budget", str(args.latency_budget)]
    if args.block_runs:
        argv += ["--block-runs", str(args.block_runs)]
    for item in args.input_shape:
        argv += ["--input-shape", item]
    run = _run_measured(argv, timeout=args.latency_timeout)
    latency = None
    try:
        latency = json.loads(run["stdout"])
    except json.JSONDecodeError:
        record["latency_error"] = _error_line(run)
    if latency:
        cands = latency.get("candidates", {})
        errors = latency.get("errors", {})
        record["latency"] = {
            "plan": latency.get("plan"),
            "session_options": latency.get("session_options"),
            "inputs": latency.get("inputs"),
            "wall_seconds": run["wall_seconds"],
            "peak_rss_bytes": run["peak_rss_bytes"],
        }
        record["original"] = _latency_fields(cands.get("original", {}))
        record["control"] = _latency_fields(cands.get("control", {}))
        if "original" in errors:
            record["latency_error"] = "original: " + errors["original"]
        for name, rec in ok.items():
            if name in errors:
                rec["status"] = "load/run failed"
                rec["error"] = errors[name].splitlines()[0][:400]
                continue
            cand = cands.get(name, {})
            rec.update(_latency_fields(cand))
            err = cand.get("error_vs_original") or {}
            rec["max_abs_error"] = err.get("max_abs")
            rec["max_rel_error"] = err.get("max_rel_to_max")
            if err.get("note"):
                rec["error_note"] = err["note"]
        base_min = record["original"].get("min_ms")
        parts = [f"{n} {c['speedup_min']:.3f}" for n, c in [("control", record["control"]), *ok.items()] if c.get("speedup_min")]
        if base_min:
            log(f"  latency: original min {base_min:.3f} ms; speedup " + ", ".join(parts))
    if record.get("latency_error"):
        log(f"  latency ERROR: {record['latency_error']}")
    if not args.keep_outputs:
        for rec in ok.values():
            for leftover in Path(rec["output"]).parent.glob(Path(rec["output"]).name + "*"):
                leftover.unlink(missing_ok=True)
    return record


def _latency_fields(cand: dict) -> dict:
    keys = ("min_ms", "p10_ms", "median_ms", "p90_ms", "mean_ms", "runs", "blocks", "speedup_min", "speedup_median", "session_seconds")
    return {k: cand[k] for k in keys if k in cand}


# ---- reports -------------------------------------------------------------------------------------


def _fmt(value, spec: str = ".2f", missing: str = "-") -> str:
    if value is None:
        return missing
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def _mib(value) -> str:
    if not value:
        return "-"
    return f"{value / 2**20:.0f}" if value >= 10 * 2**20 else f"{value / 2**20:.2f}"


def _label(name: str) -> str:
    return LABELS.get(name) or name.replace("optimize_", "optimize ")


def _cell(rec: dict | None) -> str:
    """A variant's speedup, or why there is none."""
    if rec is None:
        return "-"
    status = rec.get("status")
    if status == "ok" and rec.get("speedup_min") is not None:
        text = f"{rec['speedup_min']:.2f}"
        rel = rec.get("max_rel_error")
        if rel is not None and rel > FLAG_REL_ERROR:
            text += f" (err {rel:.1%})"
        elif rec.get("error_note"):
            text += " (outputs differ)"
        return text
    return {"failed": "FAIL", "load/run failed": "FAIL (load)", "not installed": "not installed", "n/a": "n/a"}.get(status, status or "-")


def variant_names(records: list[dict]) -> list[str]:
    names: list[str] = []
    for r in records:
        for name in r.get("variants", {}):
            if name not in names:
                names.append(name)
    order = {n: i for i, n in enumerate(PEERS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def render_markdown(report: dict) -> str:
    m = report["machine"]
    s = report["settings"]
    records = report["models"]
    names = variant_names(records)
    threads = "onnxruntime's default" if s.get("intra_op_threads") is None else f"intra_op_num_threads={s['intra_op_threads']}"
    versions = report.get("peer_versions", {})
    tv = report.get("tool_versions", {})
    out = [
        "# optimize vs peers",
        "",
        f"{report['created']}; {m.get('cpu_model')}, {m.get('cpu_count')} cores ({', '.join(m.get('cpu_isa') or [])}); "
        f"load average at start {report.get('load_average_start')}; onnxruntime {m.get('onnxruntime')} (latency, ORT offline, "
        f"ORT transformers); onnxsim {versions.get('onnxsim') or 'not installed'}, onnxslim {versions.get('onnxslim') or 'not installed'} "
        f"(bench venv, onnxruntime {versions.get('onnxruntime')}); optimize {tv.get('optimize') or '?'}.",
        "",
        f"Settings: ORT offline at {ORT_LEVELS[s['ort_level']]}; ORT transformers `optimize_model(opt_level={s['transformers_opt_level']}, use_gpu=False)`"
        f"{' (python fusions only)' if s['transformers_opt_level'] == 0 else ''}; optimize levels {', '.join(s['level_list'])}"
        f"{' with ' + ' '.join(s['optimize_arg']) if s['optimize_arg'] else ''}; latency sessions: CPU, {threads}; "
        f"up to {s['rounds']} rounds of rotated blocks per model"
        + (f", budget {s['latency_budget']} s" if s.get("latency_budget") else "")
        + ".",
        "",
        "Speedup = original's minimum / variant's minimum (> 1 is faster); control = a second session of the original, "
        "its distance from 1.00 is the noise floor (a difference below it is a tie). `(err x%)` = max |difference| / "
        f"max |original| over the outputs, shown when above {FLAG_REL_ERROR:g}.",
        "",
        "| model | orig min ms | " + " | ".join(_label(n) for n in names) + " | control |",
        "|---|---:|" + "---:|" * (len(names) + 1),
    ]
    for r in records:
        row = [r["model"], _fmt((r.get("original") or {}).get("min_ms"), ".3f")]
        row += [_cell(r["variants"].get(n)) for n in names]
        row.append(_fmt((r.get("control") or {}).get("speedup_min")))
        out.append("| " + " | ".join(row) + " |")

    out += [
        "",
        "## Details",
        "",
        "Tool s = wall seconds of the tool's own fresh process (interpreter start and imports included); peak = its max RSS; "
        "max abs err = largest |variant - original| over all outputs on the same random inputs; latency in ms "
        "(min / median / p90 over all timed runs).",
        "",
        "| model | variant | status | nodes | ops introduced | tool s | peak MiB | MiB | max abs err | min | median | p90 | speedup (min) | (median) |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        orig = r.get("original") or {}
        out.append(
            f"| {r['model']} | original | - | {_fmt(r.get('nodes'), 'd')} | | | | {_mib(r.get('file_bytes'))} | | "
            f"{_fmt(orig.get('min_ms'), '.3f')} | {_fmt(orig.get('median_ms'), '.3f')} | {_fmt(orig.get('p90_ms'), '.3f')} | 1.00 | 1.00 |"
        )
        ctl = r.get("control") or {}
        if ctl:
            out.append(
                f"| {r['model']} | control | - | | | | | | | {_fmt(ctl.get('min_ms'), '.3f')} | {_fmt(ctl.get('median_ms'), '.3f')} | "
                f"{_fmt(ctl.get('p90_ms'), '.3f')} | {_fmt(ctl.get('speedup_min'), '.3f')} | {_fmt(ctl.get('speedup_median'), '.3f')} |"
            )
        for n in names:
            v = r["variants"].get(n)
            if v is None:
                continue
            status = v.get("status", "-")
            if v.get("verification"):
                status += f" ({v['verification']})"
            introduced = ", ".join(op.replace("ai.onnx::", "") for op in v.get("ops_introduced") or []) or ("-" if v.get("status") == "ok" else "")
            out.append(
                "| " + " | ".join([
                    r["model"], _label(n), status, _fmt(v.get("nodes"), "d", ""), introduced,
                    _fmt(v.get("wall_seconds"), ".2f", ""), _mib(v.get("peak_rss_bytes")) if v.get("peak_rss_bytes") else "", _mib(v.get("file_bytes")) if v.get("file_bytes") else "",
                    _fmt(v.get("max_abs_error"), ".2e", ""), _fmt(v.get("min_ms"), ".3f", ""), _fmt(v.get("median_ms"), ".3f", ""),
                    _fmt(v.get("p90_ms"), ".3f", ""), _fmt(v.get("speedup_min"), ".3f", ""), _fmt(v.get("speedup_median"), ".3f", ""),
                ]).replace("\n", " ") + " |"
            )
    errors = [
        (r["model"], _label(n), v["error"])
        for r in records for n, v in r["variants"].items()
        if v.get("error") and v.get("status") not in ("n/a",)
    ]
    errors += [(r["model"], "latency", r["latency_error"]) for r in records if r.get("latency_error")]
    if errors:
        out += ["", "## Errors", ""]
        out += [f"- **{model}** {name}: `{str(message).replace('`', chr(39))}`" for model, name, message in errors]
    dropped = [(r["model"], _label(n), d) for r in records for n, v in r["variants"].items() for d in v.get("dropped_passes") or []]
    if dropped:
        out += ["", "## Passes optimize dropped (verification failed)", ""]
        out += [f"- **{model}** {name}: {d.get('name')}: {d.get('reason')}" for model, name, d in dropped]
    out += ["", "Figures hold for this machine only; rerun on the target machine before relying on them.", ""]
    return "\n".join(out)


# ---- main ----------------------------------------------------------------------------------------


def _collect(items: list[str], names: set[str] | None) -> list[Path]:
    models: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.onnx") if not any(f".{v}." in p.name for v in (*PEERS, "opt", "ort", "optimize_O1", "optimize_O2", "optimize_O3")))
        elif path.is_file():
            found = [path]
        else:
            raise SystemExit(f"error: {item}: no such file or directory")
        models += [p for p in found if names is None or p.stem in names]
    if names:
        missing = names - {p.stem for p in models}
        if missing:
            raise SystemExit(f"error: --models: not found: {', '.join(sorted(missing))}")
    return models


def _parse_transformers_types(items: list[str]) -> dict:
    table = dict(TRANSFORMERS_TYPES)
    for item in items:
        name, _, spec = item.partition("=")
        parts = spec.split(":")
        if not name or not parts[0]:
            raise SystemExit(f"error: --transformers-type {item!r}: expected NAME=TYPE[:HEADS:HIDDEN] or NAME=none")
        if parts[0] == "none":
            table.pop(name, None)
            continue
        heads = int(parts[1]) if len(parts) > 1 else 0
        hidden = int(parts[2]) if len(parts) > 2 else 0
        table[name] = (parts[0], heads, hidden)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", default=[str(HERE / "data" / "suite")], help=".onnx files or directories [default: bench/data/suite]")
    parser.add_argument("--models", default=None, help="comma-separated model names (file stems) to keep, e.g. distilbert,resnet50")
    parser.add_argument("--out", default=str(HERE / "out" / "peers.json"))
    parser.add_argument("--markdown", default=None, help="also write the Markdown tables here")
    parser.add_argument("--rounds", type=int, default=10, help="rotated rounds of latency blocks per model (>= 1)")
    parser.add_argument("--latency-budget", type=float, default=None, help="seconds of timing per model before stopping early (>= 3 rounds)")
    parser.add_argument("--block-runs", type=int, default=None, help="timed runs per block [default: ~0.25 s worth]")
    parser.add_argument("--intra-op-threads", type=int, default=1, help="latency sessions' intra_op_num_threads; 0 = onnxruntime's default [default: 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...", help="bind an input's dynamic dims for the check and timing")
    parser.add_argument("--skip-peers", action="store_true", help="only the original, the control and optimize")
    parser.add_argument("--variants", default=",".join(PEERS), help=f"peers to run [default: {','.join(PEERS)}]")
    parser.add_argument("--levels", default="O2,O3", help="optimize levels to run [default: O2,O3]")
    parser.add_argument("--optimize-arg", action="append", default=[], help="extra argument for optimize (repeatable), e.g. --optimize-arg=--no-verify")
    parser.add_argument("--optimize-cmd", default=None, help="command for optimize [default: .venv/bin/optimize]")
    parser.add_argument("--ort-level", choices=sorted(ORT_LEVELS), default="extended", help="ORT offline level [default: extended; 'all' writes machine-specific NCHWc layouts]")
    parser.add_argument("--transformers-opt-level", type=int, default=0, choices=(0, 1, 2, 99), help="optimize_model's opt_level [default: 0 = python fusions only]")
    parser.add_argument("--transformers-type", action="append", default=[], metavar="NAME=TYPE[:HEADS:HIDDEN]", help="onnxruntime.transformers model_type for a model (or NAME=none)")
    parser.add_argument("--python", default=None, help="python with the project's onnxruntime [default: .venv/bin/python]")
    parser.add_argument("--bench-python", default=None, help="python with onnxsim/onnxslim [default: .venv-bench/bin/python]")
    parser.add_argument("--tool-timeout", type=float, default=1800)
    parser.add_argument("--latency-timeout", type=float, default=3600)
    parser.add_argument("--keep-outputs", action="store_true", help="keep the variants' models in --work-dir")
    parser.add_argument("--work-dir", default=None, help="where variants are written [default: a temporary directory]")
    args = parser.parse_args(argv)

    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.intra_op_threads == 0:
        args.intra_op_threads = None
    names = {n.strip() for n in args.models.split(",") if n.strip()} if args.models else None
    models = _collect(args.paths, names)
    if not models:
        print("error: no .onnx models found", file=sys.stderr)
        return 2
    args.python = args.python or _python(".venv")
    args.bench_python = args.bench_python or _python(".venv-bench")
    args.variant_list = [] if args.skip_peers else [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variant_list) - set(PEERS)
    if unknown:
        parser.error(f"--variants: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}")
    args.level_list = [v.strip() for v in args.levels.split(",") if v.strip()]
    if args.optimize_cmd:
        args.optimize_argv = args.optimize_cmd.split()
    elif (REPO / ".venv" / "bin" / "optimize").exists():
        args.optimize_argv = [str(REPO / ".venv" / "bin" / "optimize")]
    else:
        args.optimize_argv = [args.python, "-m", "optimizer.cli"]
    args.transformers_types = _parse_transformers_types(args.transformers_type)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    versions = _json_child([args.bench_python, "-c", _VERSIONS], timeout=120) or {"onnxsim": None, "onnxslim": None, "onnxsim_error": f"{args.bench_python} failed"}
    opt_version = subprocess.run([*args.optimize_argv, "--version"], capture_output=True, text=True).stdout.strip().split()[-1:] or [None]
    report = {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": _json_child([args.python, "-c", _MACHINE, str(HERE)]) or {},
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "peer_versions": versions,
        "tool_versions": {"optimize": opt_version[0], "python": args.python, "bench_python": args.bench_python},
        "settings": {
            k: v for k, v in vars(args).items()
            if k not in ("paths", "transformers_types", "optimize_argv", "work")
        } | {"ort_level_name": ORT_LEVELS[args.ort_level], "transformers_types": {k: list(v) for k, v in args.transformers_types.items()}},
        "models": [],
    }
    log(f"onnxsim {versions.get('onnxsim') or 'not installed'}, onnxslim {versions.get('onnxslim') or 'not installed'} (bench venv); "
        f"onnxruntime {report['machine'].get('onnxruntime')}; intra-op threads {args.intra_op_threads or 'default'}")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="optimize-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    args.work = str(work.resolve())
    try:
        for index, path in enumerate(models, 1):
            log(f"[{index}/{len(models)}] {path}")
            report["models"].append(bench_model(path, args, versions, log))
            report["bench_process_peak_rss_bytes"] = _own_peak_bytes()
            out_path.write_text(json.dumps(report, indent=1, default=str))  # partial results survive a crash
    finally:
        if not args.work_dir and not args.keep_outputs:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep_outputs:
            log(f"variants kept in {work}")
    report["bench_process_peak_rss_bytes"] = _own_peak_bytes()
    out_path.write_text(json.dumps(report, indent=1, default=str))
    markdown = render_markdown(report)
    print(markdown)
    log(f"JSON: {out_path}")
    if args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(markdown)
        log(f"Markdown: {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
