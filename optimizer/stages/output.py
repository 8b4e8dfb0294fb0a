"""The output stage: write the shipped variant, its external data and its settings file together.

The settings file (`OUT.onnx.json`, when tuned) is staged first and renamed right after the model, so
the two never disagree; a settings file left from a model this run replaces is removed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx_ir as ir

from optimizer import io, runtime
from optimizer import tune as tuner
from optimizer.lossy import LossyResult
from optimizer.options import OptimizeOptions
from optimizer.stages.variants import Variant

__all__ = ["Written", "write_output"]


@dataclasses.dataclass
class Written:
    """What the output stage wrote; `model` reads its weights from the written files."""

    model: ir.Model
    external_data_path: Path | None = None
    config_path: Path | None = None


def _stage_config(output: Path, tuning: tuner.TuningResult, shipped: Variant, options: OptimizeOptions) -> Path:
    return runtime.stage_config(
        runtime.config_path_for(output),
        tuning.chosen.config,
        objective=options.tune.objective,
        model={"file": output.name, "variant": shipped.label, "level": options.passes.config_level},
        measured=tuning.measured(),
        machine=tuning.machine,
        note="measured on the machine above; tune again on the machine you deploy to",
    )


def _stage_precision_config(output: Path, shipped: Variant, lossy: LossyResult | None, options: OptimizeOptions) -> Path:
    """The settings a precision variant needs without tuning: its provider and precision, with the speed gate's figures."""
    chosen = lossy.chosen if lossy is not None else None
    return runtime.stage_config(
        runtime.config_path_for(output),
        shipped.config,
        objective=options.tune.objective,
        model={"file": output.name, "variant": shipped.label, "level": options.passes.config_level},
        measured={"lossy": chosen.to_dict() if chosen is not None else None},
        note="the model computes in this precision only under these settings; measured by the lossy speed gate, not tuned",
    )


def write_output(
    shipped: Variant, tuning: tuner.TuningResult | None, options: OptimizeOptions, staging: io.StagingArea, warnings: list[str],
    lossy: LossyResult | None = None,
) -> Written:
    """Publish the staged variant to the output path (and its settings when tuned, or when it needs its own)."""
    output = options.output.path
    config_path = runtime.config_path_for(output)
    staged_config = None
    if tuning is not None:
        staged_config = _stage_config(output, tuning, shipped, options)
    elif shipped.config is not None:
        staged_config = _stage_precision_config(output, shipped, lossy, options)
    elif runtime.is_config_of(config_path, output.name):
        config_path.unlink()
        warnings.append(f"removed {config_path.name}: it was tuned for the model this run replaced")
    try:
        external = staging.publish(shipped.staged, output, companions={staged_config: config_path} if staged_config else None)
        staged_config = None
    finally:
        if staged_config is not None:
            staged_config.unlink(missing_ok=True)
    model = shipped.model
    if io.has_external_tensors(model):
        # Its weights were read from the staged (now renamed) or the replaced files: read them from the output.
        model = io.load(output, validate=False)
    return Written(model, external, config_path if tuning is not None or shipped.config is not None else None)
