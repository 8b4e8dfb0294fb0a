"""`optimize inspect`: what a model is made of and how much of its work could run in parallel.

The model's interface (inputs and outputs with their dynamic dims), opsets and domains, op histogram,
parameters by dtype, and `optimizer.analysis`' cost model: FLOPs and bytes moved per node and per op
type, the critical path, work, span, parallelism and the fork-join regions with their branches.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from optimizer import io
from optimizer.reports.summary import interface_rows

__all__ = ["Inspection", "inspect_model", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


@dataclasses.dataclass
class Inspection:
    """What `optimize inspect` reports about one model."""

    path: Path
    file_bytes: int
    ir_version: int
    producer: str
    opsets: dict[str, int]
    inputs: list[dict]
    outputs: list[dict]
    op_counts: dict[str, int]
    parameters: int
    weight_bytes_by_dtype: dict[str, int]
    input_shapes: dict[str, list[int]]
    analysis: object | None  # optimizer.analysis.GraphAnalysis
    analysis_error: str = ""

    def to_dict(self) -> dict:
        """A JSON-ready dict with the schema version."""
        return {
            "schema_version": SCHEMA_VERSION,
            "model": {
                "path": str(self.path),
                "file_bytes": self.file_bytes,
                "ir_version": self.ir_version,
                "producer": self.producer,
                "opsets": self.opsets,
                "inputs": self.inputs,
                "outputs": self.outputs,
                "op_counts": self.op_counts,
                "nodes": sum(self.op_counts.values()),
                "parameters": self.parameters,
                "weight_bytes_by_dtype": self.weight_bytes_by_dtype,
            },
            "input_shapes": self.input_shapes,
            "analysis": self.analysis.to_dict() if self.analysis is not None else None,
            "analysis_error": self.analysis_error or None,
        }


def inspect_model(path: str | os.PathLike, input_shapes: Mapping[str, Sequence[int]] | None = None) -> Inspection:
    """Load (validated) and describe a model; the analysis binds dynamic dims by `input_shapes`, else defaults.

    Raises io.ModelInputError for a bad file and ValueError for an `input_shapes` name that is no input.
    """
    from optimizer.analysis import analyze
    from optimizer.stats import ModelStats

    path = Path(path)
    model = io.load(path)
    counts = ModelStats.of(model).op_counts
    names = {v.name for v in model.graph.inputs}
    unknown = sorted(set(input_shapes or {}) - names)
    if unknown:
        raise ValueError(f"--input-shape names no graph input: {', '.join(unknown)} (inputs: {', '.join(sorted(names))})")
    analysis, error = None, ""
    try:
        analysis = analyze(model, input_shapes)
    except Exception as failure:  # noqa: BLE001 - the description stands without the cost model
        error = f"{type(failure).__name__}: {failure}".splitlines()[0]
    initializers = set(model.graph.initializers)
    return Inspection(
        path=path,
        file_bytes=io.model_file_bytes(model, path),
        ir_version=model.ir_version,
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
        opsets={domain or "ai.onnx": version for domain, version in sorted(model.opset_imports.items())},
        inputs=interface_rows([v for v in model.graph.inputs if v.name not in initializers]),
        outputs=interface_rows(model.graph.outputs),
        op_counts=dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
        parameters=io.parameter_count(model),
        weight_bytes_by_dtype=io.weight_bytes_by_dtype(model),
        input_shapes={k: list(v) for k, v in (input_shapes or {}).items()},
        analysis=analysis,
        analysis_error=error,
    )
