"""`optimize()`: load -> pipeline -> verify (bisect and drop a breaking pass) -> save.

This is what the CLI and Python users call. It returns an `OptimizationResult` holding the optimized
model, what every pass did, the verification, and before/after statistics.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from optimizer import io
from optimizer.pipeline import PassFailedError, PassOptions, PassRecord, Pipeline
from optimizer.verify import Tolerance, VerificationResult, Verifier, default_tolerance

__all__ = ["optimize", "OptimizationResult", "ModelStats", "DroppedPass", "resolve_pass_names"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TARGET_OPSET_STEP = "target-opset"
"""The opset upgrade runs before the passes and is recorded, verified and bisected like one."""


@dataclasses.dataclass
class ModelStats:
    """Size and composition of a model."""

    nodes: int
    op_counts: dict[str, int]
    initializer_bytes: int
    file_bytes: int | None = None

    @classmethod
    def of(cls, model: ir.Model, path: str | os.PathLike | None = None) -> ModelStats:
        counts: dict[str, int] = {}
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
            counts[key] = counts.get(key, 0) + 1
        weight_bytes = 0
        for graph in model.graphs():
            for value in graph.initializers.values():
                if value.const_value is not None:
                    weight_bytes += value.const_value.nbytes
        file_bytes = io.model_file_bytes(model, path) if path is not None and Path(path).is_file() else None
        return cls(sum(counts.values()), dict(sorted(counts.items())), weight_bytes, file_bytes)


@dataclasses.dataclass
class DroppedPass:
    name: str
    reason: str


@dataclasses.dataclass
class OptimizationResult:
    model: ir.Model
    level: str
    passes: list[str]
    records: list[PassRecord]
    verification: VerificationResult | None
    dropped: list[DroppedPass]
    before: ModelStats
    after: ModelStats
    converted_initializer_inputs: list[str]
    input_path: Path | None
    output_path: Path | None
    external_data_path: Path | None
    seconds: dict[str, float]
    warnings: list[str]

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.passed

    @property
    def introduced_ops(self) -> dict[str, int]:
        """Ops of non-standard domains (e.g. com.microsoft contrib ops) the passes added: the output needs a runtime that has them."""
        return {
            op: count - self.before.op_counts.get(op, 0)
            for op, count in self.after.op_counts.items()
            if ":" in op and count > self.before.op_counts.get(op, 0)
        }

    def pass_summary(self) -> list[dict]:
        """Per pass (pipeline order): rounds run, total changes by kind, declines, seconds."""
        summary: dict[str, dict] = {name: {"name": name, "runs": 0, "changes": {}, "declined": {}, "seconds": 0.0} for name in self.passes}
        for record in self.records:
            entry = summary.setdefault(record.name, {"name": record.name, "runs": 0, "changes": {}, "declined": {}, "seconds": 0.0})
            entry["runs"] += 1
            entry["seconds"] += record.seconds
            for key, count in record.changes.items():
                entry["changes"][key] = entry["changes"].get(key, 0) + count
            for key, count in record.declined.items():
                entry["declined"][key] = entry["declined"].get(key, 0) + count
        for dropped in self.dropped:
            if dropped.name in summary:
                summary[dropped.name]["dropped"] = dropped.reason
        return list(summary.values())

    def to_dict(self) -> dict:
        """The machine-readable summary (`--json`)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "input": {"path": str(self.input_path) if self.input_path else None, **dataclasses.asdict(self.before)},
            "output": {
                "path": str(self.output_path) if self.output_path else None,
                "external_data": str(self.external_data_path) if self.external_data_path else None,
                **dataclasses.asdict(self.after),
            },
            "level": self.level,
            "introduced_ops": self.introduced_ops,
            "passes": self.pass_summary(),
            "dropped_passes": [dataclasses.asdict(d) for d in self.dropped],
            "converted_initializer_inputs": self.converted_initializer_inputs,
            "verification": self.verification.to_dict() if self.verification else {"status": "not run"},
            "seconds": self.seconds,
            "warnings": self.warnings,
        }


