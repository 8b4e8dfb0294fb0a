"""`optimize()`: the stages in order, over one `OptimizeOptions`; also `tune_model()` and `profile()`.

    reference (load, prune outputs, reference outputs) -> pipeline (run, verify, bisect, drop)
      -> lossy variants -> tuning -> ship one variant -> output (model, external data, settings)

This is what the CLI and Python users call, and the one module (with cli.py) that knows the pass
registry: it hands the stages pass classes by name. `optimize()` returns an `OptimizationResult`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from optimizer import io, runtime
from optimizer import tune as tuner
from optimizer.analysis import inter_op_speedup_of
from optimizer.errors import mention
from optimizer.lossy import LossyResult, load_calibration_samples
from optimizer.measure import Deadline, Progress
from optimizer.options import TARGET_OPSET_STEP, OptimizeOptions, OutputOptions, PassSelection, VerifyOptions
from optimizer.pipeline import OptimizationPass, PassOptions
from optimizer.result import DroppedPass, OptimizationResult, OptimizedGraph
from optimizer.stages.output import Written, write_output
from optimizer.stages.pipeline import PipelineStage, VerificationFailedError
from optimizer.stages.reference import Reference, check_output, check_target_opset, load_reference, make_verifier
from optimizer.stages.tuning import distinct_variants, tune_variants
from optimizer.stages.variants import Variant, lossless_variant, ship_tuned, try_lossy
from optimizer.stats import ModelStats
from optimizer.verify import Verifier, feeds_for

if TYPE_CHECKING:
    from optimizer.profile import ProfileResult

__all__ = [
    "optimize", "tune_model", "profile", "resolve_pass_names", "OptimizeOptions", "OptimizationResult", "ModelStats",
    "DroppedPass", "VerificationFailedError", "distinct_variants",
]

Stage = Callable[[str], None]
Fraction = Callable[[str, float], None]
Status = Callable[[Progress], None]


def optimize(
    model: str | os.PathLike | ir.Model,
    output: str | os.PathLike | None = None,
    *,
    options: OptimizeOptions | None = None,
    on_stage: Stage | None = None,
    on_progress: Fraction | None = None,
    on_status: Status | None = None,
    **keywords,
) -> OptimizationResult:
    """Optimize a model (a path or an `onnx_ir.Model`) losslessly, verify it, and write `output` if given.

    Give either `options` (an `OptimizeOptions`) or its keyword arguments (`OptimizeOptions.from_keywords`:
    level, passes, skip_passes, verify, inputs, input_shapes, rtol, atol, strict, keep_initializer_inputs,
    external_data, force, fold_max_bytes, fold_max_growth, target_opset, tune, tune_budget, objective,
    batch, lossy, prune_outputs).

    `prune_outputs` keeps only the named graph outputs (and what they need) before anything else.
    With `lossy` (`optimizer.lossy.LossyOptions`), quantization/fp16/pruning variants of the lossless
    result are tried; one ships only when it is within the error budget and measurably faster.
    With `tune`, the original graph and each level's output up to `level` are timed under onnxruntime
    configurations (`optimizer.tune`) within `tune_budget` seconds; the graph at `level` under the defaults
    is preferred and ships unless another candidate beats it beyond the noise (the original only when it
    is significantly faster), and the configuration is written next to the output as `OUT.onnx.json`.
    One deadline of `tune_budget` seconds, started when measuring starts, bounds the lossy speed gate and
    the tuning together. `on_status(measure.Progress)` gets elapsed and remaining seconds while measuring.

    Raises `io.ModelInputError` or `verify.VerificationInputError` for bad input, `KeyError` for an
    unknown pass or level, and `VerificationFailedError` when `strict` and the check fails.
    """
    if options is None:
        options = OptimizeOptions.from_keywords(output, **keywords)
    elif keywords:
        raise TypeError(f"optimize() takes options= or keyword arguments, not both (got {', '.join(sorted(keywords))})")
    elif output is not None:
        options = dataclasses.replace(options, output=dataclasses.replace(options.output, path=Path(output)))
    result, _ = _Run(options, on_stage, on_progress, on_status).execute(model)
    return result


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


def _pass_names(selection: PassSelection) -> list[str]:
    names = resolve_pass_names(selection.level, selection.passes, selection.skip_passes, selection.keep_initializer_inputs)
    return [TARGET_OPSET_STEP, *names] if selection.target_opset is not None else names


def _pass_factory(selection: PassSelection) -> Callable[[Sequence[str]], list[OptimizationPass]]:
    """Pass instances by registry name, all reading the selection's folding limits."""
    from passes import REGISTRY

    options = PassOptions(**selection.fold_limits())
    return lambda names: [REGISTRY[name](options) for name in names]


