"""Size and composition of a model: node and op counts, weight bytes by dtype and by the op type that reads them."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import onnx_ir as ir

from optimizer import io

__all__ = ["ModelStats"]


@dataclasses.dataclass
class ModelStats:
    """Size and composition of a model."""

    nodes: int
    op_counts: dict[str, int]
    initializer_bytes: int
    file_bytes: int | None = None
    weight_bytes_by_dtype: dict[str, int] = dataclasses.field(default_factory=dict)
    weight_bytes_by_op_type: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, model: ir.Model, path: str | os.PathLike | None = None) -> ModelStats:
        counts: dict[str, int] = {}
        # Model-local functions run too: their nodes count (next to the call node itself).
        for graph in (model.graph, *model.functions.values()):
            for node in ir.traversal.RecursiveGraphIterator(graph):
                key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
                counts[key] = counts.get(key, 0) + 1
        by_dtype = io.weight_bytes_by_dtype(model)
        file_bytes = io.model_file_bytes(model, path) if path is not None and Path(path).is_file() else None
        return cls(sum(counts.values()), dict(sorted(counts.items())), sum(by_dtype.values()), file_bytes, by_dtype, _weight_bytes_by_op_type(model))


def _weight_bytes_by_op_type(model: ir.Model) -> dict[str, int]:
    """Initializer bytes by the op type that reads them (the first reader by name when several types do)."""
    totals: dict[str, int] = {}
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is None:
                continue
            readers = sorted({use.node.op_type for use in value.uses()})
            key = readers[0] if readers else ("(graph output)" if value.is_graph_output() else "(unused)")
            totals[key] = totals.get(key, 0) + value.const_value.nbytes
    return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))
