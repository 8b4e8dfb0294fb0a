"""Benchmark `optimize` on a generated model over 2 GiB whose weights are in external data.

    .venv/bin/python bench/large_model_bench.py [--out bench/data/large] [--layers 34] [--width 4096] \
        [--modes default,no-tune] [--markdown bench/results/2026-11-22-large-model.md] [--keep]

1. Generates (once; reused while its manifest matches) `big.onnx` + `big.onnx.data`: an input scaled by
   a foldable constant product (Mul of two small constants), an Identity, then LAYERS blocks of
   MatMul(h, W_i) + Add(b_i) + Relu (the last without Relu), W_i float32 WIDTH x WIDTH in external data
   (written one tensor at a time: the generator never holds more than one weight), b_i embedded.
   The defaults give 34 x 64 MiB = 2.13 GiB of external weights.
2. Per mode, runs the `optimize` CLI as a child process (`optimize big.onnx -o out.onnx [flags] --json`;
   `--json` only changes how the summary is printed) and measures its wall time and peak RSS
   (`os.wait4`'s ru_maxrss of that child, cross-checked by sampling /proc/PID/status; the anonymous
   and file-backed parts of RSS are sampled too), and reports peak RSS / model size on disk.
3. Checks each output: written with external data (`out.onnx` small, `out.onnx.data` holding every
   large weight), loads in onnxruntime, and matches the original on a fixed input (the two sessions
   run one after the other in this process, never at the same time).

Prints a Markdown table and writes it, with the command lines and the machine, to --markdown.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = {
    "default": [],
    "no-tune": ["--no-tune"],
    "no-verify": ["--no-verify", "--no-tune"],
}
MODEL_NAME = "big.onnx"


# -- the model ------------------------------------------------------------------------------------


def generate(folder: Path, layers: int, width: int, seed: int = 0) -> Path:
    """Write `folder/big.onnx` and `folder/big.onnx.data`; weights are streamed to disk one at a time."""
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_NAME
    data_name = MODEL_NAME + ".data"
    manifest_path = folder / "manifest.json"
    manifest = {"layers": layers, "width": width, "seed": seed, "format": 1}
    if model_path.is_file() and (folder / data_name).is_file() and manifest_path.is_file():
        if json.loads(manifest_path.read_text()) == manifest:
            return model_path
    rng = np.random.default_rng(seed)
    std = np.float32(np.sqrt(2.0 / width))
    initializers, nodes = [], []
    offset = 0
    with open(folder / data_name, "wb") as data:
        for i in range(layers):
            weight = rng.standard_normal((width, width), dtype=np.float32)
            weight *= std
            weight.tofile(data)
            tensor = TensorProto(name=f"W{i}", data_type=TensorProto.FLOAT, dims=[width, width], data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(weight.nbytes))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += weight.nbytes
            initializers.append(tensor)
            del weight
    # Small tensors stay embedded: the model mixes both kinds.
    initializers.append(helper.make_tensor("scale_a", TensorProto.FLOAT, [width], (0.5 + rng.random(width, dtype=np.float32)).tolist()))
    initializers.append(helper.make_tensor("scale_b", TensorProto.FLOAT, [width], (0.5 + rng.random(width, dtype=np.float32)).tolist()))
    nodes.append(helper.make_node("Mul", ["scale_a", "scale_b"], ["scale"], name="fold_me"))  # constant: folded
    nodes.append(helper.make_node("Mul", ["x", "scale"], ["scaled"], name="scale_input"))
    nodes.append(helper.make_node("Identity", ["scaled"], ["h_in"], name="identity"))  # removed
    h = "h_in"
    for i in range(layers):
        bias = (0.01 * rng.standard_normal(width)).astype(np.float32)
        initializers.append(onnx.numpy_helper.from_array(bias, f"b{i}"))
        nodes.append(helper.make_node("MatMul", [h, f"W{i}"], [f"m{i}"], name=f"matmul{i}"))  # MatMul + Add: fused to Gemm
        last = i == layers - 1
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], ["y" if last else f"a{i}"], name=f"add{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"h{i}"], name=f"relu{i}"))
            h = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "large",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="large_model_bench")
    model.ir_version = 10
    model_path.write_bytes(model.SerializeToString())
    manifest_path.write_text(json.dumps(manifest))
    return model_path


def files_of(model_path: Path) -> list[Path]:
    """The model file and every external data file its tensors name."""
    import onnx

    proto = onnx.load_model(str(model_path), load_external_data=False)
    locations = set()
    for tensor in _tensors(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.add(next(e.value for e in tensor.external_data if e.key == "location"))
    return [model_path] + [model_path.parent / location for location in sorted(locations)]


def _tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


# -- running the CLI and measuring it -------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    fields = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    fields[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return fields


def run_cli(arguments: list[str], interval: float = 0.1) -> dict:
    """Run `optimize ARGS` as a child; its wall time, exit code, output and memory figures."""
    command = [str(REPO / ".venv" / "bin" / "optimize"), *arguments]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = {"VmRSS": 0, "VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    timeline: list[tuple[float, int, int, int]] = []
    done = threading.Event()

    def sample() -> None:
        last_logged = -1.0
        while not done.is_set():
            status = _status(child.pid)
            if status:
                for key in peaks:
                    peaks[key] = max(peaks[key], status.get(key, 0))
                now = time.perf_counter() - started
                if now - last_logged >= 1.0:
                    timeline.append((round(now, 1), status.get("VmRSS", 0), status.get("RssAnon", 0), status.get("RssFile", 0)))
                    last_logged = now
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [
        threading.Thread(target=lambda: out_chunks.append(child.stdout.read()), daemon=True),
        threading.Thread(target=lambda: err_chunks.append(child.stderr.read()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    for reader in readers:
        reader.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    return {
        "command": command,
        "rc": child.returncode,
        "wall_s": wall,
        "maxrss": usage.ru_maxrss * 1024,  # kilobytes on Linux
        "sampled": peaks,
        "timeline": timeline,
        "stdout": "".join(out_chunks),
        "stderr": "".join(err_chunks),
    }


# -- checking the output ----------------------------------------------------------------------------


def check_output(original: Path, output: Path, width: int) -> dict:
    """External data written; onnxruntime loads it; outputs match the original's (sessions one at a time)."""
    import onnx
    import onnxruntime as ort

    result: dict = {"ok": False}
    data = output.with_name(output.name + ".data")
    result["model_file_bytes"] = output.stat().st_size
    result["data_file_bytes"] = data.stat().st_size if data.exists() else 0
    proto = onnx.load_model(str(output), load_external_data=False)
    big = [t for t in _tensors(proto.graph) if int(np.prod(t.dims, dtype=np.float64)) * 4 >= 1 << 20]
    embedded_big = [t.name for t in big if t.data_location != onnx.TensorProto.EXTERNAL]
    result["external_weights"] = len(big) - len(embedded_big)
    result["embedded_large_weights"] = embedded_big
    result["ops"] = {}
    for node in proto.graph.node:
        result["ops"][node.op_type] = result["ops"].get(node.op_type, 0) + 1
    del proto
    feeds = {"x": np.random.default_rng(123).standard_normal((1, width), dtype=np.float32)}

    def run(path: Path, reference: bool) -> np.ndarray:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if reference:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        value = session.run(None, feeds)[0]
        del session
        gc.collect()
        return value

    expected = run(original, reference=True)
    actual = run(output, reference=False)
    scale = float(np.max(np.abs(expected)))
    max_abs = float(np.max(np.abs(expected.astype(np.float64) - actual.astype(np.float64))))
    result["max_abs"] = max_abs
    result["max_rel"] = max_abs / scale if scale else max_abs
    result["ok"] = not embedded_big and result["data_file_bytes"] > 0 and result["max_rel"] <= 1e-4
    return result


