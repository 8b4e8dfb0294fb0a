"""The main graph of a model to partition, indexed: what each node reads, who produces what, an order.

Node positions are those of `list(graph)`. A node's reads include the main-graph values its
subgraphs (If/Loop/Scan bodies) read from the outer scope. Constant nodes are marked: partitioning
copies them into the parts that read them instead of placing them.
"""

from __future__ import annotations

import dataclasses

import onnx_ir as ir

from optimizer.analysis.structure import outer_reads
from optimizer.order import topological_order, unordered
from optimizer.partition.errors import PartitionError

__all__ = ["SourceGraph"]

_STANDARD = ("", "ai.onnx")


@dataclasses.dataclass
class SourceGraph:
    """The main graph of the source model, indexed: node positions are those of `list(graph)`."""

    model: ir.Model
    nodes: list[ir.Node]
    reads: list[list[ir.Value]]  # main-graph values each node reads, its subgraphs' included
    producer: dict[int, int]  # id(value) -> index of the node producing it
    order: list[int]  # topological
    constant: list[bool]

    @classmethod
    def of(cls, model: ir.Model) -> SourceGraph:
        """Index the model's main graph; PartitionError when its nodes cannot be ordered."""
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
        return cls(model, nodes, reads, producer, _node_order(nodes, reads, producer), constant)

    def producer_of(self, value: ir.Value) -> int | None:
        """The index of the node producing `value`; None for graph inputs and initializers."""
        return self.producer.get(id(value))


def _node_order(nodes: list[ir.Node], reads: list[list[ir.Value]], producer: dict[int, int]) -> list[int]:
    """A topological order, the stored one where it already is; PartitionError on a cycle."""
    preds = []
    for i, values in enumerate(reads):
        before = sorted({producer[id(v)] for v in values if id(v) in producer})
        if i in before:
            raise PartitionError(f"node {nodes[i].name or nodes[i].op_type!r} reads its own output: the graph cannot be ordered")
        preds.append(before)
    order = topological_order(preds)
    left_out = unordered(order, len(nodes))
    if left_out:
        stuck = nodes[left_out[0]]
        raise PartitionError(f"the graph has a cycle (through {stuck.name or stuck.op_type!r}): its nodes cannot be ordered")
    return order
