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
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from optimizer import io, runtime
from optimizer.analysis import inter_op_speedup_of
from optimizer.stats import ModelStats
from optimizer import tune as tuner
from optimizer.lossy import LossyInputError, LossyOptions, LossyResult, run_lossy
from optimizer.pipeline import PassFailedError, PassOptions, PassRecord, Pipeline
from optimizer.verify import Tolerance, VerificationInputError, VerificationResult, Verifier, default_tolerance, feeds_for

if TYPE_CHECKING:
    from optimizer.profile import ProfileResult

__all__ = ["optimize", "tune_model", "profile", "OptimizationResult", "ModelStats", "DroppedPass", "resolve_pass_names"]

logger = logging.getLogger(__name__)

LEVELS = ("O1", "O2", "O3")
TARGET_OPSET_STEP = "target-opset"
"""The opset upgrade runs before the passes and is recorded, verified and bisected like one."""


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
    tuning: tuner.TuningResult | None = None
    shipped_variant: str | None = None
    config_path: Path | None = None
    lossy: LossyResult | None = None
    pruned_outputs: dict | None = None

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
        from optimizer.reports.document import SCHEMA_VERSION as REPORT_SCHEMA_VERSION

        return {
            "schema_version": REPORT_SCHEMA_VERSION,
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
            "pruned_outputs": self.pruned_outputs,
            "verification": {
                **(self.verification.to_dict() if self.verification else {"status": "not run"}),
                **({"of": "the lossless graph; the shipped lossy variant's errors are under lossy"} if self.lossy and self.lossy.chosen else {}),
            },
            "lossy": self.lossy.to_dict() if self.lossy else None,
            "shipped_variant": self.shipped_variant,
            "config": str(self.config_path) if self.config_path else None,
            "tuning": self.tuning.to_dict() if self.tuning else None,
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
    tune: bool = False,
    tune_budget: float | None = 30.0,
    objective: str = "latency",
    batch: int = 1,
    lossy: LossyOptions | None = None,
    prune_outputs: Sequence[str] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_progress: Callable[[str, float], None] | None = None,
) -> OptimizationResult:
    """Optimize a model (a path or an `onnx_ir.Model`) losslessly, verify it, and write `output` if given.

    `prune_outputs` keeps only the named graph outputs (and what they need) before anything else.
    With `lossy` (`optimizer.lossy.LossyOptions`), quantization/fp16/pruning variants of the lossless
    result are tried; one ships only when it is within the error budget and measurably faster.
    With `tune`, the original graph and each level's output up to `level` are timed under onnxruntime
    configurations (`optimizer.tune`) within `tune_budget` seconds; the fastest graph ships (never one
    slower than the original) and its configuration is written next to the output as `OUT.onnx.json`.

    Raises `io.ModelInputError` or `verify.VerificationInputError` for bad input, `KeyError` for an
    unknown pass or level, and `VerificationFailedError` when `strict` and the check fails.
    """
    stage = on_stage or (lambda _: None)
    if inputs is not None and batch != 1:
        raise VerificationInputError("--batch applies to generated inputs; with --inputs, the arrays set the batch")
    if lossy is not None and lossy.requested and not verify:
        raise LossyInputError("lossy variants are held to an error budget, which needs verification: drop --no-verify")
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
        before = ModelStats.of(original, reference_path)
        pruned = None
        if prune_outputs:
            from passes.pruning.outputs import prune_outputs as keep_outputs

            try:
                pruned = keep_outputs(original, list(prune_outputs))
            except ValueError as error:
                raise io.ModelInputError(f"--prune-outputs: {error}") from None
            reference_path = Path(scratch) / "pruned-outputs.onnx"
            io.save(original, reference_path)
            original = io.load(reference_path, validate=False)
        unused_copy = [original]
        calibration_samples = None
        if lossy is not None and lossy.calibration is not None and lossy.quantize in ("static", "auto"):
            calibration_samples = _load_calibration(lossy.calibration, original)

        def load_fresh() -> ir.Model:
            """The loaded original the first time (saves a parse), a fresh copy from disk after."""
            return unused_copy.pop() if unused_copy else io.load(reference_path, validate=False)

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
            verifier = Verifier(reference_path, original, inputs=inputs, input_shapes=shapes, tolerance=tolerance, batch=batch)
            if verifier.skip_reason:
                warnings.append(f"verification skipped: {verifier.skip_reason}")
            seconds["reference"] = time.perf_counter() - start
        del original  # load_fresh still holds it for the first attempt

        workspace = output_path.parent if output_path is not None else Path(scratch)
        run = _Run(load_fresh, verifier, workspace, output_path.name if output_path else "optimized.onnx", options, external_data, target_opset)
        dropped: list[DroppedPass] = []
        seconds["optimize"] = seconds["verify"] = 0.0
        staged_config: Path | None = None
        lossless_staged: Path | None = None
        lossy_result: LossyResult | None = None
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
            tuning, shipped = None, (level if passes is None else "optimized")
            lossless_label = shipped
            if lossy is not None and lossy.requested:
                if verifier is None or not verifier.feeds:
                    warnings.append(f"lossy variants not tried: {verifier.skip_reason if verifier else 'verification is off'}")
                else:
                    stage("trying lossy variants")
                    start = time.perf_counter()
                    lossy_result = run_lossy(
                        run.staged, verifier, lossy, Path(scratch) / "lossy",
                        providers_available=runtime.available_providers(), calibration_samples=calibration_samples,
                        on_stage=stage, on_progress=on_progress,
                    )
                    seconds["lossy"] = time.perf_counter() - start
                    warnings += lossy_result.notes
                    if lossy_result.chosen is not None:
                        lossless_staged = run.staged
                        shipped = f"{lossless_label}+{lossy_result.chosen.method}"
                        optimized = io.load(lossy_result.chosen.path, validate=False)
                        run.staged = io.stage(optimized, run.workspace, run.name, external_data=external_data)
                        if not tune:
                            io.discard(lossless_staged)
                            lossless_staged = None
            if tune:
                stage("tuning")
                start = time.perf_counter()
                variant_options = dict(
                    skip_passes=skip_passes, rtol=rtol, atol=atol, keep_initializer_inputs=keep_initializer_inputs,
                    fold_max_bytes=fold_max_bytes, fold_max_growth=fold_max_growth, target_opset=target_opset,
                )
                tuning, lower = _tune_variants(
                    run.staged, reference_path, verifier, lossless_label, shipped, lossless_staged, Path(scratch), variant_options,
                    tune_budget, objective, batch, on_progress, warnings,
                )
                seconds["tune"] = time.perf_counter() - start
                if tuning is not None and tuning.chosen.variant != shipped:
                    shipped = tuning.chosen.variant
                    io.discard(run.staged)
                    if lossy_result is not None and lossy_result.chosen is not None:
                        overridden, lossy_result.chosen = lossy_result.chosen, None
                        overridden.status = "discarded"
                        overridden.reason = f"within budget, but under the tuned settings the {shipped} graph was as fast or faster"
                        warnings.append(f"{overridden.label} not shipped: under the tuned settings the {shipped} graph was as fast or faster")
                    if shipped == lossless_label and lossless_staged is not None:
                        run.staged, lossless_staged = lossless_staged, None
                        optimized = io.load(run.staged, validate=False)
                    else:
                        if shipped == "original":
                            optimized, records, converted = io.load(reference_path, validate=False), [], []
                        else:
                            chosen = lower[shipped]
                            optimized, records, converted = chosen.model, chosen.records, chosen.converted_initializer_inputs
                            verification, dropped = chosen.verification, chosen.dropped
                            warnings = [w for w in warnings if not w.startswith("dropped pass")] + [w for w in chosen.warnings if w.startswith("dropped pass")]
                        run.staged = io.stage(optimized, run.workspace, run.name, external_data=external_data)
            after = ModelStats.of(optimized)
            after.file_bytes = io.staged_bytes(run.staged)
            external_path = config_path = None
            if output_path is not None:
                stage("writing")
                start = time.perf_counter()
                if tuning is not None:  # staged first, renamed right after the model: the two never disagree
                    staged_config = runtime.stage_config(
                        runtime.config_path_for(output_path),
                        tuning.chosen.config,
                        objective=objective,
                        model={"file": output_path.name, "variant": shipped, "level": level if passes is None else "custom passes"},
                        measured=tuning.measured(),
                        machine=tuning.machine,
                        note="measured on the machine above; tune again on the machine you deploy to",
                    )
                elif runtime.is_config_of(runtime.config_path_for(output_path), output_path.name):
                    runtime.config_path_for(output_path).unlink()
                    warnings.append(f"removed {runtime.config_path_for(output_path).name}: it was tuned for the model this run replaced")
                external_path = io.publish(run.staged, output_path)
                run.staged = None
                if io.has_external_tensors(optimized):
                    # Its weights were read from the staged (now renamed) or the replaced files: read them from the output.
                    optimized = io.load(output_path, validate=False)
                if staged_config is not None:
                    config_path = runtime.config_path_for(output_path)
                    os.replace(staged_config, config_path)
                    staged_config = None
                seconds["save"] = time.perf_counter() - start
        finally:
            if run.staged is not None:
                io.discard(run.staged)
            if staged_config is not None:
                staged_config.unlink(missing_ok=True)
            if lossless_staged is not None:
                io.discard(lossless_staged)

    if verifier is not None and verifier.note:
        warnings.append(verifier.note)
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
        tuning=tuning,
        shipped_variant=shipped,
        config_path=config_path,
        lossy=lossy_result,
        pruned_outputs=pruned,
    )


