"""Dead code elimination: nodes whose outputs nobody reads, and initializers nobody uses.

Graph outputs and graph inputs are never removed; subgraphs are cleaned recursively.
"""

from __future__ import annotations

import collections

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from optimizer.pipeline import OptimizationPass

__all__ = ["EliminateDeadCodePass"]


def _count(model: ir.Model) -> tuple[int, int]:
    nodes = sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
    initializers = sum(len(g.initializers) for g in model.graphs())
    return nodes, initializers


class EliminateDeadCodePass(OptimizationPass, name="eliminate-dead-code", level="O1"):
    """Remove nodes whose outputs are unused and initializers nobody reads (subgraphs too)."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        nodes_before, inits_before = _count(model)
        RemoveUnusedNodesPass()(model)
        # onnx-ir cleans unused initializers of the main graph only; do subgraphs' as well.
        for graph in model.graphs():
            if graph is model.graph:
                continue
            for name, value in list(graph.initializers.items()):
                if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
                    del graph.initializers[name]
        nodes_after, inits_after = _count(model)
        return collections.Counter(nodes=nodes_before - nodes_after, initializers=inits_before - inits_after)
