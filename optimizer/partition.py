"""Cut a model into sub-models ("parts") that run one after another or side by side, with a manifest.

Strategies:

- `pipeline`: the main graph's nodes in topological order, cut into contiguous stages balanced by cost
  (the analysis' FLOPs per node, node counts when some costs are unknown): the heaviest stage as light
  as possible, then the least sum of squared stage costs (the most even split). Schedule: one stage per step.
- `branches`: the costliest fork-join region of the analysis; its branches are grouped into `parts`
  groups balanced by FLOPs (longest first, onto the lightest group). Schedule: head (what the branches
  need, omitted when empty), the groups side by side, tail (everything else, omitted when empty).

Constant nodes are not placed: every part gets a copy of those it reads, and of the initializers it
uses. Subgraph nodes (If/Loop/Scan) are placed whole; outer-scope values their bodies read are inputs
of the part when another part produces them. Parts keep the source's opset imports, IR version and
functions; their inputs and outputs carry the types shape inference gives.

`run_partitioned()` runs a partitioned model in onnxruntime (CPU), checks it against the whole model
and times both through `optimizer.measure.time_candidates`, with a control copy of the whole model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import logging
import math
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from optimizer.errors import UserError
import numpy as np
import onnx_ir as ir

from optimizer.analysis import outer_reads
from optimizer.measure import machine_info, time_candidates
from optimizer.verify import Tolerance, compare_arrays, first_line

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "Manifest",
    "Part",
    "PartitionError",
    "RunReport",
    "partition",
    "run_partitioned",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
STRATEGIES = ("pipeline", "branches")
_ROLES = ("stage", "head", "branches", "tail")
_STANDARD = ("", "ai.onnx")
_RTOL, _ATOL = 1e-4, 1e-5
_MIN_NOISE = 0.01  # below this, a difference between identical sessions is still a tie


class PartitionError(UserError):
    """A model, manifest or request that cannot be partitioned or run; the message is one line."""


# --------------------------------------------------------------------------- manifest

@dataclasses.dataclass
class Part:
    """One part file: what it reads, what it hands on, what it costs, and its schedule step."""

    file: str
    role: str  # "stage" (pipeline), "head", "branches" or "tail"
    stage: int  # index of its step in the schedule
    inputs: list[str]  # values to feed: graph inputs and earlier parts' outputs
    outputs: list[str]  # values later parts read, and graph outputs it produces
    flops: float
    nodes: int  # nodes in the part file (copied Constant nodes included)


@dataclasses.dataclass
class Manifest:
    """The parts of a partitioned model and the order to run them in (`manifest.json`)."""

    strategy: str
    source_path: str
    source_sha256: str
    inputs: list[str]
    outputs: list[str]
    parts: list[Part]
    schedule: list[list[str]]  # steps; the part files of one step may run concurrently
    cost_basis: str = "flops"  # "flops" or "nodes"
    region: dict | None = None  # branches: {"fork", "join", "branches", "groups"}
    notes: list[str] = dataclasses.field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    directory: Path | None = None  # where it was loaded from or written to; not serialized

    def to_dict(self) -> dict:
        """A JSON-ready dict (the content of `manifest.json`)."""
        return {
            "schema_version": self.schema_version,
            "strategy": self.strategy,
            "source": {"path": self.source_path, "sha256": self.source_sha256},
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "cost_basis": self.cost_basis,
            "region": self.region,
            "parts": [dataclasses.asdict(p) for p in self.parts],
            "schedule": [list(step) for step in self.schedule],
            "notes": list(self.notes),
        }

    def part(self, file: str) -> Part:
        return next(p for p in self.parts if p.file == file)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Manifest:
        """Read and validate `directory/manifest.json` (PartitionError, one line, when it is not usable)."""
        directory = Path(directory)
        path = directory / MANIFEST_NAME
        if not path.is_file():
            raise PartitionError(f"{path}: no manifest (not a folder written by partition?)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PartitionError(f"{path}: not a readable JSON manifest ({error})") from None
        try:
            manifest = cls._from_dict(data)
        except PartitionError as error:
            raise PartitionError(f"{path}: {error}") from None
        for part in manifest.parts:
            if not (directory / part.file).is_file():
                raise PartitionError(f"{path}: part file {part.file!r} is missing")
        manifest.directory = directory
        return manifest

    @classmethod
    def _from_dict(cls, data) -> Manifest:
        def need(mapping, key, kind, where="manifest"):
            if not isinstance(mapping, dict) or key not in mapping:
                raise PartitionError(f"{where} has no {key!r}")
            value = mapping[key]
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise PartitionError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
            return value

        def names(value, where) -> list[str]:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise PartitionError(f"{where} must be a list of names")
            return list(value)

        version = need(data, "schema_version", int)
        if version != SCHEMA_VERSION:
            raise PartitionError(f"schema_version {version} is not supported (expected {SCHEMA_VERSION})")
        strategy = need(data, "strategy", str)
        if strategy not in STRATEGIES:
            raise PartitionError(f"unknown strategy {strategy!r}")
        source = need(data, "source", dict)
        parts = []
        for index, entry in enumerate(need(data, "parts", list)):
            where = f"parts[{index}]"
            file = need(entry, "file", str, where)
            if not file.endswith(".onnx") or Path(file).name != file or file.startswith("."):
                raise PartitionError(f"{where}: file {file!r} must be a plain .onnx name inside the folder")
            role = need(entry, "role", str, where)
            if role not in _ROLES:
                raise PartitionError(f"{where}: unknown role {role!r}")
            parts.append(Part(
                file, role, need(entry, "stage", int, where),
                names(need(entry, "inputs", list, where), f"{where}.inputs"),
                names(need(entry, "outputs", list, where), f"{where}.outputs"),
                float(need(entry, "flops", (int, float), where)), need(entry, "nodes", int, where),
            ))
        if not parts:
            raise PartitionError("lists no parts")
        files = [p.file for p in parts]
        if len(set(files)) != len(files):
            raise PartitionError("a part file is listed twice")
        schedule = need(data, "schedule", list)
        if not all(isinstance(step, list) and step for step in schedule):
            raise PartitionError("schedule must be a list of non-empty lists of part files")
        scheduled = [file for step in schedule for file in step]
        if sorted(map(str, scheduled)) != sorted(files):
            raise PartitionError("schedule does not list every part exactly once")
        manifest = cls(
            strategy=strategy,
            source_path=need(source, "path", str, "source"),
            source_sha256=need(source, "sha256", str, "source"),
            inputs=names(need(data, "inputs", list), "inputs"),
            outputs=names(need(data, "outputs", list), "outputs"),
            parts=parts,
            schedule=[list(step) for step in schedule],
            cost_basis=str(data.get("cost_basis", "flops")),
            region=data.get("region") if isinstance(data.get("region"), dict) else None,
            notes=[str(n) for n in data.get("notes", []) if isinstance(n, str)],
        )
        available = set(manifest.inputs)
        for step_index, step in enumerate(manifest.schedule):
            for file in step:
                part = manifest.part(file)
                if part.stage != step_index:
                    raise PartitionError(f"part {file!r} says stage {part.stage} but the schedule runs it at step {step_index}")
                missing = [name for name in part.inputs if name not in available]
                if missing:
                    raise PartitionError(f"part {file!r} reads {missing[0]!r}, which no graph input or earlier part provides")
            available.update(name for file in step for name in manifest.part(file).outputs)
        missing = [name for name in manifest.outputs if name not in available]
        if missing:
            raise PartitionError(f"graph output {missing[0]!r} is produced by no part")
        return manifest


# --------------------------------------------------------------------------- the source graph

@dataclasses.dataclass
class _Source:
    """The main graph of the source model, indexed: node positions are those of `list(graph)`."""

    model: ir.Model
    nodes: list[ir.Node]
    reads: list[list[ir.Value]]  # main-graph values each node reads, its subgraphs' included
    producer: dict[int, int]  # id(value) -> index of the node producing it
    order: list[int]  # topological
    constant: list[bool]

    @classmethod
    def of(cls, model: ir.Model) -> _Source:
        graph = model.graph
        nodes = list(graph)
        producer = {id(v): i for i, node in enumerate(nodes) for v in node.outputs}
        reads = []
        for node in nodes:
            seen: dict[int, ir.Value] = {}
            for value in (*node.inputs, *outer_reads(node)):
                if value is not None and value.graph is graph:
                    seen.setdefault(id(value), value)
            reads.append(list(seen.values()))
        constant = [n.op_type == "Constant" and n.domain in _STANDARD for n in nodes]
        return cls(model, nodes, reads, producer, _topological_order(nodes, reads, producer), constant)

    def producer_of(self, value: ir.Value) -> int | None:
        return self.producer.get(id(value))


def _topological_order(nodes: list[ir.Node], reads: list[list[ir.Value]], producer: dict[int, int]) -> list[int]:
    """Kahn's algorithm, the stored order where it is already topological; PartitionError on a cycle."""
    waiting = [0] * len(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for i, values in enumerate(reads):
        for j in {producer[id(v)] for v in values if id(v) in producer}:
            if j == i:
                raise PartitionError(f"node {nodes[i].name or nodes[i].op_type!r} reads its own output: the graph cannot be ordered")
            waiting[i] += 1
            users[j].append(i)
    ready = [i for i, count in enumerate(waiting) if not count]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for k in users[i]:
            waiting[k] -= 1
            if not waiting[k]:
                heapq.heappush(ready, k)
    if len(order) < len(nodes):
        stuck = next(nodes[i] for i in range(len(nodes)) if waiting[i])
        raise PartitionError(f"the graph has a cycle (through {stuck.name or stuck.op_type!r}): its nodes cannot be ordered")
    return order


def _balanced_cuts(weights: Sequence[float], parts: int) -> list[int]:
    """End indices of `parts` contiguous non-empty runs of `weights` (non-negative): the heaviest run
    as light as possible, then the least sum of squared run weights (the most even split)."""
    n = len(weights)
    if not 1 <= parts <= n:
        raise ValueError(f"cannot cut {n} items into {parts} non-empty runs")
    prefix = [0.0]
    for weight in weights:
        prefix.append(prefix[-1] + float(weight))
    # best[i]: the least heaviest run over the first i items in j runs; non-decreasing in i.
    best = prefix[:]
    for j in range(2, parts + 1):
        nxt = [math.inf] * (n + 1)
        for i in range(j, n + 1):
            lo, hi = j - 1, i - 1
            while lo < hi:  # the first s where the prefix's heaviest run outweighs the last run
                mid = (lo + hi) // 2
                if best[mid] >= prefix[i] - prefix[mid]:
                    hi = mid
                else:
                    lo = mid + 1
            nxt[i] = min(max(best[s], prefix[i] - prefix[s]) for s in (lo, lo - 1) if s >= j - 1)
        best = nxt
    limit = best[n] * (1 + 1e-9) + 1e-12

    def cost(s: int, i: int) -> tuple[float, float]:
        w = prefix[i] - prefix[s]
        return max(0.0, w - limit), w * w  # (excess over the least heaviest run, square): convex in w

    layer = [cost(0, i) for i in range(n + 1)]
    back = [[0] * (n + 1)]
    for j in range(2, parts + 1):
        current: list[tuple[float, float]] = [(math.inf, math.inf)] * (n + 1)
        arg = [0] * (n + 1)

        def solve(lo: int, hi: int, s_lo: int, s_hi: int) -> None:
            # divide and conquer: the cost is a convex function of a run's weight, so the best
            # split point is monotone in i
            if lo > hi:
                return
            mid = (lo + hi) // 2
            found, where = None, s_lo
            for s in range(max(s_lo, j - 1), min(s_hi, mid - 1) + 1):
                c = cost(s, mid)
                value = (layer[s][0] + c[0], layer[s][1] + c[1])
                if found is None or value < found:
                    found, where = value, s
            current[mid], arg[mid] = found, where
            solve(lo, mid - 1, s_lo, where)
            solve(mid + 1, hi, where, s_hi)

        solve(j, n, j - 1, n - 1)
        layer = current
        back.append(arg)
    ends, i = [], n
    for j in range(parts, 0, -1):
        ends.append(i)
        i = back[j - 1][i]
    return ends[::-1]


def _group_branches(flops: Sequence[float], groups: int) -> list[list[int]]:
    """Branch indices in `groups` groups balanced by FLOPs: the costliest first, onto the lightest group."""
    loads = [0.0] * groups
    members: list[list[int]] = [[] for _ in range(groups)]
    for index in sorted(range(len(flops)), key=lambda b: (-flops[b], b)):
        target = min(range(groups), key=lambda g: (loads[g], g))
        loads[target] += flops[index]
        members[target].append(index)
    return [sorted(m) for m in members if m]


# --------------------------------------------------------------------------- planning

@dataclasses.dataclass
class _Planned:
    role: str
    step: int
    nodes: list[int]  # placed nodes, topological


def _plan_pipeline(source: _Source, weights: list[float], parts: int, notes: list[str]) -> list[_Planned]:
    placed = [i for i in source.order if not source.constant[i]]
    if parts > len(placed):
        notes.append(f"asked for {parts} parts; the graph has {len(placed)} nodes to place "
                     f"(Constant nodes are copied into the parts that read them): made {len(placed)}")
        parts = len(placed)
    ends = _balanced_cuts([weights[i] for i in placed], parts)
    starts = [0, *ends[:-1]]
    return [_Planned("stage", k, placed[s:e]) for k, (s, e) in enumerate(zip(starts, ends))]


def _plan_branches(source: _Source, analysis, parts: int, notes: list[str]) -> tuple[list[_Planned], dict]:
    regions = [r for r in analysis.regions if len(r.branches) >= 2]
    if not regions:
        raise PartitionError("no parallel branches: the analysis finds no fork-join region with 2 or more branches; use --strategy pipeline")
    region = max(regions, key=lambda r: sum(b["flops"] for b in r.branches))  # the first of equals
    names: dict[str, list[int]] = {}
    for i, node in enumerate(source.nodes):
        names.setdefault(node.name or f"{node.op_type}_{i}", []).append(i)
    branches = []
    for branch in region.branches:
        indices = []
        for name in branch["nodes"]:
            if len(names.get(name, [])) != 1:
                raise PartitionError(f"node name {name!r} is not unique in the graph: cannot place the branches")
            indices.append(names[name][0])
        branches.append(indices)
    count = min(parts, len(branches))
    if parts > len(branches):
        notes.append(f"asked for {parts} branch groups; the region has {len(branches)} branches: made {count}")
    position = {v: k for k, v in enumerate(source.order)}
    groups = []
    for members in _group_branches([b["flops"] for b in region.branches], count):
        groups.append(sorted((i for b in members for i in branches[b]), key=position.__getitem__))
    groups.sort(key=lambda g: position[g[0]])
    in_branches = {i for g in groups for i in g}
    head: set[int] = set()
    stack = list(in_branches)
    while stack:  # everything the branches need, transitively
        i = stack.pop()
        for value in source.reads[i]:
            j = source.producer_of(value)
            if j is not None and j not in in_branches and j not in head and not source.constant[j]:
                head.add(j)
                stack.append(j)
    placed = [i for i in source.order if not source.constant[i]]
    plan = []
    if head:
        plan.append(_Planned("head", 0, [i for i in placed if i in head]))
    else:
        notes.append("no head part: the branches read only graph inputs and constants")
    step = len(plan)
    plan += [_Planned("branches", step, group) for group in groups]
    tail = [i for i in placed if i not in head and i not in in_branches]
    if tail:
        plan.append(_Planned("tail", step + 1, tail))
    else:
        notes.append("no tail part: the branches end at the graph outputs")
    info = {"fork": region.fork, "join": region.join, "branches": len(branches), "groups": len(groups)}
    notes.append(f"region {region.fork} -> {region.join}: {len(branches)} branches in {len(groups)} concurrent parts")
    return plan, info


def _check_dependencies(source: _Source, plan: list[_Planned]) -> None:
    owner = {i: k for k, planned in enumerate(plan) for i in planned.nodes}
    for k, planned in enumerate(plan):
        for i in planned.nodes:
            for value in source.reads[i]:
                j = source.producer_of(value)
                if j is None or source.constant[j] or owner[j] == k:
                    continue
                if plan[owner[j]].step >= planned.step:
                    raise PartitionError(f"internal error: part {k} reads {value.name!r} from part {owner[j]}, which does not run before it")


# --------------------------------------------------------------------------- building the parts

def _extract(source: _Source, keep: set[int], boundary: list[str], outputs: list[str], name: str) -> ir.Model:
    """A clone of the source holding only the nodes `keep`; `boundary` values become graph inputs."""
    read = {v.name for i in keep for v in source.reads[i]} | set(outputs)  # graph inputs and initializers kept
    model = source.model.clone()
    graph = model.graph
    nodes = list(graph)
    values = {v.name: v for node in nodes for v in node.outputs if v.name}
    values.update({v.name: v for v in graph.inputs})
    values.update(graph.initializers)
    fed = []
    for value_name in boundary:
        old = values[value_name]
        new = ir.Value(name=value_name, type=old.type, shape=old.shape.copy() if old.shape is not None else None)
        old.replace_all_uses_with(new)
        fed.append(new)
    graph.outputs.clear()
    graph.outputs.extend(values[o] for o in outputs)
    graph.remove([n for i, n in enumerate(nodes) if i not in keep], safe=True)
    # (a removed If's branches still list their outer reads as uses: go by what the kept nodes read)
    sources = [v for v in graph.inputs if v.name in read]
    graph.inputs.clear()
    graph.inputs.extend([*sources, *fed])
    for key in [key for key in graph.initializers if key not in read]:
        del graph.initializers[key]
    graph.name = name
    for value in [*graph.inputs, *graph.outputs]:
        if value.type is None or isinstance(value.type, ir.TensorType) and value.dtype == ir.DataType.UNDEFINED:
            raise PartitionError(f"value {value.name!r} where the graph is cut has no inferred type; try another number of parts or strategy")
    return model


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_out_dir(out_dir: Path) -> None:
    """Refuse anything but a missing or empty folder."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise PartitionError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()):
            raise PartitionError(f"{out_dir}: folder is not empty; give a new or empty folder")


def _prepare_out_dir(out_dir: Path) -> bool:
    """Check the folder again and create it when missing; True when this call created it."""
    _check_out_dir(out_dir)
    if out_dir.exists():
        return False
    try:
        out_dir.mkdir(parents=True)
    except OSError as error:
        raise PartitionError(f"{out_dir}: cannot create ({error.strerror or error})") from None
    return True


def partition(
    model_path: str | os.PathLike,
    parts: int,
    out_dir: str | os.PathLike,
    *,
    strategy: str = "pipeline",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Manifest:
    """Cut the model at `model_path` into parts written to `out_dir` (see the module docstring).

    `parts` is the number of pipeline stages, or of concurrent branch groups (head and tail come on
    top). `input_shapes` binds dynamic input dims for the cost model only; the parts keep them dynamic.
    """
    from optimizer import io
    from optimizer.analysis import analyze
    from optimizer.graph.shapes import infer_shapes

    if strategy not in STRATEGIES:
        raise PartitionError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise PartitionError(f"parts must be a whole number >= 1, got {parts!r}")
    model_path, out_dir = Path(model_path), Path(out_dir)
    _check_out_dir(out_dir)
    try:
        model = io.load(model_path)
    except io.ModelInputError as error:
        raise PartitionError(str(error)) from None
    notes: list[str] = []
    source = _Source.of(model)  # refuses a graph it cannot order, before any work
    if source.order != list(range(len(source.nodes))):
        model.graph.sort()
        source = _Source.of(model)
        notes.append("the source graph was not in topological order: the parts are sorted")
    if all(source.constant):
        raise PartitionError(f"{model_path}: the graph has no nodes to partition")
    try:
        analysis = analyze(model, input_shapes)
    except ValueError as error:
        raise PartitionError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - a model the analysis cannot take
        raise PartitionError(f"{model_path}: the graph analysis cannot handle this model: {first_line(error)}") from None
    if len(analysis.nodes) != len(source.nodes):
        raise PartitionError("internal error: the analysis and the graph disagree on the nodes")
    infer_shapes(model)

    flops = [c.flops for c in analysis.nodes]
    cost_basis = "flops" if analysis.unknown_cost_nodes == 0 and analysis.work_flops > 0 else "nodes"
    if cost_basis == "nodes":
        why = f"{analysis.unknown_cost_nodes} nodes have no FLOP estimate" if analysis.unknown_cost_nodes else "the graph has no FLOPs"
        notes.append(f"balanced by node count: {why}")
    weights = flops if cost_basis == "flops" else [0.0 if c else 1.0 for c in source.constant]
    region = None
    if strategy == "pipeline":
        plan = _plan_pipeline(source, weights, parts, notes)
    else:
        plan, region = _plan_branches(source, analysis, parts, notes)
    _check_dependencies(source, plan)

    graph = model.graph
    position = {v: k for k, v in enumerate(source.order)}
    graph_outputs = {id(v) for v in graph.outputs}
    graph_inputs = [v for v in graph.inputs if not v.is_initializer()]

    def constant_producer(value: ir.Value) -> int | None:
        j = source.producer_of(value)
        return j if j is not None and source.constant[j] else None

    def value_key(value: ir.Value) -> tuple[int, int]:
        j = source.producer_of(value)
        return (position[j], value.index() or 0) if j is not None else (-1, 0)

    constant_outputs = [v for v in graph.outputs if constant_producer(v) is not None or v.is_initializer()]
    if constant_outputs:
        notes.append(f"{len(constant_outputs)} graph outputs are constants: the last part produces them")
    readers: dict[int, set[int]] = {}
    for k, planned in enumerate(plan):
        for i in planned.nodes:
            for value in source.reads[i]:
                readers.setdefault(id(value), set()).add(k)

    built = []
    for k, planned in enumerate(plan):
        reads = {id(v): v for i in planned.nodes for v in source.reads[i]}
        keep = set(planned.nodes) | {j for v in reads.values() if (j := constant_producer(v)) is not None}
        boundary = sorted((v for v in reads.values() if source.producer_of(v) is not None and source.producer_of(v) not in keep), key=value_key)
        produced = [v for i in planned.nodes for v in source.nodes[i].outputs if v.name]
        outputs = [v for v in produced if readers.get(id(v), set()) - {k} or id(v) in graph_outputs]
        if k == len(plan) - 1:
            keep |= {j for v in constant_outputs if (j := constant_producer(v)) is not None}
            outputs += constant_outputs
        outputs = sorted(dict.fromkeys(outputs), key=value_key)
        fed = [v.name for v in graph_inputs if id(v) in reads] + [v.name for v in boundary]
        built.append((planned, keep, fed, [v.name for v in boundary], [v.name for v in outputs]))

    created = _prepare_out_dir(out_dir)
    written: list[Path] = []
    try:
        manifest_parts = []
        for k, (planned, keep, fed, boundary, outputs) in enumerate(built):
            file = f"part-{k:02d}.onnx"
            part_model = _extract(source, keep, boundary, outputs, f"{graph.name or 'graph'}-part-{k:02d}")
            written.append(out_dir / file)
            io.save(part_model, out_dir / file)
            manifest_parts.append(Part(
                file, planned.role, planned.step, fed, outputs,
                float(sum(flops[i] for i in planned.nodes)), len(keep),
            ))
        steps = max(p.stage for p in manifest_parts) + 1
        manifest = Manifest(
            strategy=strategy,
            source_path=str(model_path.resolve()),
            source_sha256=_sha256(model_path),
            inputs=[v.name for v in graph_inputs],
            outputs=[v.name for v in graph.outputs],
            parts=manifest_parts,
            schedule=[[p.file for p in manifest_parts if p.stage == s] for s in range(steps)],
            cost_basis=cost_basis,
            region=region,
            notes=notes,
            directory=out_dir,
        )
        Manifest._from_dict(json.loads(json.dumps(manifest.to_dict())))  # what we write, we can read
        staged = out_dir / (MANIFEST_NAME + ".tmp")
        written.append(staged)
        staged.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(staged, out_dir / MANIFEST_NAME)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".data").unlink(missing_ok=True)
        if created:
            try:
                out_dir.rmdir()
            except OSError:
                pass
        raise
    logger.info("partitioned %s into %d parts (%s): %s", model_path, len(manifest_parts), strategy, manifest.schedule)
    return manifest


# --------------------------------------------------------------------------- running

@dataclasses.dataclass
class RunReport:
    """A partitioned run checked against the whole model, and timed against it."""

    directory: str
    strategy: str
    schedule: list[list[str]]
    matches: bool
    outputs: list[dict]  # per graph output: name, max_abs, max_rel, passed, note
    tolerance: dict
    stream: int
    stream_matches: bool | None  # every input of the stream gave the whole model's outputs
    latency: dict | None  # candidate -> LatencyStats as a dict ("whole", "partitioned", "control")
    latency_speedup: float | None  # whole min / partitioned min
    throughput: dict | None  # candidate -> inputs/s, from the minimum time of a stream
    throughput_speedup: float | None
    noise: float | None  # |control / whole - 1| of the headline figure
    pays: bool
    verdict: str
    notes: list[str]
    machine: dict

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def _session(path: str | os.PathLike, *, threads: int | None = None, reference: bool = False, spin: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if reference:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several types
        raise PartitionError(f"{path}: onnxruntime cannot load it: {first_line(error)}") from None


class _Schedule:
    """Sessions of every part, run step by step; the parts of one step run concurrently on threads."""

    def __init__(self, manifest: Manifest, *, single_thread: bool) -> None:
        self.steps = []
        self.pools: list[ThreadPoolExecutor] = []
        for step in manifest.schedule:
            runs = []
            for file in step:
                part = manifest.part(file)
                threads = 1 if single_thread or len(step) > 1 else None
                # back to back, a session's spinning threads would steal the next one's cores
                session = _session(manifest.directory / file, threads=threads, spin=len(manifest.parts) == 1)
                feeds = [i.name for i in session.get_inputs()]
                runs.append((file, session, feeds, list(part.outputs)))
            pool = ThreadPoolExecutor(max_workers=len(step)) if len(step) > 1 else None
            if pool is not None:
                self.pools.append(pool)
            self.steps.append((runs, pool))

    @staticmethod
    def _run_part(run, env: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        file, session, feeds, outputs = run
        try:
            results = session.run(outputs, {name: env[name] for name in feeds if name in env})
        except Exception as error:  # noqa: BLE001
            raise PartitionError(f"{file}: onnxruntime failed: {first_line(error)}") from None
        return dict(zip(outputs, results))

    def run_step(self, index: int, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runs, pool = self.steps[index]
        env = dict(env)
        if pool is None:
            for run in runs:
                env.update(self._run_part(run, env))
        else:
            for produced in pool.map(lambda run: self._run_part(run, env), runs):
                env.update(produced)
        return env

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env = dict(feeds)
        for index in range(len(self.steps)):
            env = self.run_step(index, env)
        return env

    def close(self) -> None:
        for pool in self.pools:
            pool.shutdown()


class _Pipeline:
    """One thread per schedule step, connected by queues: a stream of inputs flows through the steps."""

    def __init__(self, schedule: _Schedule) -> None:
        self.schedule = schedule
        self.queues: list[queue.Queue] = [queue.Queue() for _ in range(len(schedule.steps) + 1)]
        self.threads = [threading.Thread(target=self._work, args=(k,), daemon=True) for k in range(len(schedule.steps))]
        for thread in self.threads:
            thread.start()

    def _work(self, index: int) -> None:
        inbox, outbox = self.queues[index], self.queues[index + 1]
        while True:
            item = inbox.get()
            if item is None:
                outbox.put(None)
                return
            if not isinstance(item, BaseException):
                try:
                    item = self.schedule.run_step(index, item)
                except BaseException as error:  # noqa: BLE001 - handed to the caller
                    item = error
            outbox.put(item)

    def __call__(self, stream: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        for feeds in stream:
            self.queues[0].put(dict(feeds))
        results = [self.queues[-1].get() for _ in stream]
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    def close(self) -> None:
        self.queues[0].put(None)
        for thread in self.threads:
            thread.join()


def _compare(names: Sequence[str], expected: Sequence, env: Mapping[str, np.ndarray]) -> list[dict]:
    tolerance = Tolerance(rtol=_RTOL, atol=_ATOL)
    rows = []
    for name, reference in zip(names, expected):
        result = compare_arrays(name, reference, env[name], tolerance)
        rows.append({"name": name, "max_abs": result.max_abs, "max_rel": result.max_rel, "passed": result.passed, "note": result.note})
    return rows


def _verdict(what: str, speedup: float, noise: float, cores: int | None) -> tuple[bool, str]:
    margin = max(noise, _MIN_NOISE)
    pays = speedup > 1.0 + margin
    where = f"this machine ({cores} cores)" if cores else "this machine"
    figures = f"partitioned {what} {speedup:.2f}x the whole model's (noise {margin:.1%})"
    if pays:
        return True, f"{figures}: partitioning pays on {where}"
    return False, f"{figures}: partitioning does not pay on {where}; run the whole model"


def run_partitioned(
    directory: str | os.PathLike,
    feeds: Mapping[str, np.ndarray],
    *,
    stream: int = 1,
    rounds: int = 5,
) -> RunReport:
    """Run the parts in `directory` on `feeds`, check them against the whole source model and time both.

    `stream` > 1 also sends that many copies of the inputs through the schedule's steps as a pipeline
    (one thread per step) and compares throughput with the whole model running them one by one.
    `rounds` is the number of rotated timing rounds (0: check only, no timing).
    """
    if isinstance(stream, bool) or not isinstance(stream, int) or stream < 1:
        raise PartitionError(f"stream must be a whole number >= 1, got {stream!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise PartitionError(f"rounds must be a whole number >= 0, got {rounds!r}")
    manifest = Manifest.load(directory)
    missing = [name for name in manifest.inputs if name not in feeds]
    if missing:
        raise PartitionError(f"feeds lack graph input {missing[0]!r} (the model reads {', '.join(manifest.inputs)})")
    source = Path(manifest.source_path)
    if not source.is_file():
        raise PartitionError(f"source model {source} is missing: cannot check the parts against it")
    notes: list[str] = []
    if _sha256(source) != manifest.source_sha256:
        notes.append(f"the source model {source} changed since it was partitioned (sha256 differs)")
    feeds = {name: np.asarray(array) for name, array in feeds.items()}

    reference = _session(source, reference=True)
    known = {i.name for i in reference.get_inputs()}
    unknown = sorted(set(feeds) - known)
    if unknown:
        raise PartitionError(f"feeds name {unknown[0]!r}, which is no input of the model")
    try:
        expected = reference.run(manifest.outputs, feeds)
    except Exception as error:  # noqa: BLE001
        raise PartitionError(f"the whole model cannot run on these feeds: {first_line(error)}") from None
    if len(manifest.parts) > 1:
        notes.append("part sessions do not spin (session.intra_op.allow_spinning=0): run back to back, "
                     "one session's spinning threads would steal the next one's cores")
    concurrent = [step for step in manifest.schedule if len(step) > 1]
    if concurrent:
        notes.append(f"parts of a step run concurrently on up to {max(map(len, concurrent))} threads, "
                     "each session with intra_op_num_threads=1")
    schedule = _Schedule(manifest, single_thread=False)
    pipeline = pipeline_schedule = None
    try:
        outputs = _compare(manifest.outputs, expected, schedule(feeds))
        matches = all(row["passed"] for row in outputs)
        stream_matches = None
        if stream > 1:
            pipeline_schedule = _Schedule(manifest, single_thread=True)
            pipeline = _Pipeline(pipeline_schedule)
            notes.append(f"stream of {stream}: one thread per step ({len(manifest.schedule)}), every part session "
                         "with intra_op_num_threads=1; the whole model runs the stream one input after another")
            stream_matches = all(
                row["passed"] for env in pipeline([feeds] * stream) for row in _compare(manifest.outputs, expected, env)
            )
        latency = latency_speedup = throughput = throughput_speedup = noise = None
        pays = False
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if not matches:
            worst = max(outputs, key=lambda row: row["max_abs"])
            verdict = (f"the partitioned outputs differ from the whole model's ({worst['name']}: max abs error "
                       f"{worst['max_abs']:.3g}): the parts are wrong; not timed")
        elif stream_matches is False:
            verdict = "the stream pipeline's outputs differ from the whole model's: not timed"
        elif rounds == 0:
            verdict = "the partitioned outputs match the whole model's; not timed (rounds=0)"
        else:
            whole, control = _session(source), _session(source)
            stats, _ = time_candidates({
                "whole": lambda: whole.run(None, feeds),
                "partitioned": lambda: schedule(feeds),
                "control": lambda: control.run(None, feeds),
            }, rounds=rounds)
            latency = {name: dataclasses.asdict(s) for name, s in stats.items()}
            latency_speedup = stats["whole"].min_ms / stats["partitioned"].min_ms
            noise = abs(stats["control"].min_ms / stats["whole"].min_ms - 1.0)
            pays, verdict = _verdict("latency is", latency_speedup, noise, cores)
            if stream > 1:
                batch = [feeds] * stream
                stats, _ = time_candidates({
                    "whole": lambda: [whole.run(None, feeds) for _ in batch],
                    "partitioned": lambda: pipeline(batch),
                    "control": lambda: [control.run(None, feeds) for _ in batch],
                }, rounds=rounds)
                throughput = {name: stream / (s.min_ms / 1e3) for name, s in stats.items()}
                throughput_speedup = throughput["partitioned"] / throughput["whole"]
                noise = abs(throughput["control"] / throughput["whole"] - 1.0)
                pays, stream_verdict = _verdict("throughput is", throughput_speedup, noise, cores)
                verdict = f"{stream_verdict} (latency: {latency_speedup:.2f}x)"
    finally:
        schedule.close()
        if pipeline is not None:
            pipeline.close()
        if pipeline_schedule is not None:
            pipeline_schedule.close()
    return RunReport(
        directory=str(manifest.directory),
        strategy=manifest.strategy,
        schedule=[list(step) for step in manifest.schedule],
        matches=matches,
        outputs=outputs,
        tolerance={"rtol": _RTOL, "atol": _ATOL},
        stream=stream,
        stream_matches=stream_matches,
        latency=latency,
        latency_speedup=latency_speedup,
        throughput=throughput,
        throughput_speedup=throughput_speedup,
        noise=noise,
        pays=pays,
        verdict=verdict,
        notes=notes,
        machine=machine_info(),
    )
