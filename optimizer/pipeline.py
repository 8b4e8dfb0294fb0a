"""Pass base class and the pipeline that runs passes to a fixed point, recording what each did.

A pass subclasses `OptimizationPass`, names itself (`name`, `level`, `description`) and implements
`apply(model) -> Counter` of what it changed; it mutates the model in place. The `Pipeline` runs its
passes in order, round after round, until a round changes nothing, and keeps a `PassRecord` for
every pass run. A pass that raises is reported as `PassFailedError` naming it and the passes before it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import ClassVar

import onnx_ir as ir

__all__ = ["OptimizationPass", "PassOptions", "PassRecord", "PassFailedError", "Pipeline"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PassOptions:
    """Knobs that passes read; one object so the registry can build any pass the same way."""

    fold_max_bytes: int = 1024 * 1024
    """A constant fold whose outputs exceed this many bytes..."""
    fold_max_growth: float = 2.0
    """...and exceed this multiple of its constant inputs' bytes is refused (no model bloat)."""


class OptimizationPass(ir.passes.InPlacePass):
    """One kind of rewrite. Subclasses set the class attributes and implement `apply`."""

    name: ClassVar[str]
    level: ClassVar[str] = "O1"
    description: ClassVar[str]
    needs_shapes: ClassVar[bool] = False

    def __init__(self, options: PassOptions | None = None) -> None:
        super().__init__()
        self.options = options or PassOptions()
        self.stats: collections.Counter[str] = collections.Counter()
        self.declined: collections.Counter[str] = collections.Counter()
        """Matches the pass looked at and left alone, by reason (not modifications)."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        """Rewrite `model` in place and return a count of the changes by kind."""
        raise NotImplementedError

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.declined = collections.Counter()
        self.stats = collections.Counter({k: v for k, v in self.apply(model).items() if v})
        if self.stats:
            logger.info("%s: %s", self.name, dict(self.stats))
        return ir.passes.PassResult(model, modified=bool(self.stats))


@dataclasses.dataclass
class PassRecord:
    """What one run of one pass did."""

    name: str
    round: int
    changes: dict[str, int]
    seconds: float
    declined: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def modified(self) -> bool:
        return bool(self.changes)


class PassFailedError(RuntimeError):
    """A pass raised; names the pass and what ran before it."""

    def __init__(self, pass_name: str, ran_before: Sequence[str], cause: BaseException) -> None:
        before = ", ".join(dict.fromkeys(ran_before)) or "none"
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        super().__init__(f"pass '{pass_name}' failed ({type(cause).__name__}: {first}); passes run before it: {before}")
        self.pass_name = pass_name
        self.cause = cause


class Pipeline:
    """Runs passes in order, repeating the whole sequence until nothing changes (or `max_rounds`)."""

    def __init__(self, passes: Sequence[OptimizationPass], *, max_rounds: int = 8) -> None:
        self.passes = list(passes)
        self.max_rounds = max_rounds

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def run(self, model: ir.Model) -> list[PassRecord]:
        from optimizer.graph.shapes import infer_shapes

        records: list[PassRecord] = []
        for round_number in range(1, self.max_rounds + 1):
            changed = False
            shapes_fresh = False
            for optimization in self.passes:
                if optimization.needs_shapes and not shapes_fresh:
                    infer_shapes(model)
                    shapes_fresh = True
                start = time.perf_counter()
                try:
                    result = optimization(model)
                except Exception as error:  # noqa: BLE001 - any failure is attributed to the pass
                    raise PassFailedError(optimization.name, [r.name for r in records], error) from error
                records.append(
                    PassRecord(
                        optimization.name,
                        round_number,
                        dict(optimization.stats),
                        time.perf_counter() - start,
                        dict(optimization.declined),
                    )
                )
                if result.modified:
                    changed = True
                    shapes_fresh = False
            if not changed:
                break
        make_value_names_unique(model)
        return records


def make_value_names_unique(model: ir.Model) -> int:
    """Rename values that a subgraph defines under a name already defined outside it (or earlier in it).

    Rewrites name new values per graph (`val_0`, ...), so fusions in the main graph and in an If
    branch can define one name twice, which ONNX forbids and onnxruntime refuses. The main graph is
    visited first and keeps its names (its inputs and outputs are the interface); only clashing
    values inside subgraphs are renamed. Returns how many were renamed.
    """
    seen: set[str] = set()
    renamed = 0

    def fresh(name: str) -> str:
        index = 1
        while f"{name}__{index}" in seen:
            index += 1
        return f"{name}__{index}"

    def visit(graph: ir.Graph) -> None:
        nonlocal renamed
        defined = [*graph.inputs, *graph.initializers.values(), *(output for node in graph for output in node.outputs)]
        for value in defined:
            if not value.name:
                continue
            if value.name in seen and graph is not model.graph:
                value.name = fresh(value.name)
                renamed += 1
            seen.add(value.name)
        for node in graph:
            for attribute in node.attributes.values():
                if attribute.is_ref():
                    continue
                if attribute.type == ir.AttributeType.GRAPH:
                    visit(attribute.value)
                elif attribute.type == ir.AttributeType.GRAPHS:
                    for subgraph in attribute.value:
                        visit(subgraph)

    visit(model.graph)
    return renamed
