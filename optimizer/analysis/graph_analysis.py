"""`analyze()`: the cost of every node of a model's main graph and the parallelism of its work.

It works on a clone of the model (tensors shared, nothing of the caller's model changes): dynamic
input dims are bound (`optimizer.analysis.shapes`), shapes are inferred, every node of the main graph
is costed (`optimizer.analysis.cost`) and the dependency DAG measured (`optimizer.analysis.structure`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import onnx_ir as ir

from optimizer.analysis.cost import NodeCost, cost_of
from optimizer.analysis.shapes import bind_inputs, infer_static_shapes
from optimizer.analysis.structure import Region, parallelism_of

__all__ = ["GraphAnalysis", "analyze", "inter_op_speedup_of"]

logger = logging.getLogger(__name__)

_SUMMARY_FIELDS = ("work_flops", "span_flops", "parallelism", "inter_op_speedup_bound", "unknown_cost_nodes")


@dataclasses.dataclass
class GraphAnalysis:
    """Costs of the main graph's nodes and how much of the work can run in parallel."""

    nodes: list[NodeCost]
    by_op_type: dict[str, dict]
    work_flops: float
    span_flops: float
    parallelism: float
    critical_path: list[str]
    regions: list[Region]
    inter_op_speedup_bound: float
    unknown_cost_nodes: int

    def to_dict(self) -> dict:
        """A JSON-ready dict (plain lists, dicts, strings and numbers): the summary figures first."""
        regions = [
            {"fork": r.fork, "join": r.join, "branches": [{"nodes": list(b["nodes"]), "flops": b["flops"]} for b in r.branches]}
            for r in self.regions
        ]
        return {
            **{name: getattr(self, name) for name in _SUMMARY_FIELDS},
            "critical_path": list(self.critical_path),
            "regions": regions,
            "by_op_type": {op: dict(stats) for op, stats in self.by_op_type.items()},
            "nodes": [dataclasses.asdict(n) for n in self.nodes],
        }


def _by_op_type(costs: Sequence[NodeCost]) -> dict[str, dict]:
    """Count, FLOPs and bytes moved per op type, in order of first appearance."""
    by_op_type: dict[str, dict] = {}
    for cost in costs:
        stats = by_op_type.setdefault(cost.op_type, {"count": 0, "flops": 0.0, "bytes_moved": 0.0})
        stats["count"] += 1
        stats["flops"] += cost.flops
        stats["bytes_moved"] += cost.bytes_moved
    return by_op_type


def analyze(model: ir.Model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> GraphAnalysis:
    """Cost the main graph of (a clone of) `model` and measure its parallelism; see the package docstring.

    `input_shapes` binds graph inputs by name (ValueError for a name that is no graph input); other
    dynamic dims get the defaults. The caller's model is not modified.
    """
    clone = model.clone()
    bind_inputs(clone.graph, input_shapes or {})
    infer_static_shapes(clone)
    graph = clone.graph
    nodes = list(graph)
    names = [node.name or f"{node.op_type}_{i}" for i, node in enumerate(nodes)]
    costs = [cost_of(node, name) for node, name in zip(nodes, names)]
    structure = parallelism_of(graph, nodes, names, [c.flops for c in costs])
    unknown = sum(1 for c in costs if not c.known)
    if unknown:
        logger.info("%d of %d nodes have no cost estimate (unknown op or missing shapes)", unknown, len(costs))
    return GraphAnalysis(
        nodes=costs,
        by_op_type=_by_op_type(costs),
        work_flops=float(sum(c.flops for c in costs)),
        span_flops=structure.span_flops,
        parallelism=structure.parallelism,
        critical_path=structure.critical_path,
        regions=structure.regions,
        inter_op_speedup_bound=structure.inter_op_speedup_bound,
        unknown_cost_nodes=unknown,
    )


def inter_op_speedup_of(model: ir.Model) -> float | None:
    """What parallel execution could give on this graph (the analysis' bound); None when unknown."""
    try:
        return analyze(model).inter_op_speedup_bound
    except Exception as error:  # noqa: BLE001 - the analysis is advice; tuning goes on without it
        logger.info("graph analysis failed (%s); parallel execution stays in the search", error)
        return None