def resolve_pass_names(level: str = "O2", passes: Sequence[str] | None = None, skip_passes: Sequence[str] = (), keep_initializer_inputs: bool = False) -> list[str]:
    """The ordered pass list for a level, or an explicit list, minus skipped ones (KeyError on unknown names)."""
    from passes import REGISTRY, passes_for_level

    if passes:
        for name in passes:
            if name not in REGISTRY:
                raise KeyError(f"unknown pass {name!r}; run 'optimize passes' to list them")
        wanted = set(passes)
        names = [name for name in REGISTRY if name in wanted]
    else:
        names = passes_for_level(level)
    for name in skip_passes:
        if name not in REGISTRY:
            raise KeyError(f"unknown pass {name!r}; run 'optimize passes' to list them")
    skipped = set(skip_passes) | ({"initializer-inputs-to-constants"} if keep_initializer_inputs else set())
    return [name for name in names if name not in skipped]


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


class _Run:
    """One optimize() call: fresh copies of the original, pipeline attempts, checks, bisection."""

    def __init__(self, load_fresh: Callable[[], ir.Model], verifier: Verifier | None, workspace: Path, name: str, options: PassOptions, external_data: bool | None, target_opset: int | None = None):
        self.load_fresh = load_fresh
        self.target_opset = target_opset
        self.verifier = verifier
        self.workspace = workspace
        self.name = name
        self.options = options
        self.external_data = external_data
        self.staged: Path | None = None

    def attempt(self, names: Sequence[str]) -> tuple[ir.Model, list[PassRecord], list[str]]:
        from passes import REGISTRY

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
        instances = [REGISTRY[name](self.options) for name in names if name != TARGET_OPSET_STEP]
        records += Pipeline(instances).run(model)
        converted = [n for p in instances for n in getattr(p, "converted", [])]
        for name in converted:
            interface.inputs.pop(name, None)
        interface.restore(model)
        if records and any(r.modified for r in records) and model.ir_version < 4:
            model.ir_version = 4  # new initializers are not graph inputs, which IR 3 forbids
        return model, records, converted

    def check(self, model: ir.Model) -> VerificationResult | None:
        if self.staged is not None:
            io.discard(self.staged)
            self.staged = None
        self.staged = io.stage(model, self.workspace, self.name, external_data=self.external_data)
        if self.verifier is None:
            return None
        return self.verifier.check(self.staged)

    def fails(self, names: Sequence[str]) -> bool:
        try:
            model, _, _ = self.attempt(names)
        except (PassFailedError, RuntimeError):
            return True
        result = self.check(model)
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