def _tune_variants(
    staged: Path, reference_path: Path, verifier: Verifier | None, label: str, shipped: str, lossless: Path | None, scratch: Path,
    variant_options: dict, budget: float | None, objective: str, batch: int, on_progress, warnings: list[str],
):
    """Time the original, each lower level's output, the pipeline's result (`label`) and the lossy variant if
    one was kept (`shipped`, with the lossless result at `lossless`); the TuningResult and the lower levels' results."""
    started = time.perf_counter()
    if verifier is None or not verifier.feeds:
        reason = verifier.skip_reason if verifier is not None and verifier.skip_reason else "it runs on the verification inputs (drop --no-verify)"
        warnings.append(f"tuning skipped: {reason}")
        return None, {}
    if io.staged_bytes(staged) > io.EXTERNAL_DATA_THRESHOLD:  # several live sessions: on 2.1 GiB, 5x its size and 160 s for a 30 s budget
        warnings.append(
            f"tuning skipped: the model is {io.staged_bytes(staged) / 2**30:.1f} GiB and timing keeps several onnxruntime sessions of it "
            "alive at once (several times its size in memory); run `optimize tune` on the output to tune it anyway"
        )
        return None, {}
    variants: dict[str, Path] = {"original": reference_path}
    lower: dict[str, OptimizationResult] = {}
    if label in LEVELS:
        for level in LEVELS[: LEVELS.index(label)]:
            path = scratch / f"variant-{level}.onnx"
            result = optimize(reference_path, path, level=level, inputs=verifier.feeds, **variant_options)
            if result.verified:
                variants[level], lower[level] = path, result
    if lossless is not None:
        variants[label] = lossless
    variants[shipped] = staged
    variants = distinct_variants(variants)
    original = io.load(reference_path, validate=False)
    space = tuner.build_space(
        objective=objective,
        providers_available=runtime.available_providers(),
        inter_op_speedup=inter_op_speedup_of(original),
        op_types=sorted({node.op_type for node in ir.traversal.RecursiveGraphIterator(original.graph)}),
    )
    del original
    try:
        result = tuner.tune(
            variants, verifier.feeds, space, objective=objective, shipped_variant=label,  # a lossy graph must beat the lossless one
            budget_s=None if budget is None else max(1.0, budget - (time.perf_counter() - started)),
            on_progress=on_progress, inputs=verifier.inputs_source, batch=batch,
        )
    except tuner.TuningError as error:
        warnings.append(f"tuning skipped: {error}")
        return None, {}
    return result, lower


