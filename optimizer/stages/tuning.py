"""The tuning stage: time the candidate graphs under onnxruntime session configurations (`optimizer.tune`).

The candidates are the original, each lower level's verified result, the pipeline's lossless result and
the lossy variant if one was kept; identical files are timed once. The preferred candidate is the lossless
result at the requested level under onnxruntime's defaults: it ships unless another beats it beyond the noise.
One `Deadline` (shared with the lossy speed gate) bounds the stage: the lower levels are optimized only while
a quarter of what is left covers the time one takes, so they never eat the timing. It returns the
`TuningResult` and the lower levels' variants, for `variants.ship_tuned` to choose from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import onnx_ir as ir

from optimizer import io, runtime
from optimizer import tune as tuner
from optimizer.analysis import inter_op_speedup_of
from optimizer.measure import Deadline, Progress
from optimizer.options import TuneOptions
from optimizer.providers import CPU, profiled_placement
from optimizer.stages.variants import Variant
from optimizer.verify import Verifier

__all__ = ["LEVELS", "tune_variants", "distinct_variants"]

LEVELS = ("O1", "O2", "O3")

LowerLevel = Callable[[str, Path], "Variant | None"]
"""Optimizes the original at a level into a path; the verified variant, or None when it did not verify."""
LOWER_LEVEL_SHARE = 0.25
"""A lower level is optimized only when its expected time is at most this share of the deadline's remainder."""


def _skip_reason(staged: Path, verifier: Verifier | None) -> str | None:
    if verifier is None or not verifier.feeds:
        if verifier is not None and verifier.skip_reason:
            return verifier.skip_reason
        return "it runs on the verification inputs (drop --no-verify)"
    if io.staged_bytes(staged) > io.EXTERNAL_DATA_THRESHOLD:  # several live sessions: on 2.1 GiB, 5x its size and 160 s for a 30 s budget
        return (
            f"the model is {io.staged_bytes(staged) / 2**30:.1f} GiB and timing keeps several onnxruntime sessions of it "
            "alive at once (several times its size in memory); run `optimize tune` on the output to tune it anyway"
        )
    return None


def tune_variants(
    shipped: Variant, lossless: Variant, reference_path: Path, verifier: Verifier | None, options: TuneOptions, batch: int,
    lower_level: LowerLevel, scratch: Path, warnings: list[str], *, deadline: Deadline, level_seconds: float,
    on_progress: Callable[[str, float], None] | None = None, on_status: Callable[[Progress], None] | None = None,
) -> tuple[tuner.TuningResult | None, dict[str, Variant]]:
    """Time the original, each level below `lossless.label`, the lossless result and `shipped` (a lossy
    variant must beat the lossless graph) by `deadline`; the TuningResult (None when skipped) and the lower
    levels' variants. `level_seconds` estimates what optimizing one lower level takes (the pipeline's time)."""
    reason = _skip_reason(shipped.staged, verifier)
    if reason is not None:
        warnings.append(f"tuning skipped: {reason}")
        return None, {}
    files: dict[str, Path] = {"original": reference_path}
    lower = _lower_levels(lossless.label, lower_level, scratch, deadline, level_seconds, warnings)
    files.update({level: _level_path(scratch, level) for level in lower})
    if shipped is not lossless:
        files[lossless.label] = lossless.staged
    pinned = {shipped.label: [shipped.config]} if shipped.config is not None else {}
    if not pinned:  # a precision variant is the lossless file under its own settings: not a duplicate
        files[shipped.label] = shipped.staged
    files = distinct_variants(files)
    if pinned:
        files[shipped.label] = shipped.staged
    original = io.load(reference_path, validate=False)
    space = tuner.build_space(
        objective=options.objective,
        providers_available=runtime.available_providers(),
        inter_op_speedup=inter_op_speedup_of(original),
        op_types=sorted({node.op_type for node in ir.traversal.RecursiveGraphIterator(original.graph)}),
    )
    del original
    try:
        result = tuner.tune(
            files, verifier.feeds, space, objective=options.objective, preferred=lossless.label, deadline=deadline, pinned=pinned,
            on_progress=on_progress, on_status=on_status, inputs=verifier.inputs_source, batch=batch,
        )
    except tuner.TuningError as error:
        warnings.append(f"tuning skipped: {error}")
        return None, {}
    _report_placement(result, files, verifier, warnings)
    return result, lower


def _report_placement(result: tuner.TuningResult, files: Mapping[str, Path], verifier: Verifier, warnings: list[str]) -> None:
    """When the chosen settings put a provider other than the CPU's first, say whether it took the whole graph."""
    config = result.chosen.config
    if config.providers[0] == CPU:
        return
    try:
        where = profiled_placement(files[result.chosen.variant], config, verifier.feeds)
    except Exception as error:  # noqa: BLE001 - the placement is a report, not a decision
        warnings.append(f"could not profile where {config.providers[0]} ran the nodes: {error}")
        return
    result.record.notes.append(f"placement under the chosen settings: {where.describe()} (profiled kernels)")
    if where.falls_back(config.providers[0]):
        warnings.append(f"{config.providers[0]} did not take the whole graph under the chosen settings: {where.describe()}")


def _lower_levels(label: str, lower_level: LowerLevel, scratch: Path, deadline: Deadline, level_seconds: float, warnings: list[str]) -> dict[str, Variant]:
    """The verified results of the levels below `label`, each made only while the deadline can spare it."""
    lower: dict[str, Variant] = {}
    if label not in LEVELS:
        return lower
    estimate = level_seconds
    for level in LEVELS[: LEVELS.index(label)]:
        if estimate > LOWER_LEVEL_SHARE * deadline.remaining():
            warnings.append(f"the {level} graph was not tuned: optimizing it (about {estimate:.1f} s) would take the budget's timing")
            continue
        start = time.perf_counter()
        variant = lower_level(level, _level_path(scratch, level))
        estimate = time.perf_counter() - start
        if variant is not None:
            lower[level] = variant
    return lower


def _level_path(scratch: Path, level: str) -> Path:
    return scratch / f"variant-{level}.onnx"


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
