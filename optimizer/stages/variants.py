"""Candidate graphs and the one decision of which ships.

A `Variant` is a graph that could be written: the pipeline's lossless result, a lossy variant of it, a
lower level's result or the original. Its pass records, verification, dropped passes and their notes
travel with it, so shipping a variant is choosing an object (`ship_tuned`), not editing warnings. A
lossy variant's verification is its own: its errors against the original, held to the error budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_ir as ir

from optimizer import io
from optimizer.lossy import LossyOptions, LossyResult, LossyVariant, run_lossy
from optimizer.measure import Deadline, Progress
from optimizer.pipeline import PassRecord
from optimizer.result import DroppedPass
from optimizer.runtime import RuntimeConfig
from optimizer.stages.pipeline import PipelineOutcome
from optimizer.verify import OutputComparison, VerificationResult, Verifier

__all__ = ["Variant", "lossless_variant", "original_variant", "lossy_verification", "try_lossy", "ship_tuned"]


@dataclasses.dataclass
class Variant:
    """A graph that could ship, with what made it and how it was checked."""

    label: str
    model: ir.Model
    staged: Path | None
    """Its copy staged beside the output, when it has one."""
    records: list[PassRecord]
    converted: list[str]
    verification: VerificationResult | None
    dropped: list[DroppedPass]
    dropped_notes: list[str]
    config: RuntimeConfig | None = None
    """The runtime settings it must run under (a precision variant: its provider and precision), else None."""


def lossless_variant(outcome: PipelineOutcome, label: str) -> Variant:
    """The pipeline stage's graph as a variant named `label` (its level, or "optimized")."""
    attempt = outcome.attempt
    return Variant(label, attempt.model, outcome.staged, attempt.records, attempt.converted, outcome.verification, outcome.dropped, outcome.dropped_notes)


def original_variant(reference_path: Path, lossless: Variant) -> Variant:
    """The original graph; the lossless run's verification and dropped passes stay on record."""
    return dataclasses.replace(lossless, label="original", model=io.load(reference_path, validate=False), staged=None, records=[], converted=[])


def try_lossy(
    lossless: Variant, verifier: Verifier | None, options: LossyOptions, workdir: Path, staging: io.StagingArea, *,
    providers: list[str], calibration_samples: list[dict[str, np.ndarray]] | None, warnings: list[str],
    on_stage: Callable[[str], None], on_progress: Callable[[str, float], None] | None,
    on_status: Callable[[Progress], None] | None = None, measuring: Callable[[], Deadline] | None = None,
) -> tuple[LossyResult | None, Variant | None]:
    """The lossy stage's result and the lossy variant it kept (staged beside the output, with its own errors), if any.

    `measuring` gives the run's one measuring deadline, which the speed gate shares with tuning."""
    if verifier is None or not verifier.feeds:
        warnings.append(f"lossy variants not tried: {verifier.skip_reason if verifier else 'verification is off'}")
        return None, None
    on_stage("trying lossy variants")
    result = run_lossy(
        lossless.staged, verifier, options, workdir, providers_available=providers, calibration_samples=calibration_samples,
        on_stage=on_stage, on_progress=on_progress, on_status=on_status, measuring=measuring,
    )
    warnings += result.notes
    if result.chosen is None:
        return result, None
    model = io.load(result.chosen.path, validate=False)
    setting = result.chosen.setting
    variant = dataclasses.replace(
        lossless, label=f"{lossless.label}+{result.chosen.method}", model=model, staged=staging.stage(model),
        verification=lossy_verification(result.chosen, lossless.verification, result),
        config=setting.runtime_config() if setting is not None else None,
    )
    return result, variant


def lossy_verification(chosen: LossyVariant, lossless: VerificationResult | None, result: LossyResult) -> VerificationResult:
    """The lossy variant's own check: its errors against the original per output, within the error budget."""
    outputs = [OutputComparison(e.name, e.max_abs, e.rel, e.cos, True, f"within the error budget {result.budget}") for e in chosen.errors]
    return VerificationResult(
        "passed", outputs, f"{chosen.label} within the error budget {result.budget}",
        lossless.tolerance if lossless else None, lossless.inputs_source if lossless else "",
    )


def ship_tuned(
    chosen: str, shipped: Variant, lossless: Variant, candidates: dict[str, Variant], lossy: LossyResult | None,
    staging: io.StagingArea, reference_path: Path, warnings: list[str],
) -> Variant:
    """The variant to write once tuning chose `chosen` (the tuner's verdict: the preferred graph, or one that
    beat it beyond the noise): `shipped` when it is the one, else the chosen graph, staged beside the output."""
    if chosen == shipped.label:
        return shipped
    staging.discard(shipped.staged)
    if lossy is not None and lossy.chosen is not None:
        overridden, lossy.chosen = lossy.chosen, None
        overridden.status = "discarded"
        overridden.reason = f"within budget, but under the tuned settings it did not beat the {chosen} graph beyond the noise"
        warnings.append(f"{overridden.label} not shipped: under the tuned settings it did not beat the {chosen} graph beyond the noise")
    if chosen == lossless.label and lossless.staged is not None and lossless.staged != shipped.staged:
        return dataclasses.replace(lossless, model=io.load(lossless.staged, validate=False))
    winner = original_variant(reference_path, lossless) if chosen == "original" else candidates[chosen]
    return dataclasses.replace(winner, staged=staging.stage(winner.model))
