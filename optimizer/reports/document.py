"""The report document: one JSON-ready dict per command (`run`, `check`, `compare`).

Every rendering (`--json`, `--report out.json|.md|.html`) is made from this dict and nothing else, so
the JSON a CI job parses and the page a person reads always say the same thing. The keys are
documented in the README ("Reports").
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

import onnx_ir as ir

from optimizer import __version__

SCHEMA_VERSION = 2
"""Of `--json` and reports. 2 added `kind`, `tool`, `created`, `machine`, `analysis`, `profile` and weight bytes by op type."""

__all__ = ["SCHEMA_VERSION", "header", "optimization_document", "analysis_summary"]

TOP_NODES = 10


def header(kind: str) -> dict:
    """What every document starts with: the schema, the command kind, the tool versions, when and where it ran."""
    import onnx
    import onnxruntime

    from optimizer.measure import machine_info

    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "tool": {"optimize": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
    }


def analysis_summary(model: ir.Model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> dict:
    """The cost model's figures for a report: work, span, parallelism, regions, FLOPs by op type and the costliest nodes.

    Per-node rows are cut to the TOP_NODES costliest (`optimize inspect --json` has them all). A model
    the cost model cannot handle gives `{"error": ...}` rather than failing the report.
    """
    from optimizer.analysis import analyze

    try:
        analysis = analyze(model, input_shapes)
    except Exception as error:  # noqa: BLE001 - the report stands without the cost model
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
    summary = analysis.to_dict()
    nodes = summary.pop("nodes")
    summary["top_nodes"] = sorted(nodes, key=lambda n: -(n.get("flops") or 0))[:TOP_NODES]
    summary["critical_path_length"] = len(summary.pop("critical_path"))
    return summary


def optimization_document(result, *, analysis: dict | None = None, profile: dict | None = None) -> dict:
    """The `run` command's document: `OptimizationResult.to_dict()` under the common header, plus the
    optimized graph's analysis and its profile under the shipped settings when they were made."""
    body = result.to_dict()
    body.pop("schema_version", None)
    return {**header("optimize"), **body, "analysis": analysis, "profile": profile}
