"""The pipeline stage: run the passes on a fresh copy of the original, verify, and when the check fails
find the pass that broke it (bisect over the passes that changed something), drop it and run again.

It returns a typed `PipelineOutcome`: the graph, its pass records, its verification and the passes it
dropped, each with the note the user reads. Pass classes come from the caller (`make_passes`), so the
framework imports nothing from the registered passes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx_ir as ir

from optimizer import io
from optimizer.options import TARGET_OPSET_STEP
from optimizer.pipeline import OptimizationPass, PassFailedError, PassRecord, Pipeline
from optimizer.result import DroppedPass
from optimizer.verify import VerificationResult, Verifier

__all__ = ["PipelineStage", "PipelineOutcome", "Attempt", "VerificationFailedError"]


class VerificationFailedError(Exception):
    """`strict` was asked for and the optimized model does not match the original."""

    def __init__(self, message: str, verification: VerificationResult) -> None:
        super().__init__(message)
        self.verification = verification


@dataclasses.dataclass
class Attempt:
    """One run of some passes over a fresh copy of the original."""

    model: ir.Model
    records: list[PassRecord]
    converted: list[str]
    """Initializer-inputs that became constants (an interface change, reported by name)."""


@dataclasses.dataclass
class PipelineOutcome:
    """The pipeline stage's result: the verified graph (staged beside the output) and what it took."""

    attempt: Attempt
    staged: Path
    verification: VerificationResult | None
    dropped: list[DroppedPass]
    dropped_notes: list[str]
    """One warning per dropped pass, in the order they were dropped."""
    notes: list[str]
    """Other warnings (e.g. the original graph is written unchanged)."""


@dataclasses.dataclass
class _Interface:
    """Declared names, types and shapes of the graph's inputs and outputs, restored after the passes."""

    inputs: dict[str, tuple]
    outputs: list[tuple[str, object, object]]

    @classmethod
    def of(cls, model: ir.Model) -> _Interface:
        return cls(
            {v.name: (v.type, v.shape) for v in model.graph.inputs},
            [(v.name, v.type, v.shape) for v in model.graph.outputs],
        )

    def restore(self, model: ir.Model) -> None:
        for value in model.graph.inputs:
            if value.name in self.inputs:
                value.type, value.shape = self.inputs[value.name]
        names = [v.name for v in model.graph.outputs]
        if names != [name for name, _, _ in self.outputs]:
            raise RuntimeError(f"graph outputs changed from {[n for n, _, _ in self.outputs]} to {names}")
        for value, (_, type_, shape) in zip(model.graph.outputs, self.outputs):
            if type_ is not None:
                value.type = type_
            value.shape = shape


class PipelineStage:
    """Attempts, checks and bisection over fresh copies of the original (`load_fresh`)."""

    def __init__(
        self, load_fresh: Callable[[], ir.Model], make_passes: Callable[[Sequence[str]], list[OptimizationPass]], verifier: Verifier | None,
        staging: io.StagingArea, *, target_opset: int | None = None, strict: bool = False,
        on_stage: Callable[[str], None] = lambda _: None, seconds: dict[str, float] | None = None,
    ) -> None:
        self.load_fresh, self.make_passes, self.verifier, self.staging = load_fresh, make_passes, verifier, staging
        self.target_opset, self.strict, self.on_stage = target_opset, strict, on_stage
        self.seconds = seconds if seconds is not None else {}
        self.staged: Path | None = None

    def attempt(self, names: Sequence[str]) -> Attempt:
        """Run `names` (pipeline order) on a fresh copy; PassFailedError names a pass that raised."""
        model = self.load_fresh()
        interface = _Interface.of(model)
        records: list[PassRecord] = []
        if TARGET_OPSET_STEP in names and self.target_opset is not None:
            start = time.perf_counter()
            before = model.opset_imports.get("", 1)
            try:
                model = io.convert_opset(model, self.target_opset)
            except ValueError as error:
                raise PassFailedError(TARGET_OPSET_STEP, [], error) from error
            records.append(PassRecord(TARGET_OPSET_STEP, 1, {f"opset {before} -> {self.target_opset}": 1}, time.perf_counter() - start))
        instances = self.make_passes([name for name in names if name != TARGET_OPSET_STEP])
        records += Pipeline(instances).run(model)
        converted = [n for p in instances for n in getattr(p, "converted", [])]
        for name in converted:
            interface.inputs.pop(name, None)
        interface.restore(model)
        if records and any(r.modified for r in records) and model.ir_version < 4:
            model.ir_version = 4  # new initializers are not graph inputs, which IR 3 forbids
        return Attempt(model, records, converted)

    def check(self, model: ir.Model) -> VerificationResult | None:
        """Stage `model` beside the output (replacing the previous attempt's) and verify it."""
        self.staging.discard(self.staged)
        self.staged = self.staging.stage(model)
        if self.verifier is None:
            return None
        return self.verifier.check(self.staged)

    def fails(self, names: Sequence[str]) -> bool:
        try:
            attempt = self.attempt(names)
        except (PassFailedError, RuntimeError):
            return True
        result = self.check(attempt.model)
        return result is not None and result.status == "failed"

    def bisect(self, applied: Sequence[str]) -> str | None:
        """The first pass (in pipeline order) whose inclusion makes the check fail."""
        if not applied:
            return None
        low, high = 0, len(applied)  # with applied[:low] the check passes; with applied[:high] it fails
        while high - low > 1:
            middle = (low + high) // 2
            if self.fails(applied[:middle]):
                high = middle
            else:
                low = middle
        return applied[high - 1]

    def _timed(self, key: str, label: str, work: Callable[[], object]):
        self.on_stage(label)
        start = time.perf_counter()
        outcome = work()
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        return outcome

    def run(self, names: Sequence[str]) -> PipelineOutcome:
        """Attempt, verify, bisect and drop until the check passes (or, under `strict`, raise)."""
        self.seconds.setdefault("optimize", 0.0)
        self.seconds.setdefault("verify", 0.0)
        dropped: list[DroppedPass] = []
        dropped_notes: list[str] = []
        notes: list[str] = []
        while True:
            active = [n for n in names if n not in {d.name for d in dropped}]
            try:
                attempt = self._timed("optimize", "optimizing", lambda: self.attempt(active))
            except PassFailedError as error:
                dropped.append(DroppedPass(error.pass_name, str(error)))
                dropped_notes.append(f"dropped pass '{error.pass_name}': it raised an error ({error})")
                continue
            verification = self._timed("verify", "verifying", lambda: self.check(attempt.model))
            if verification is None or verification.status != "failed":
                break
            applied = [n for n in active if any(r.name == n and r.modified for r in attempt.records)]
            culprit = self._timed("verify", "finding the pass that broke the model", lambda: self.bisect(applied))
            if self.strict:
                where = f"; pass '{culprit}' is responsible" if culprit else ""
                raise VerificationFailedError(f"verification failed: {verification.reason}{where}", verification)
            if culprit is None:
                notes.append(f"verification failed with no rewrite applied ({verification.reason}); the original graph is written unchanged")
                attempt = self.attempt([])
                verification = self.check(attempt.model)
                break
            dropped.append(DroppedPass(culprit, verification.reason))
            dropped_notes.append(f"dropped pass '{culprit}': with it the optimized model's {verification.reason}")
        return PipelineOutcome(attempt, self.staged, verification, dropped, dropped_notes, notes)
