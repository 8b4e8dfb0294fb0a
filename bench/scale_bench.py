"""Cost of `optimize` against graph size: wall time and peak memory for chains of 1e3..1e6 nodes.

    .venv/bin/python bench/scale_bench.py [--max-nodes 100000] [--kinds relu,identity] [--verify] [--timeout 600]

Each size runs in a fresh child process (`optimize(path, out, tune=False)`), so the peak RSS
(`ru_maxrss` of the child) is that run's alone and nothing is cached between sizes. Graphs:

- `relu`: x -> Relu -> Relu -> ... -> y, a chain no pass can shorten (every node stays);
- `identity`: x -> Identity -> ... -> y, a chain identity elimination removes entirely.

The fitted exponent b of time ~ a * nodes^b (least squares on log-log, over the sizes that finished)
says how the cost grows: 1 is linear, 2 quadratic. Sizes grow by sqrt(10) from 1e3 to --max-nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, resource, sys, time
from optimizer import api
path, out, verify = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
started = time.perf_counter()
stages = []
current = ["loading", started]
def on_stage(text):  # a stage's time runs until the next one starts
    now = time.perf_counter()
    stages.append((current[0], now - current[1]))
    current[:] = [text, now]
result = api.optimize(path, out, tune=False, verify=verify, on_stage=on_stage)
seconds = time.perf_counter() - started
stages.append((current[0], time.perf_counter() - current[1]))
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "nodes_after": len(list(result.model.graph)), "stages": stages}))
"""


def chain_model(kind: str, nodes: int):
    """A chain of `nodes` Relu or Identity nodes between one input and one output (onnx protobuf)."""
    import onnx
    from onnx import TensorProto, helper

    op = {"relu": "Relu", "identity": "Identity"}[kind]
    names = ["x", *(f"v{i}" for i in range(1, nodes)), "y"]
    graph = helper.make_graph(
        [helper.make_node(op, [names[i]], [names[i + 1]], name=f"n{i}") for i in range(nodes)], f"{kind}_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def sizes(max_nodes: int) -> list[int]:
    """1e3, 3.2e3, 1e4, ... up to max_nodes."""
    out, exponent = [], 3.0
    while round(10**exponent) <= max_nodes:
        out.append(int(round(10**exponent)))
        exponent += 0.5
    return out


def run_one(kind: str, nodes: int, folder: Path, verify: bool, timeout: float) -> dict:
    """Optimize one chain in a child process; its time, peak memory and per-stage times (or why it did not finish)."""
    import onnx

    path, out = folder / f"{kind}_{nodes}.onnx", folder / f"{kind}_{nodes}.opt.onnx"
    onnx.save(chain_model(kind, nodes), path)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(out), "1" if verify else "0"], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "nodes": nodes, "error": f"over {timeout:g} s"}
    finally:
        path.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    if child.returncode != 0:
        return {"kind": kind, "nodes": nodes, "error": (child.stderr.strip().splitlines() or ["exit %d" % child.returncode])[-1][:200]}
    record = json.loads(child.stdout.strip().splitlines()[-1])
    return {"kind": kind, "nodes": nodes, "wall_s": time.perf_counter() - started, **record}


def fitted_exponent(points: list[tuple[int, float]]) -> float | None:
    """b of y ~ a * n^b by least squares on (log n, log y); None with fewer than two points."""
    points = [(n, y) for n, y in points if y > 0]
    if len(points) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [math.log(y) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else None


def table(records: list[dict]) -> str:
    """The results as a Markdown table plus one line of fitted exponents per kind."""
    lines = ["| graph | nodes | nodes after | optimize s | peak MiB | slowest stages |", "|---|---:|---:|---:|---:|---|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['nodes']:,} | | {r['error']} | | |")
            continue
        stages = sorted(r["stages"], key=lambda s: -s[1])[:2]
        lines.append(f"| {r['kind']} | {r['nodes']:,} | {r['nodes_after']:,} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | {', '.join(f'{name} {sec:.2f} s' for name, sec in stages)} |")
    lines.append("")
    for kind in sorted({r["kind"] for r in records}):
        done = [r for r in records if r["kind"] == kind and "error" not in r]
        time_b = fitted_exponent([(r["nodes"], r["seconds"]) for r in done])
        memory_b = fitted_exponent([(r["nodes"], r["peak_mib"]) for r in done])
        lines.append(f"- {kind}: time ~ nodes^{time_b:.2f}, peak memory ~ nodes^{memory_b:.2f}" if time_b is not None else f"- {kind}: too few sizes finished to fit")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-nodes", type=int, default=100_000)
    parser.add_argument("--kinds", default="relu,identity")
    parser.add_argument("--verify", action="store_true", help="Verify in onnxruntime too (off: the optimizer's own cost).")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds one size may take; the larger sizes of that kind are then skipped.")
    parser.add_argument("--json", type=Path, help="Also write the records as JSON here.")
    args = parser.parse_args(argv)
    records = []
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as scratch:
        for kind in args.kinds.split(","):
            for nodes in sizes(args.max_nodes):
                record = run_one(kind, nodes, Path(scratch), args.verify, args.timeout)
                records.append(record)
                print(json.dumps({k: v for k, v in record.items() if k != "stages"}), file=sys.stderr, flush=True)
                if "error" in record:
                    break
    print(table(records))
    if args.json:
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
