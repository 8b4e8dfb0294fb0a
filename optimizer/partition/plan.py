"""Where to cut: which nodes go into which part, in which schedule step, and what each part reads and hands on.

- `pipeline`: the main graph's nodes in topological order, cut into contiguous stages balanced by cost
  (the analysis' FLOPs per node, node counts when some costs are unknown): the heaviest stage as light
  as possible, then the least sum of squared stage costs (the most even split). One stage per step.
- `branches`: the costliest fork-join region of the analysis; its branches are grouped into `parts`
  groups balanced by FLOPs (longest first, onto the lightest group). Steps: head (what the branches
  need, omitted when empty), the groups side by side, tail (everything else, omitted when empty).

Constant nodes are not placed: every part keeps a copy of those it reads. Nothing is extracted or
written here (`optimizer.partition.extract`, `optimizer.partition.manifest`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import onnx_ir as ir

from optimizer.partition.errors import PartitionError
from optimizer.partition.source import SourceGraph

__all__ = ["Plan", "PlannedPart", "balanced_cuts", "group_branches", "plan_parts"]


@dataclasses.dataclass
class PlannedPart:
    """One part to extract: its nodes, its schedule step, and the values crossing its boundary."""

    role: str  # "stage" (pipeline), "head", "branches" or "tail"
    step: int
    nodes: list[int]  # placed nodes, topological
    keep: set[int]  # nodes of the part file: the placed ones and the Constant nodes they read
    inputs: list[str]  # values to feed: graph inputs and earlier parts' outputs
    boundary: list[str]  # the earlier parts' outputs among them
    outputs: list[str]  # values later parts read, and graph outputs it produces
    flops: float


@dataclasses.dataclass
class Plan:
    """The parts of a model to partition, in schedule order, and how they were balanced."""

    parts: list[PlannedPart]
    cost_basis: str  # "flops" or "nodes"
    region: dict | None  # branches: {"fork", "join", "branches", "groups"}


@dataclasses.dataclass
class _Placement:
    """A part before wiring: its role, schedule step and placed nodes."""

    role: str
    step: int
    nodes: list[int]  # placed nodes, topological


def balanced_cuts(weights: Sequence[float], parts: int) -> list[int]:
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


def group_branches(flops: Sequence[float], groups: int) -> list[list[int]]:
    """Branch indices in `groups` groups balanced by FLOPs: the costliest first, onto the lightest group."""
    loads = [0.0] * groups
    members: list[list[int]] = [[] for _ in range(groups)]
    for index in sorted(range(len(flops)), key=lambda b: (-flops[b], b)):
        target = min(range(groups), key=lambda g: (loads[g], g))
        loads[target] += flops[index]
        members[target].append(index)
    return [sorted(m) for m in members if m]


def _plan_pipeline(source: SourceGraph, weights: list[float], parts: int, notes: list[str]) -> list[_Placement]:
    """Contiguous stages of the placed nodes in topological order, balanced by `weights`."""
    placed = [i for i in source.order if not source.constant[i]]
    if parts > len(placed):
        notes.append(f"asked for {parts} parts; the graph has {len(placed)} nodes to place "
                     f"(Constant nodes are copied into the parts that read them): made {len(placed)}")
        parts = len(placed)
    ends = balanced_cuts([weights[i] for i in placed], parts)
    starts = [0, *ends[:-1]]
    return [_Placement("stage", k, placed[s:e]) for k, (s, e) in enumerate(zip(starts, ends))]


def _plan_branches(source: SourceGraph, analysis, parts: int, notes: list[str]) -> tuple[list[_Placement], dict]:
    """Head, the costliest region's branches in balanced groups, tail; and the region's summary."""
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
    for members in group_branches([b["flops"] for b in region.branches], count):
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
        plan.append(_Placement("head", 0, [i for i in placed if i in head]))
    else:
        notes.append("no head part: the branches read only graph inputs and constants")
    step = len(plan)
    plan += [_Placement("branches", step, group) for group in groups]
    tail = [i for i in placed if i not in head and i not in in_branches]
    if tail:
        plan.append(_Placement("tail", step + 1, tail))
    else:
        notes.append("no tail part: the branches end at the graph outputs")
    info = {"fork": region.fork, "join": region.join, "branches": len(branches), "groups": len(groups)}
    notes.append(f"region {region.fork} -> {region.join}: {len(branches)} branches in {len(groups)} concurrent parts")
    return plan, info


def _check_dependencies(source: SourceGraph, plan: list[_Placement]) -> None:
    """Every part reads only what earlier steps produce (an internal error otherwise)."""
    owner = {i: k for k, planned in enumerate(plan) for i in planned.nodes}
    for k, planned in enumerate(plan):
        for i in planned.nodes:
            for value in source.reads[i]:
                j = source.producer_of(value)
                if j is None or source.constant[j] or owner[j] == k:
                    continue
                if plan[owner[j]].step >= planned.step:
                    raise PartitionError(f"internal error: part {k} reads {value.name!r} from part {owner[j]}, which does not run before it")


def _wire(source: SourceGraph, placements: list[_Placement], flops: Sequence[float], notes: list[str]) -> list[PlannedPart]:
    """What every placed part reads, keeps, is fed and hands on; the last part produces constant outputs."""
    graph = source.model.graph
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
    for k, placed in enumerate(placements):
        for i in placed.nodes:
            for value in source.reads[i]:
                readers.setdefault(id(value), set()).add(k)

    wired = []
    for k, placed in enumerate(placements):
        reads = {id(v): v for i in placed.nodes for v in source.reads[i]}
        keep = set(placed.nodes) | {j for v in reads.values() if (j := constant_producer(v)) is not None}
        boundary = sorted((v for v in reads.values() if source.producer_of(v) is not None and source.producer_of(v) not in keep), key=value_key)
        produced = [v for i in placed.nodes for v in source.nodes[i].outputs if v.name]
        outputs = [v for v in produced if readers.get(id(v), set()) - {k} or id(v) in graph_outputs]
        if k == len(placements) - 1:
            keep |= {j for v in constant_outputs if (j := constant_producer(v)) is not None}
            outputs += constant_outputs
        outputs = sorted(dict.fromkeys(outputs), key=value_key)
        fed = [v.name for v in graph_inputs if id(v) in reads] + [v.name for v in boundary]
        wired.append(PlannedPart(
            placed.role, placed.step, placed.nodes, keep, fed, [v.name for v in boundary], [v.name for v in outputs],
            float(sum(flops[i] for i in placed.nodes)),
        ))
    return wired


def plan_parts(source: SourceGraph, analysis, strategy: str, parts: int, notes: list[str]) -> Plan:
    """Place the nodes of `source` (topologically sorted) into parts by `strategy`, balanced by the
    analysis' costs (`optimizer.analysis.GraphAnalysis` of the same graph); notes go to `notes`."""
    flops = [c.flops for c in analysis.nodes]
    cost_basis = "flops" if analysis.unknown_cost_nodes == 0 and analysis.work_flops > 0 else "nodes"
    if cost_basis == "nodes":
        why = f"{analysis.unknown_cost_nodes} nodes have no FLOP estimate" if analysis.unknown_cost_nodes else "the graph has no FLOPs"
        notes.append(f"balanced by node count: {why}")
    weights = flops if cost_basis == "flops" else [0.0 if c else 1.0 for c in source.constant]
    region = None
    if strategy == "pipeline":
        placements = _plan_pipeline(source, weights, parts, notes)
    else:
        placements, region = _plan_branches(source, analysis, parts, notes)
    _check_dependencies(source, placements)
    return Plan(_wire(source, placements, flops, notes), cost_basis, region)
