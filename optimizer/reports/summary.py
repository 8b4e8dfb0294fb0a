"""The one-glance summary every report opens with (as onnxslim prints it): per model its interface
(inputs and outputs with dtypes and shapes, dynamic dims by name), IR version and opsets, the full op
histogram, the size on disk, and the seconds the command took.

`summarize_model` reads one model; `Summary` holds one column per model (run: before and after; check:
the model and its baseline; compare: A and B) and `rows()` gives the table every renderer prints.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.reports.record import Record
from optimizer.units import format_bytes, format_count, format_significant

if TYPE_CHECKING:
    import onnx_ir as ir

__all__ = ["PortRow", "ModelSummary", "Summary", "summarize_model", "summarize_file", "interface_rows", "format_port"]


@dataclasses.dataclass
class PortRow(Record):
    """One graph input or output: name, dtype, dims (ints, dim names, "?" when unnamed), dynamic or not."""

    name: str = ""
    dtype: str | None = None
    shape: list | None = None
    dynamic: bool = False


@dataclasses.dataclass
class ModelSummary(Record):
    """One model's column of the summary."""

    label: str = ""
    path: str | None = None
    ir_version: int | None = None
    opsets: dict[str, int] = dataclasses.field(default_factory=dict)
    inputs: list[PortRow] = dataclasses.field(default_factory=list)
    outputs: list[PortRow] = dataclasses.field(default_factory=list)
    op_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    nodes: int | None = None
    file_bytes: int | None = None


@dataclasses.dataclass
class Summary(Record):
    """The summary table: one column per model and the seconds the command took."""

    models: list[ModelSummary] = dataclasses.field(default_factory=list)
    seconds: float | None = None

    def rows(self) -> list[tuple[str, list[str]]]:
        """(label, one cell per model): model, IR, opsets, each input and output, each op type (all of
        them), nodes, size, elapsed time (in the first column only)."""
        models = self.models or []
        rows: list[tuple[str, list[str]]] = [("model", [m.path or "-" for m in models])]
        rows.append(("IR version", [str(m.ir_version) if m.ir_version is not None else "-" for m in models]))
        rows.append(("opsets", [", ".join(f"{d} {v}" for d, v in (m.opsets or {}).items()) or "-" for m in models]))
        for kind in ("inputs", "outputs"):
            names = list(dict.fromkeys(port.name for m in models for port in getattr(m, kind) or []))
            for name in names:
                cells = []
                for m in models:
                    port = next((p for p in getattr(m, kind) or [] if p.name == name), None)
                    cells.append(format_port(port) if port is not None else "-")
                rows.append((f"{kind[:-1]} {name}", cells))
        for op in sorted({op for m in models for op in m.op_counts or {}}):
            rows.append((op, [format_count((m.op_counts or {}).get(op, 0)) for m in models]))
        rows.append(("nodes", [format_count(m.nodes) if m.nodes is not None else "-" for m in models]))
        rows.append(("size", [format_bytes(m.file_bytes) for m in models]))
        if self.seconds is not None:
            rows.append(("elapsed", [f"{format_significant(self.seconds)} s", *["" for _ in models[1:]]]))
        return rows


def format_port(port: PortRow) -> str:
    """`float32 [batch, 3, 224, 224]`; an unknown shape as `float32 (shape unknown)`."""
    dtype = port.dtype or "?"
    if port.shape is None:
        return f"{dtype} (shape unknown)"
    return f"{dtype} [" + ", ".join(str(d) for d in port.shape) + "]"


def interface_rows(values: Sequence[ir.Value]) -> list[dict]:
    """Name, dtype, dims (symbols as strings, "?" when unnamed) and whether dynamic, per value."""
    rows = []
    for value in values:
        dims = None if value.shape is None else [d if isinstance(d, int) else (str(d) if d is not None and str(d) else "?") for d in value.shape]
        rows.append({
            "name": value.name,
            "dtype": value.dtype.name.lower() if value.dtype is not None else None,
            "shape": dims,
            "dynamic": dims is None or any(not isinstance(d, int) for d in dims),
        })
    return rows


def summarize_model(model: ir.Model, path: str | os.PathLike | None, label: str) -> dict:
    """One model's summary column as JSON-ready data (the size is the file's, external data included)."""
    from optimizer.stats import ModelStats

    initializers = set(model.graph.initializers)
    stats = ModelStats.of(model, path)
    return {
        "label": label,
        "path": str(path) if path is not None else None,
        "ir_version": model.ir_version,
        "opsets": {domain or "ai.onnx": version for domain, version in sorted(model.opset_imports.items())},
        "inputs": interface_rows([v for v in model.graph.inputs if v.name not in initializers]),
        "outputs": interface_rows(model.graph.outputs),
        "op_counts": stats.op_counts,
        "nodes": stats.nodes,
        "file_bytes": stats.file_bytes,
    }


def summarize_file(path: str | os.PathLike, label: str) -> dict | None:
    """The summary column of a model file (weights stay on disk); None when it cannot be read."""
    from optimizer import io

    try:
        return summarize_model(io.load(Path(path), validate=False), path, label)
    except Exception:  # noqa: BLE001 - the report stands without this column
        return None
