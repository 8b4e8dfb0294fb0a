"""Output pruning: keep only some graph outputs and remove what only the others needed.

The named outputs stay in their original order; nodes and initializers that no longer contribute
to a kept output are removed by the dead-code pass. Graph inputs stay, even when nothing reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir

from passes.cleanup.dead_code import EliminateDeadCodePass

__all__ = ["prune_outputs"]


def prune_outputs(model: ir.Model, keep: Sequence[str]) -> dict[str, int]:
    """Keep only the graph outputs named in `keep` (in place); returns the counts of what went.

    Raises ValueError when `keep` is empty or names an output the graph does not have.
    """
    if isinstance(keep, str):
        keep = [keep]
    wanted = set(keep)
    if not wanted:
        raise ValueError("prune_outputs: keep at least one output")
    available = [value.name for value in model.graph.outputs]
    unknown = [name for name in dict.fromkeys(keep) if name not in available]
    if unknown:
        raise ValueError(f"prune_outputs: unknown output(s) {', '.join(map(repr, unknown))}; the graph's outputs are {', '.join(map(repr, available))}")
    outputs = model.graph.outputs
    removed = 0
    for index in reversed(range(len(outputs))):
        if outputs[index].name not in wanted:
            outputs.pop(index)
            removed += 1
    dead_code = EliminateDeadCodePass()
    dead_code(model)
    return {
        "outputs_removed": removed,
        "nodes_removed": dead_code.stats.get("nodes", 0),
        "initializers_removed": dead_code.stats.get("initializers", 0),
    }
