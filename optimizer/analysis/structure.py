"""The parallel structure of a graph: its dependency DAG, work and span, fork-join regions.

The DAG has a vertex per main-graph node (Constant nodes aside) and per non-initializer graph input;
its edges go from producers, including values that a node's subgraphs read from the outer scope.

- work = the sum of node FLOPs; span = the FLOPs of the costliest path (ties: the longer path in
  nodes); parallelism = work / span (1.0 for a chain, and when work == 0).
- regions: for every graph input or non-constant node with two or more consumers (a fork), its
  immediate post-dominator (the join; "(graph outputs)" when the branches only meet at the outputs);
  the nodes strictly between them, split into connected components, are the branches. Where some
  consumers meet earlier (Q and K at Q.K^T before V joins at P.V), that inner join is a region too.
  A region is reported when at least two of its branches cost at least 0.1% of the work (and more
  than 0 FLOPs); all its branches are listed.
- inter_op_speedup_bound = work / T, where T = the costliest path when nodes below 0.1% of the work
  cost nothing, plus the sum of those small nodes' FLOPs. Small nodes are taken to run one after the
  other (handing a tiny node to another thread costs more than it saves), large ones in parallel
  with unlimited threads. It lies between 1.0 and `parallelism`; close to 1.0, inter-op threads and
  the parallel execution mode have nothing to gain.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence

import onnx_ir as ir

from optimizer.order import order_by_depth, topological_order

__all__ = ["OUTPUTS_JOIN", "Parallelism", "Region", "outer_reads", "parallelism_of"]

logger = logging.getLogger(__name__)

OUTPUTS_JOIN = "(graph outputs)"
"""The `join` of a region whose branches meet only at the graph's outputs."""

_SMALL_NODE_FRACTION = 1e-3
_STANDARD = ("", "ai.onnx")


@dataclasses.dataclass
class Region:
    """A fork-join region: `fork` (a graph input or node name) fans out into branches meeting at `join`."""

    fork: str
    join: str
    branches: list[dict]  # each {"nodes": [node names in topological order], "flops": float}



@dataclasses.dataclass
class Parallelism:
    """How much of a graph's work can run in parallel (see the module docstring)."""

    span_flops: float
    parallelism: float
    critical_path: list[str]  # node names
    regions: list[Region]
    inter_op_speedup_bound: float


@dataclasses.dataclass
class _Dag:
    """Vertices: the main graph's nodes (Constant nodes aside) then its non-initializer inputs."""

    names: list[str]
    costs: list[float]
    preds: list[list[int]]
    succs: list[list[int]]
    is_node: list[bool]
    live: list[bool]  # depends on a graph input: a possible fork
    to_sink: list[bool]  # feeds a graph output or nothing at all
    order: list[int]  # topological


def outer_reads(node: ir.Node) -> Iterable[ir.Value]:
    """Values a node's subgraphs (recursively) read; callers keep those of the graph they look at."""
    for attr in node.attributes.values():
        if attr.is_ref() or attr.type not in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
            continue
        for graph in attr.value if attr.type == ir.AttributeType.GRAPHS else [attr.value]:
            for inner in ir.traversal.RecursiveGraphIterator(graph):
                for value in inner.inputs:
                    if value is not None:
                        yield value


def _build_dag(graph: ir.Graph, nodes: list[ir.Node], names: list[str], flops: list[float]) -> _Dag:
    """The DAG of the main graph's nodes (costing `flops`) and inputs, in a topological order by depth."""
    vertex: dict[int, int] = {}
    dag_names, dag_costs, is_node = [], [], []
    for node, name, node_flops in zip(nodes, names, flops):
        if node.op_type == "Constant" and node.domain in _STANDARD:
            continue
        vertex[id(node)] = len(dag_names)
        dag_names.append(name)
        dag_costs.append(node_flops)
        is_node.append(True)
    source: dict[int, int] = {}
    for value in graph.inputs:
        if not value.is_initializer():
            source[id(value)] = len(dag_names)
            dag_names.append(value.name)
            dag_costs.append(0.0)
            is_node.append(False)
    size = len(dag_names)
    preds: list[set[int]] = [set() for _ in range(size)]

    def origin(value: ir.Value | None) -> int | None:
        if value is None:
            return None
        producer = value.producer()
        if producer is not None:
            return vertex.get(id(producer))
        return source.get(id(value))

    for node in nodes:
        v = vertex.get(id(node))
        if v is None:
            continue
        for value in (*node.inputs, *outer_reads(node)):
            u = origin(value)
            if u is not None and u != v:
                preds[v].add(u)
    succs: list[list[int]] = [[] for _ in range(size)]
    for v in range(size):
        for u in sorted(preds[v]):
            succs[u].append(v)
    to_sink = [not s for s in succs]
    for value in graph.outputs:
        u = origin(value)
        if u is not None:
            to_sink[u] = True
    pred_lists = [sorted(p) for p in preds]
    order = order_by_depth(topological_order(pred_lists), pred_lists)
    if len(order) < size:
        logger.warning("graph has a cycle; %d nodes left out of the path analysis", size - len(order))
    live = [not is_node[v] for v in range(size)]
    for v in order:
        live[v] = live[v] or any(live[u] for u in preds[v])
    return _Dag(dag_names, dag_costs, pred_lists, succs, is_node, live, to_sink, order)