def _prune_outputs(model: ir.Model, keep: list[str]) -> dict:
    from passes.pruning.outputs import prune_outputs

    return prune_outputs(model, keep)


def _converted_note(converted: list[str]) -> str:
    names = f"{', '.join(converted[:10])}{' ...' if len(converted) > 10 else ''}"
    return f"{len(converted)} initializer-input(s) became constants (interface change; --keep-initializer-inputs keeps them): {names}"


def _stats_of(variant: Variant) -> ModelStats:
    """A variant's statistics, its staged file's size included."""
    stats = ModelStats.of(variant.model)
    stats.file_bytes = io.staged_bytes(variant.staged)
    return stats


def _shipped_reason(shipped: Variant, lossless: Variant, tuning: tuner.TuningResult | None, lossy: LossyResult | None) -> str:
    """Why the written graph is the one: the tuner's decision, the lossy stage's verdict, or the verified level."""
    if tuning is not None:
        return tuning.decision
    if lossy is not None and lossy.chosen is not None and shipped is not lossless:
        return f"{lossy.chosen.label}: {lossy.chosen.reason}"
    if lossless.verification is not None and not lossless.verification.passed:
        return f"the {lossless.label} graph, verification {lossless.verification.status}"
    return f"the {lossless.label} graph" + (", verified" if lossless.verification is not None else ", not verified")