def distinct_variants(variants: Mapping[str, Path]) -> dict[str, Path]:
    """Model files by name, those with identical content once: the higher level keeps its name, the original stays."""
    kept = dict(variants)
    contents: dict[bytes, str] = {}
    for name in reversed(list(kept)):
        digest = io.content_digest(kept[name])
        if digest in contents and name != "original":
            del kept[name]
        contents.setdefault(digest, name)
    return kept


def tune_model(
    model_path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    providers: Sequence[str] | None = None,
    intra: Sequence[int] | None = None,
    inter: Sequence[int] | None = None,
    objective: str = "latency",
    batch: int = 1,
    budget: float | None = 60.0,
    on_progress: Callable[[str, float], None] | None = None,
) -> tuple[tuner.TuningResult, Path | None]:
    """Find the fastest onnxruntime configuration for a model as it is; write it to `output` (default MODEL.onnx.json).

    Raises `io.ModelInputError`, `VerificationInputError` (inputs) or ValueError (a provider or option this
    onnxruntime lacks) for bad input.
    """
    model_path = Path(model_path)
    model = io.load(model_path)
    config_path = Path(output) if output is not None else runtime.config_path_for(model_path)
    if config_path.resolve() == model_path.resolve():
        raise io.ModelInputError(f"{config_path}: the configuration would overwrite the model; choose another -o")
    io.check_writable(config_path)
    feeds, source = feeds_for(model_path, model, inputs, input_shapes, batch)
    space = tuner.build_space(
        objective=objective,
        providers_available=runtime.available_providers(),
        providers=providers,
        intra=intra,
        inter=inter,
        inter_op_speedup=inter_op_speedup_of(model),
        op_types=sorted({node.op_type for node in ir.traversal.RecursiveGraphIterator(model.graph)}),
    )
    del model
    result = tuner.tune({"original": model_path}, feeds, space, objective=objective, budget_s=budget, on_progress=on_progress, inputs=source, batch=batch)
    runtime.write_config(
        config_path,
        result.chosen.config,
        objective=objective,
        model={"file": model_path.name, "variant": "original"},
        measured=result.measured(),
        machine=result.machine,
        note="measured on the machine above; tune again on the machine you deploy to",
    )
    return result, config_path