def _longest_path(dag: _Dag, costs: list[float]) -> tuple[float, list[int]]:
    """The costliest path under `costs` (ties: more vertices) and its vertices."""
    best: list[tuple[float, int] | None] = [None] * len(costs)
    back: list[int] = [-1] * len(costs)
    for v in dag.order:
        key, via = (0.0, 0), -1
        for u in dag.preds[v]:
            if best[u] is not None and best[u] > key:
                key, via = best[u], u
        best[v] = (key[0] + costs[v], key[1] + 1)
        back[v] = via
    reached = [v for v in dag.order if best[v] is not None]
    if not reached:
        return 0.0, []
    end = max(reached, key=lambda v: best[v])
    path = []
    while end != -1:
        path.append(end)
        end = back[end]
    return best[path[0]][0], path[::-1]


def _post_dominators(dag: _Dag) -> tuple[list[int], list[int]]:
    """Immediate post-dominators and post-dominator tree depths; index len(vertices) is the virtual sink."""
    sink = len(dag.names)
    ipdom = [sink] * (sink + 1)
    depth = [-1] * (sink + 1)
    ipdom[sink], depth[sink] = sink, 0
    for v in reversed(dag.order):
        targets = [w for w in dag.succs[v] if depth[w] >= 0]
        if dag.to_sink[v]:
            targets.append(sink)
        if not targets:
            targets = [sink]
        join = targets[0]
        for w in targets[1:]:
            a, b = join, w
            while a != b:
                if depth[a] >= depth[b]:
                    a = ipdom[a]
                else:
                    b = ipdom[b]
            join = a
        ipdom[v], depth[v] = join, depth[join] + 1
    return ipdom, depth


def _joins(fork: int, dag: _Dag, ipdom: list[int]) -> list[tuple[int, list[int]]]:
    """The places where the fork's consumers meet again, each with the consumers meeting there: every
    vertex where two consumers' post-dominator chains first meet, up to `ipdom[fork]`."""
    outer, sink = ipdom[fork], len(dag.names)
    seen: set[int] = set()
    members: dict[int, list[int]] = {}
    for start in dag.succs[fork]:
        v = start
        while v not in seen:
            seen.add(v)
            if v in (outer, sink):
                break
            v = ipdom[v]
        else:
            members.setdefault(v, [])  # another consumer's chain got here first
    for start in dag.succs[fork]:
        v = start
        while True:
            if v in members:
                members[v].append(start)
            if v in (outer, sink):
                break
            v = ipdom[v]
    return list(members.items())


def _branches(starts: list[int], join: int, dag: _Dag, position: dict[int, int]) -> list[list[int]]:
    """The vertices reachable from `starts` before `join`, split into connected components."""
    interior: set[int] = set()
    stack = [v for v in starts if v != join]
    while stack:
        v = stack.pop()
        if v in interior:
            continue
        interior.add(v)
        stack.extend(w for w in dag.succs[v] if w != join and w not in interior)
    parent = {v: v for v in interior}

    def find(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for v in interior:
        for w in dag.succs[v]:
            if w in interior:
                parent[find(v)] = find(w)
    groups: dict[int, list[int]] = {}
    for v in sorted(interior, key=position.__getitem__):
        groups.setdefault(find(v), []).append(v)
    return list(groups.values())


def _regions(dag: _Dag, significant: float) -> list[Region]:
    """Fork-join regions with at least two branches costing more than `significant` FLOPs (and more
    than 0), in topological order of the fork."""
    sink = len(dag.names)
    ipdom, _ = _post_dominators(dag)
    position = {v: i for i, v in enumerate(dag.order)}
    position.update({v: len(position) + i for i, v in enumerate(v for v in range(sink + 1) if v not in position)})
    regions, found = [], set()
    for fork in dag.order:
        if len(dag.succs[fork]) < 2 or not dag.live[fork]:
            continue
        for join, starts in sorted(_joins(fork, dag, ipdom), key=lambda item: position[item[0]]):
            groups = _branches(starts, join, dag, position)
            flops = [float(sum(dag.costs[v] for v in members)) for members in groups]
            key = (join, frozenset(v for members in groups for v in members))
            if sum(1 for f in flops if f > 0 and f >= significant) < 2 or key in found:
                continue
            found.add(key)
            branches = [{"nodes": [dag.names[v] for v in members], "flops": f} for members, f in zip(groups, flops)]
            regions.append(Region(dag.names[fork], OUTPUTS_JOIN if join == sink else dag.names[join], branches))
    return regions


def parallelism_of(graph: ir.Graph, nodes: Sequence[ir.Node], names: Sequence[str], flops: Sequence[float]) -> Parallelism:
    """Work/span, the speedup bound and the regions of the main graph `graph`, whose `nodes` (named
    `names`) cost `flops` each."""
    work = float(sum(flops))
    dag = _build_dag(graph, list(nodes), list(names), list(flops))
    span, path = _longest_path(dag, dag.costs)
    parallelism = max(1.0, work / span) if work > 0 and span > 0 else 1.0
    small = _SMALL_NODE_FRACTION * work
    large_span, _ = _longest_path(dag, [c if c >= small else 0.0 for c in dag.costs])
    serial = large_span + sum(c for c in dag.costs if c < small)
    bound = min(parallelism, max(1.0, work / serial)) if work > 0 and serial > 0 else 1.0
    return Parallelism(
        span_flops=float(span),
        parallelism=parallelism,
        critical_path=[dag.names[v] for v in path if dag.is_node[v]],
        regions=_regions(dag, small),
        inter_op_speedup_bound=bound,
    )
