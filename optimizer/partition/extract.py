"""Sub-models: a clone of the source model holding only one part's nodes, cut where the plan says.

Values produced by earlier parts become graph inputs; the part keeps the source's opset imports, IR
version and functions, the graph inputs and initializers its nodes read, and the types shape
inference gave the values where the graph is cut. Subgraph nodes (If/Loop/Scan) come whole.
"""

from __future__ import annotations

import onnx_ir as ir

from optimizer.partition.errors import PartitionError
from optimizer.partition.plan import PlannedPart
from optimizer.partition.source import SourceGraph

__all__ = ["extract_part"]


def extract_part(source: SourceGraph, part: PlannedPart, name: str) -> ir.Model:
    """A clone of the source holding only the nodes `part.keep`; `part.boundary` values become graph inputs."""
    keep, boundary, outputs = part.keep, part.boundary, part.outputs
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

