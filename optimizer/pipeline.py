"""Pass base class and the pipeline that runs passes to a fixed point, recording what each did.

A pass subclasses `OptimizationPass`, names itself (`name`, `level`, `description`) and implements
`apply(model) -> Counter` of what it changed; it mutates the model in place, and counts the matches it
left alone by reason (`Decline`). A pass states its preconditions (`preconditions`, e.g. `NEEDS_SHAPES`) and
postconditions (`postconditions`, `INTERFACE_UNCHANGED` by default): the `Pipeline` establishes the first
before the pass runs and checks the second after it. It runs its passes in order, round after round,
until a round changes nothing, and keeps a `PassRecord` for every pass run. A pass that raises, or
breaks a postcondition, is reported as `PassFailedError` naming it and the passes before it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import ClassVar

import onnx_ir as ir

__all__ = [
    "Decline",
    "INTERFACE_UNCHANGED",
    "InterfaceChangedError",
    "NEEDS_SHAPES",
    "OUTPUTS_UNCHANGED",
    "OptimizationPass",
    "PassOptions",
    "PassRecord",
    "PassFailedError",
    "Pipeline",
    "interface_of",
]

logger = logging.getLogger(__name__)


NEEDS_SHAPES = "needs shapes"
"""Precondition: values carry inferred types and shapes (the pipeline runs shape inference first)."""
INTERFACE_UNCHANGED = "interface unchanged"
"""Postcondition: graph input and output names, order and types are what they were."""
OUTPUTS_UNCHANGED = "outputs unchanged"
"""Postcondition for a pass allowed to drop graph inputs: graph output names, order and types stay."""


class Decline(Exception):
    """Raised by a rule or a pass's helper to leave a candidate alone; the message is the reason counted."""

    @property
    def reason(self) -> str:
        return str(self)


class InterfaceChangedError(RuntimeError):
    """A pass broke its `INTERFACE_UNCHANGED` or `OUTPUTS_UNCHANGED` postcondition."""


@dataclasses.dataclass(frozen=True)
class PassOptions:
    """Knobs that passes read; one object so the registry can build any pass the same way."""

    fold_max_bytes: int = 1024 * 1024
    """A constant fold whose outputs exceed this many bytes..."""
    fold_max_growth: float = 2.0
    """...and exceed this multiple of its constant inputs' bytes is refused (no model bloat)."""


class OptimizationPass(ir.passes.InPlacePass):
    """One kind of rewrite. A subclass states its name, level and conditions in its class statement,
    `class FuseMatMulAddPass(RewritePass, name="fuse-matmul-add", level="O2", preconditions={NEEDS_SHAPES})`,
    describes itself in its docstring (its `description`) and implements `apply`.
    """

    name: ClassVar[str]
    level: ClassVar[str] = "O1"
    description: ClassVar[str]
    preconditions: ClassVar[frozenset[str]] = frozenset()
    """Preconditions, e.g. `NEEDS_SHAPES`."""
    postconditions: ClassVar[frozenset[str]] = frozenset({INTERFACE_UNCHANGED})
    """Postconditions the pipeline checks after the pass."""

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        level: str | None = None,
        preconditions: set[str] | frozenset[str] | None = None,
        postconditions: set[str] | frozenset[str] | None = None,
        **kwargs,
    ) -> None:
        """Record what the class statement declares; the docstring becomes the description."""
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
        if level is not None:
            cls.level = level
        if preconditions is not None:
            cls.preconditions = frozenset(preconditions)
        if postconditions is not None:
            cls.postconditions = frozenset(postconditions)
        if "description" not in cls.__dict__ and cls.__doc__:
            cls.description = " ".join(cls.__doc__.split())

    def __init__(self, options: PassOptions | None = None) -> None:
        super().__init__()
        self.options = options or PassOptions()
        self.stats: collections.Counter[str] = collections.Counter()
        self.declined: collections.Counter[str] = collections.Counter()
        """Matches the pass looked at and left alone, by reason (not modifications)."""

    def decline(self, reason: str | Decline) -> None:
        """Count a candidate left alone, by reason."""
        self.declined[str(reason)] += 1

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
        records: list[PassRecord] = []
        for round_number in range(1, self.max_rounds + 1):
            changed = False
            shapes_fresh = False
            for optimization in self.passes:
                shapes_fresh = _establish(optimization, model, shapes_fresh)
                before = interface_of(model)
                start = time.perf_counter()
                try:
                    result = optimization(model)
                    _check_postconditions(optimization, before, interface_of(model))
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


Interface = tuple[tuple[tuple[str | None, str], ...], tuple[tuple[str | None, str], ...]]


def interface_of(model: ir.Model) -> Interface:
    """The main graph's (inputs, outputs) as (name, type) pairs in order: cheap, no shapes."""

    def signature(values: Sequence[ir.Value]) -> tuple[tuple[str | None, str], ...]:
        return tuple((value.name, str(value.type)) for value in values)

    return signature(model.graph.inputs), signature(model.graph.outputs)


def _establish(optimization: OptimizationPass, model: ir.Model, shapes_fresh: bool) -> bool:
    """Meet the pass's preconditions; returns whether shapes are fresh afterwards."""
    if NEEDS_SHAPES in optimization.preconditions and not shapes_fresh:
        from optimizer.graph.shapes import infer_shapes

        infer_shapes(model)
        return True
    return shapes_fresh


def _check_postconditions(optimization: OptimizationPass, before: Interface, after: Interface) -> None:
    """Raise `InterfaceChangedError` when the pass changed what its `postconditions` promise to keep."""
    if INTERFACE_UNCHANGED in optimization.postconditions and before[0] != after[0]:
        raise InterfaceChangedError(f"{INTERFACE_UNCHANGED}: graph inputs were {_names(before[0])}, now {_names(after[0])}")
    if (INTERFACE_UNCHANGED in optimization.postconditions or OUTPUTS_UNCHANGED in optimization.postconditions) and before[1] != after[1]:
        raise InterfaceChangedError(f"{INTERFACE_UNCHANGED}: graph outputs were {_names(before[1])}, now {_names(after[1])}")


def _names(signature: tuple[tuple[str | None, str], ...]) -> str:
    return ", ".join(f"{name}: {type_}" for name, type_ in signature) or "none"


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