# -- main -------------------------------------------------------------------------------------------


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "data" / "large", help="folder for the generated model and the outputs (git-ignored)")
    parser.add_argument("--layers", type=int, default=34)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--modes", default="default,no-tune", help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--optimize-arg", action="append", default=[], help="extra argument passed to every optimize run (repeatable)")
    parser.add_argument("--markdown", type=Path, help="write the results here (e.g. bench/results/2026-11-22-large-model.md)")
    parser.add_argument("--budget-ratio", type=float, default=1.5, help="peak RSS / model size that counts as within budget")
    parser.add_argument("--keep", action="store_true", help="keep the generated model and outputs (deleted otherwise)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; choose from {list(MODES)}")
    free = shutil.disk_usage(args.out.parent if args.out.parent.exists() else REPO).free
    needed = args.layers * args.width * args.width * 4 * 3
    if free < needed:
        print(f"not enough disk: {_gib(free)} free, about {_gib(needed)} needed", file=sys.stderr)
        return 2

    started = time.perf_counter()
    model_path = generate(args.out, args.layers, args.width)
    generate_s = time.perf_counter() - started
    model_bytes = sum(p.stat().st_size for p in files_of(model_path))
    data_bytes = sum(p.stat().st_size for p in files_of(model_path)[1:])
    print(f"model {model_path}: {_gib(model_bytes)} ({_gib(data_bytes)} in external data), {args.layers} layers of {args.width}x{args.width}; ready in {generate_s:.1f} s", flush=True)

    rows = []
    try:
        for mode in modes:
            output = args.out / f"out-{mode}.onnx"
            for stale in (output, output.with_name(output.name + ".data"), output.with_name(output.name + ".json")):
                stale.unlink(missing_ok=True)
            arguments = [str(model_path), "-o", str(output), *MODES[mode], *args.optimize_arg, "--json"]
            print(f"running: optimize {shlex.join(arguments)}", flush=True)
            run = run_cli(arguments)
            summary = {}
            if run["rc"] == 0:
                try:
                    summary = json.loads(run["stdout"])
                except json.JSONDecodeError:
                    pass
            check = check_output(model_path, output, args.width) if run["rc"] == 0 and output.exists() else {"ok": False, "error": run["stderr"].strip().splitlines()[-1:] }
            peak = max(run["maxrss"], run["sampled"]["VmHWM"])
            row = {
                "mode": mode,
                "command": "optimize " + shlex.join([os.path.relpath(a, REPO) if a.startswith("/") else a for a in arguments]),
                "rc": run["rc"],
                "wall_s": run["wall_s"],
                "peak_rss": peak,
                "peak_anon": run["sampled"]["RssAnon"],
                "peak_file": run["sampled"]["RssFile"],
                "ratio": peak / model_bytes,
                "check": check,
                "seconds": summary.get("seconds", {}),
                "verification": (summary.get("verification") or {}).get("status"),
                "shipped": summary.get("shipped_variant"),
                "warnings": summary.get("warnings", []),
                "timeline": run["timeline"],
                "stderr_tail": run["stderr"].strip().splitlines()[-3:],
            }
            rows.append(row)
            print(
                f"  rc {row['rc']}, {row['wall_s']:.1f} s, peak RSS {_gib(peak)} (anon {_gib(row['peak_anon'])}, file {_gib(row['peak_file'])}), "
                f"{row['ratio']:.2f}x the model; output {'OK' if check.get('ok') else 'NOT OK'} {json.dumps({k: v for k, v in check.items() if k != 'ops'})}",
                flush=True,
            )
            if row["stderr_tail"] and row["rc"] != 0:
                print("  " + "\n  ".join(row["stderr_tail"]), flush=True)
    finally:
        if not args.keep:
            for mode in modes:
                output = args.out / f"out-{mode}.onnx"
                for stale in (output, output.with_name(output.name + ".data"), output.with_name(output.name + ".json")):
                    stale.unlink(missing_ok=True)

    markdown = render(rows, model_path, model_bytes, data_bytes, args)
    print()
    print(markdown)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown)
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)
    return 0 if all(r["rc"] == 0 and r["check"].get("ok") and r["ratio"] <= args.budget_ratio for r in rows) else 1