def profile(
    model_path: str | os.PathLike,
    *,
    config_path: str | os.PathLike | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    runs: int = 20,
) -> tuple[ProfileResult, Path | None]:
    """Per-node and per-op-type time from onnxruntime's profiler, under a configuration file if given
    (else MODEL.onnx.json when it exists, else onnxruntime's defaults); the result and the config used."""
    from optimizer.profile import profile_model

    model_path = Path(model_path)
    model = io.load(model_path)
    if config_path is None and runtime.config_path_for(model_path).is_file():
        config_path = runtime.config_path_for(model_path)
    config = runtime.load_config(config_path)[0] if config_path is not None else runtime.RuntimeConfig()
    config.check_providers()
    feeds, _ = feeds_for(model_path, model, inputs, input_shapes, 1)
    del model
    result = profile_model(
        model_path,
        feeds,
        session_options=config.session_options(),
        providers=list(config.providers),
        provider_options=[dict(o) for o in config.provider_options],
        runs=runs,
    )
    return result, Path(config_path) if config_path is not None else None


def _load_calibration(path: Path, model: ir.Model) -> list[dict[str, np.ndarray]]:
    """The calibration samples, refused before the pipeline runs when unusable (LossyInputError)."""
    from optimizer.lossy.quantization.calibration import input_dtypes, load_calibration

    try:
        return load_calibration(path, input_dtypes(model))
    except ValueError as error:
        raise LossyInputError(f"--calibration: {error}") from None


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