def optimize(
    model: str | os.PathLike | ir.Model,
    output: str | os.PathLike | None = None,
    *,
    level: str = "O2",
    passes: Sequence[str] | None = None,
    skip_passes: Sequence[str] = (),
    verify: bool = True,
    inputs: Mapping[str, np.ndarray] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    strict: bool = False,
    keep_initializer_inputs: bool = False,
    external_data: bool | None = None,
    force: bool = False,
    fold_max_bytes: int | None = None,
    fold_max_growth: float | None = None,
    target_opset: int | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> OptimizationResult:
    """Optimize a model (a path or an `onnx_ir.Model`) losslessly, verify it, and write `output` if given.

    Raises `io.ModelInputError` or `verify.VerificationInputError` for bad input, `KeyError` for an
    unknown pass or level, and `VerificationFailedError` when `strict` and the check fails.
    """
    stage = on_stage or (lambda _: None)
    seconds: dict[str, float] = {}
    warnings: list[str] = []
    names = resolve_pass_names(level, passes, skip_passes, keep_initializer_inputs)
    if target_opset is not None:
        names = [TARGET_OPSET_STEP, *names]
    options = PassOptions(
        **{k: v for k, v in {"fold_max_bytes": fold_max_bytes, "fold_max_growth": fold_max_growth}.items() if v is not None}
    )
    input_path = Path(model) if isinstance(model, (str, os.PathLike)) else None
    output_path = Path(output) if output is not None else None
    if output_path is not None:
        if input_path is not None and output_path.exists() and input_path.exists() and os.path.samefile(input_path, output_path) and not force:
            raise io.ModelInputError(f"{output_path}: the output is the input model; pass --force to overwrite it")
        if output_path.exists() and not force:
            raise io.ModelInputError(f"{output_path}: exists; pass --force to overwrite it")
        io.check_writable(output_path)

    with tempfile.TemporaryDirectory(prefix="optimize-") as scratch:
        stage("loading")
        start = time.perf_counter()
        if input_path is not None:
            reference_path = input_path
        else:
            reference_path = Path(scratch) / "original.onnx"
            io.save(model, reference_path)
        original = io.load(reference_path)
        unused_copy = [original]

        def load_fresh() -> ir.Model:
            """The loaded original the first time (saves a parse), a fresh copy from disk after."""
            return unused_copy.pop() if unused_copy else io.load(reference_path, validate=False)

        before = ModelStats.of(original, reference_path)
        if target_opset is not None:
            _check_target_opset(target_opset, original.opset_imports.get("", original.opset_imports.get("ai.onnx", 1)))
        seconds["load"] = time.perf_counter() - start

        verifier = None
        if verify:
            stage("computing reference outputs")
            start = time.perf_counter()
            tolerance = default_tolerance(original)
            tolerance = Tolerance(rtol if rtol is not None else tolerance.rtol, atol if atol is not None else tolerance.atol)
            shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()}
            verifier = Verifier(reference_path, original, inputs=inputs, input_shapes=shapes, tolerance=tolerance)
            if verifier.skip_reason:
                warnings.append(f"verification skipped: {verifier.skip_reason}")
            seconds["reference"] = time.perf_counter() - start
        del original  # load_fresh still holds it for the first attempt

        workspace = output_path.parent if output_path is not None else Path(scratch)
        run = _Run(load_fresh, verifier, workspace, output_path.name if output_path else "optimized.onnx", options, external_data, target_opset)
        dropped: list[DroppedPass] = []
        seconds["optimize"] = seconds["verify"] = 0.0
        try:
            while True:
                active = [n for n in names if n not in {d.name for d in dropped}]
                stage("optimizing")
                start = time.perf_counter()
                try:
                    optimized, records, converted = run.attempt(active)
                except PassFailedError as error:
                    dropped.append(DroppedPass(error.pass_name, str(error)))
                    warnings.append(f"dropped pass '{error.pass_name}': it raised an error ({error})")
                    continue
                seconds["optimize"] += time.perf_counter() - start
                stage("verifying")
                start = time.perf_counter()
                verification = run.check(optimized)
                seconds["verify"] += time.perf_counter() - start
                if verification is None or verification.status != "failed":
                    break
                applied = [n for n in active if any(r.name == n and r.modified for r in records)]
                stage("finding the pass that broke the model")
                start = time.perf_counter()
                culprit = run.bisect(applied)
                seconds["verify"] += time.perf_counter() - start
                if strict:
                    where = f"; pass '{culprit}' is responsible" if culprit else ""
                    raise VerificationFailedError(f"verification failed: {verification.reason}{where}", verification)
                if culprit is None:
                    warnings.append(f"verification failed with no rewrite applied ({verification.reason}); the original graph is written unchanged")
                    optimized, records, converted = run.attempt([])
                    verification = run.check(optimized)
                    break
                dropped.append(DroppedPass(culprit, verification.reason))
                warnings.append(f"dropped pass '{culprit}': with it the optimized model's {verification.reason}")
            after = ModelStats.of(optimized)
            after.file_bytes = io.staged_bytes(run.staged)
            external_path = None
            if output_path is not None:
                stage("writing")
                start = time.perf_counter()
                external_path = io.publish(run.staged, output_path)
                run.staged = None
                seconds["save"] = time.perf_counter() - start
        finally:
            if run.staged is not None:
                io.discard(run.staged)

    if converted:
        warnings.append(f"{len(converted)} initializer-input(s) became constants (interface change; --keep-initializer-inputs keeps them): {', '.join(converted[:10])}{' ...' if len(converted) > 10 else ''}")
    return OptimizationResult(
        model=optimized,
        level=level,
        passes=names,
        records=records,
        verification=verification,
        dropped=dropped,
        before=before,
        after=after,
        converted_initializer_inputs=converted,
        input_path=input_path,
        output_path=output_path,
        external_data_path=external_path,
        seconds=seconds,
        warnings=warnings,
    )


def _check_target_opset(target: int, current: int) -> None:
    _, max_opset = io.supported_versions()
    if target > max_opset:
        raise io.ModelInputError(f"--target-opset {target}: this installation supports opsets up to {max_opset}")
    if target < current:
        raise io.ModelInputError(f"--target-opset {target}: the model already uses opset {current}; only upgrades are supported")


class VerificationFailedError(Exception):
    """`strict` was asked for and the optimized model does not match the original."""

    def __init__(self, message: str, verification: VerificationResult) -> None:
        super().__init__(message)
        self.verification = verification