def render(rows: list[dict], model_path: Path, model_bytes: int, data_bytes: int, args) -> str:
    from optimizer.measure import machine_info

    info = machine_info()
    lines = [
        f"# `optimize` on a {_gib(model_bytes)} model with external data ({_dt.date.today().isoformat()})",
        "",
        "    .venv/bin/python bench/large_model_bench.py " + shlex.join(
            [f"--layers={args.layers}", f"--width={args.width}", f"--modes={','.join(r['mode'] for r in rows)}"]
            + [f"--optimize-arg={a}" for a in args.optimize_arg]
            + ([f"--markdown={os.path.relpath(args.markdown, REPO)}"] if args.markdown else [])
        ),
        "",
        f"Model: generated `{model_path.name}`, {args.layers} blocks of MatMul({args.width}x{args.width} float32 weight, external) + Add(bias, embedded) + Relu,",
        "after a foldable constant Mul and an Identity; "
        f"{model_bytes:,} bytes on disk ({data_bytes:,} in `{model_path.name}.data`).",
        f"Machine: {info['cpu_model']}, {info['cpu_affinity']} usable cores, onnxruntime {info['onnxruntime']}, Python {info['python']}.",
        "Peak RSS is the child's `ru_maxrss` (`os.wait4`), cross-checked by sampling /proc/PID/status every 0.1 s;",
        "anon/file are the sampled peaks of RssAnon (heap) and RssFile (memory-mapped weights, page cache shared with other processes).",
        "",
        "| mode | command | exit | wall s | peak RSS | peak anon / file | peak / model size | output | max rel error vs original |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        check = r["check"]
        output = (
            f"external data ({check['data_file_bytes'] / 2**30:.2f} GiB `.data`, {check['model_file_bytes'] / 1024:.0f} KiB `.onnx`), loads in onnxruntime"
            if check.get("ok") else f"NOT OK: {check}"
        )
        lines.append(
            f"| {r['mode']} | `{r['command']}` | {r['rc']} | {r['wall_s']:.0f} | {_gib(r['peak_rss'])} | {_gib(r['peak_anon'])} / {_gib(r['peak_file'])} | "
            f"**{r['ratio']:.2f}x** | {output} | {check.get('max_rel', float('nan')):.1e} |"
        )
    lines.append("")
    for r in rows:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds"].items())
        lines.append(f"- {r['mode']}: verification {r['verification']}, shipped {r['shipped']}; stages: {stages}")
        ops = r["check"].get("ops")
        if ops:
            lines.append(f"  - output ops: {', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}")
        for warning in r["warnings"]:
            lines.append(f"  - warning: {warning}")
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
