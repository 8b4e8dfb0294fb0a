"""`partition()`: load a model, analyse it, plan the parts, extract them and write the partition folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from optimizer.partition.errors import PartitionError
from optimizer.partition.extract import extract_part
from optimizer.partition.manifest import STRATEGIES, Manifest, Part, check_out_dir, sha256_of, write_partition
from optimizer.partition.plan import plan_parts
from optimizer.partition.source import SourceGraph
from optimizer.verify import first_line

__all__ = ["partition"]

logger = logging.getLogger(__name__)


def _check_request(strategy: str, parts: int) -> None:
    """Refuse an unknown strategy or a part count that is no whole number >= 1."""
    if strategy not in STRATEGIES:
        raise PartitionError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise PartitionError(f"parts must be a whole number >= 1, got {parts!r}")


def _load_source(model_path: Path, notes: list[str]) -> SourceGraph:
    """The model's main graph indexed and topologically sorted (sorted in place when it was not)."""
    from optimizer import io

    try:
        model = io.load(model_path)
    except io.ModelInputError as error:
        raise PartitionError(str(error)) from None
    source = SourceGraph.of(model)  # refuses a graph it cannot order, before any work
    if source.order != list(range(len(source.nodes))):
        model.graph.sort()
        source = SourceGraph.of(model)
        notes.append("the source graph was not in topological order: the parts are sorted")
    if all(source.constant):
        raise PartitionError(f"{model_path}: the graph has no nodes to partition")
    return source


def _analyze(source: SourceGraph, model_path: Path, input_shapes: Mapping[str, Sequence[int]] | None):
    """The graph analysis of the source (its costs and regions); PartitionError when it cannot be made."""
    from optimizer.analysis import analyze

    try:
        analysis = analyze(source.model, input_shapes)
    except ValueError as error:
        raise PartitionError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - a model the analysis cannot take
        raise PartitionError(f"{model_path}: the graph analysis cannot handle this model: {first_line(error)}") from None
    if len(analysis.nodes) != len(source.nodes):
        raise PartitionError("internal error: the analysis and the graph disagree on the nodes")
    return analysis


def partition(
    model_path: str | os.PathLike,
    parts: int,
    out_dir: str | os.PathLike,
    *,
    strategy: str = "pipeline",
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Manifest:
    """Cut the model at `model_path` into parts written to `out_dir` (see `optimizer.partition`).

    `parts` is the number of pipeline stages, or of concurrent branch groups (head and tail come on
    top). `input_shapes` binds dynamic input dims for the cost model only; the parts keep them dynamic.
    """
    from optimizer.graph.shapes import infer_shapes

    _check_request(strategy, parts)
    model_path, out_dir = Path(model_path), Path(out_dir)
    check_out_dir(out_dir)
    notes: list[str] = []
    source = _load_source(model_path, notes)
    analysis = _analyze(source, model_path, input_shapes)
    infer_shapes(source.model)
    plan = plan_parts(source, analysis, strategy, parts, notes)

    graph = source.model.graph
    stem = graph.name or "graph"
    extracted = (  # lazy: one part model at a time, extracted as it is written
        (Part(f"part-{k:02d}.onnx", p.role, p.step, p.inputs, p.outputs, p.flops, len(p.keep)),
         extract_part(source, p, f"{stem}-part-{k:02d}"))
        for k, p in enumerate(plan.parts)
    )
    manifest = write_partition(
        out_dir,
        extracted,
        strategy=strategy,
        source_path=str(model_path.resolve()),
        source_sha256=sha256_of(model_path),
        inputs=[v.name for v in graph.inputs if not v.is_initializer()],
        outputs=[v.name for v in graph.outputs],
        cost_basis=plan.cost_basis,
        region=plan.region,
        notes=notes,
    )
    logger.info("partitioned %s into %d parts (%s): %s", model_path, len(manifest.parts), strategy, manifest.schedule)
    return manifest
