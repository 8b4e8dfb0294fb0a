"""If with a constant condition: the taken branch is inlined, the other dropped.

`y = If(c = const){then: ...; else: ...}  =>  nodes of the taken branch, y = its output`.
Branch initializers move to the enclosing graph (renamed if a name is taken); so do branch nodes and
the values they compute whose names the enclosing graph already uses (onnxruntime refuses a graph
with two nodes of one name, and ONNX wants every value name defined once across nested graphs).
"""

from __future__ import annotations

import collections

import onnx_ir as ir

from optimizer.pipeline import OptimizationPass
from optimizer.graph.editing import replace_value, unique_initializer_name
from optimizer.graph.matching import is_op
from optimizer.graph.values import constant_array

__all__ = ["InlineConstantIfPass"]


def _fresh(base: str, taken: set[str]) -> str:
    name, n = f"{base}_inlined", 1
    while name in taken:
        n += 1
        name = f"{base}_inlined_{n}"
    taken.add(name)
    return name


def _rename_clashes(graph: ir.Graph, moved: list[ir.Node]) -> None:
    """Give the branch nodes about to move into `graph`, and the values they compute, fresh names where
    `graph` (or a graph nested in it) already uses theirs."""
    node_names = {n.name for n in graph if n.name}
    value_names = {v.name for v in (*graph.inputs, *graph.initializers.values()) if v.name}
    for inner in ir.traversal.RecursiveGraphIterator(graph):
        value_names.update(v.name for v in inner.outputs if v.name)
    for node in moved:
        if node.name and node.name in node_names:
            node.name = _fresh(node.name, node_names)
        elif node.name:
            node_names.add(node.name)
        for value in node.outputs:
            if value.name and value.name in value_names:
                value.name = _fresh(value.name, value_names)
            elif value.name:
                value_names.add(value.name)


class InlineConstantIfPass(OptimizationPass, name="inline-constant-if", level="O1"):
    """Replace an If whose condition is a constant by the nodes of the branch it takes."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            if not is_op(node, "If") or node.graph is None:
                continue
            condition = constant_array(node.inputs[0])
            if condition is None or condition.size != 1:
                continue
            branch_attr = node.attributes.get("then_branch" if bool(condition.reshape(-1)[0]) else "else_branch")
            if branch_attr is None or branch_attr.is_ref():
                continue
            branch = branch_attr.as_graph()
            if len(branch.outputs) != len(node.outputs):
                self.decline("branch output count differs from the If's")
                continue
            self._inline(node, branch)
            counts["If"] += 1
        return counts

    @staticmethod
    def _inline(node: ir.Node, branch: ir.Graph) -> None:
        graph = node.graph
        for name, value in list(branch.initializers.items()):
            del branch.initializers[name]
            value.name = unique_initializer_name(graph, name)
            graph.register_initializer(value)
        results = list(branch.outputs)
        branch.outputs.clear()
        moved = list(branch)
        branch.remove(moved)
        _rename_clashes(graph, moved)
        graph.insert_before(node, moved)
        for output, result in zip(node.outputs, results):
            replace_value(output, result, graph, anchor=node)
        graph.remove(node, safe=True)