class _Run:
    """One `optimize()` call: its options, progress hooks, timings and warnings, and the stages in order."""

    def __init__(self, options: OptimizeOptions, on_stage: Stage | None, on_progress: Fraction | None, on_status: Status | None = None) -> None:
        self.options, self.on_progress, self.on_status = options, on_progress, on_status
        self.stage: Stage = on_stage or (lambda _: None)
        self.seconds: dict[str, float] = {}
        self.warnings: list[str] = []
        self.deadline: Deadline | None = None

    def measuring(self) -> Deadline:
        """The run's one measuring deadline (`tune_budget` seconds), started by the first stage that measures."""
        if self.deadline is None:
            self.deadline = Deadline(self.options.tune.budget_s)
        return self.deadline

    def timed(self, key: str, label: str, work: Callable[[], object]):
        """`work()` announced as `label`, its duration recorded as `seconds[key]`."""
        self.stage(label)
        start = time.perf_counter()
        outcome = work()
        self.seconds[key] = time.perf_counter() - start
        return outcome

    def execute(self, model: str | os.PathLike | ir.Model) -> tuple[OptimizationResult, Variant]:
        """The stages in order; the result and the variant that shipped."""
        options = self.options
        options.check()
        names = _pass_names(options.passes)
        input_path = Path(model) if isinstance(model, (str, os.PathLike)) else None
        check_output(input_path, options.output)
        with tempfile.TemporaryDirectory(prefix="optimize-") as scratch_dir:
            scratch = Path(scratch_dir)
            reference, calibration = self.timed("load", "loading", lambda: self.load(model, scratch))
            verifier = self.timed("reference", "computing reference outputs", lambda: make_verifier(options.verify, reference, self.warnings)) if options.verify.enabled else None
            output = options.output.path
            staging = io.StagingArea(output.parent if output else scratch, output.name if output else "optimized.onnx", options.output.external_data)
            try:
                pipeline = PipelineStage(
                    reference.load_fresh, _pass_factory(options.passes), verifier, staging, target_opset=options.passes.target_opset,
                    strict=options.verify.strict, on_stage=self.stage, seconds=self.seconds,
                )
                outcome = pipeline.run(names)
                before_pipeline, self.warnings = self.warnings, []
                lossless = shipped = lossless_variant(outcome, options.passes.label)
                optimized = OptimizedGraph(lossless.label, _stats_of(lossless), lossless.verification)
                lossy, shipped = self.lossy(lossless, verifier, calibration, scratch, staging)
                tuning, shipped = self.tune(shipped, lossless, lossy, reference, verifier, scratch, staging)
                after = dataclasses.replace(optimized.stats) if shipped.model is lossless.model else _stats_of(shipped)
                written = self.timed("save", "writing", lambda: write_output(shipped, tuning, options, staging, self.warnings, lossy)) if output else Written(shipped.model)
            finally:
                staging.close()
        warnings = before_pipeline + shipped.dropped_notes + outcome.notes + self.warnings
        if verifier is not None and verifier.note:
            warnings.append(verifier.note)
        if shipped.converted:
            warnings.append(_converted_note(shipped.converted))
        result = OptimizationResult(
            model=written.model, level=options.passes.level, passes=names, records=lossless.records, verification=shipped.verification,
            dropped=lossless.dropped, before=reference.before, after=after, converted_initializer_inputs=shipped.converted,
            input_path=input_path, output_path=output, external_data_path=written.external_data_path, seconds=self.seconds,
            warnings=warnings, tuning=tuning, shipped_variant=shipped.label, config_path=written.config_path, lossy=lossy,
            pruned_outputs=reference.pruned, optimized=optimized, shipped_reason=_shipped_reason(shipped, lossless, tuning, lossy),
        )
        return result, dataclasses.replace(shipped, model=written.model, staged=None)

    def load(self, model: str | os.PathLike | ir.Model, scratch: Path) -> tuple[Reference, list[dict[str, np.ndarray]] | None]:
        """The reference stage, the calibration samples, and the target opset checked against the original."""
        options = self.options
        reference = load_reference(model, scratch, _prune_outputs, options.output.prune_outputs)
        calibration = load_calibration_samples(options.lossy, reference.model) if options.lossy is not None else None
        if options.passes.target_opset is not None:
            check_target_opset(options.passes.target_opset, reference.opset)
        return reference, calibration

    def lossy(
        self, lossless: Variant, verifier: Verifier | None, calibration: list[dict[str, np.ndarray]] | None, scratch: Path, staging: io.StagingArea,
    ) -> tuple[LossyResult | None, Variant]:
        """The lossy stage: its result and the variant that ships so far (the lossy one when kept)."""
        options = self.options
        if not options.lossy_requested:
            return None, lossless
        start = time.perf_counter()
        result, variant = try_lossy(
            lossless, verifier, options.lossy, scratch / "lossy", staging, providers=runtime.available_providers(),
            calibration_samples=calibration, warnings=self.warnings, on_stage=self.stage, on_progress=self.on_progress,
            on_status=self.on_status, measuring=self.measuring if options.tune.enabled else None,
        )
        if result is not None:
            self.seconds["lossy"] = time.perf_counter() - start
        if variant is None:
            return result, lossless
        if not options.tune.enabled:
            staging.discard(lossless.staged)
        return result, variant

    def tune(
        self, shipped: Variant, lossless: Variant, lossy: LossyResult | None, reference: Reference, verifier: Verifier | None,
        scratch: Path, staging: io.StagingArea,
    ) -> tuple[tuner.TuningResult | None, Variant]:
        """The tuning stage and the shipping decision: the TuningResult (or None) and the variant that ships."""
        if not self.options.tune.enabled:
            return None, shipped
        tuning, lower = self.timed("tune", "tuning", lambda: tune_variants(
            shipped, lossless, reference.path, verifier, self.options.tune, self.options.verify.batch,
            lambda level, path: self.lower_level(level, path, reference.path, verifier), scratch, self.warnings,
            deadline=self.measuring(), level_seconds=self.seconds.get("optimize", 0.0) + self.seconds.get("verify", 0.0),
            on_progress=self.on_progress, on_status=self.on_status,
        ))
        if tuning is None:
            return None, shipped
        return tuning, ship_tuned(tuning.chosen.variant, shipped, lossless, lower, lossy, staging, reference.path, self.warnings)

    def lower_level(self, level: str, path: Path, reference_path: Path, verifier: Verifier) -> Variant | None:
        """The original optimized at a lower `level` into `path`, verified on the same inputs; None when it did not verify."""
        verify = self.options.verify
        options = OptimizeOptions(
            passes=dataclasses.replace(self.options.passes, level=level, passes=None),
            verify=VerifyOptions(inputs=verifier.feeds, rtol=verify.rtol, atol=verify.atol),
            output=OutputOptions(path=path),
        )
        result, variant = _Run(options, None, None).execute(reference_path)
        return variant if result.verified else None


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
    on_status: Status | None = None,
) -> tuple[tuner.TuningResult, Path | None]:
    """Find the fastest onnxruntime configuration for a model as it is; write it to `output` (default MODEL.onnx.json).

    Raises `io.ModelInputError`, `VerificationInputError` (inputs) or ValueError (a provider or option this
    onnxruntime lacks) for bad input.
    """
    model_path = Path(model_path)
    model = io.load(model_path)
    config_path = Path(output) if output is not None else runtime.config_path_for(model_path)
    if config_path.resolve() == model_path.resolve():
        raise io.ModelInputError(f"{config_path}: the configuration would overwrite the model; choose another {mention('config_output')}", option="output")
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
    result = tuner.tune({"original": model_path}, feeds, space, objective=objective, budget_s=budget, on_progress=on_progress, on_status=on_status, inputs=source, batch=batch)
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
