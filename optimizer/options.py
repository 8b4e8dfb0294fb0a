"""What one `optimize()` call is asked to do, grouped by the stage that reads it.

`OptimizeOptions` holds a `PassSelection` (the pipeline stage), `VerifyOptions` (reference outputs and
the check), `TuneOptions` (timing variants under session configurations), `OutputOptions` (what is
written where) and the lossy stage's own `LossyOptions`. `OptimizeOptions.from_keywords` builds it from
`optimize()`'s keyword arguments.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from optimizer.errors import UserError, mention
from optimizer.lossy import LossyInputError, LossyOptions
from optimizer.runtime import DEFAULT_RUN_TIMEOUT_S
from optimizer.verify import check_batch

__all__ = ["OptimizeOptions", "PassSelection", "VerifyOptions", "TuneOptions", "OutputOptions", "TARGET_OPSET_STEP"]

TARGET_OPSET_STEP = "target-opset"
"""The opset upgrade runs before the passes and is recorded, verified and bisected like one."""


@dataclasses.dataclass(frozen=True)
class PassSelection:
    """Which passes run and the knobs they read."""

    level: str = "O2"
    passes: tuple[str, ...] | None = None
    """An explicit pass list instead of the level's (pipeline order is kept)."""
    skip_passes: tuple[str, ...] = ()
    keep_initializer_inputs: bool = False
    fold_max_bytes: int | None = None
    fold_max_growth: float | None = None
    target_opset: int | None = None

    @property
    def label(self) -> str:
        """The name of the graph this selection makes: its level, or "optimized" for an explicit list."""
        return self.level if self.passes is None else "optimized"

    @property
    def config_level(self) -> str:
        """The level as the settings file records it."""
        return self.level if self.passes is None else "custom passes"

    def fold_limits(self) -> dict:
        """The folding limits that were set, as `PassOptions` keywords."""
        limits = {"fold_max_bytes": self.fold_max_bytes, "fold_max_growth": self.fold_max_growth}
        return {key: value for key, value in limits.items() if value is not None}


@dataclasses.dataclass(frozen=True)
class VerifyOptions:
    """How the optimized model is checked against the original."""

    enabled: bool = True
    inputs: Mapping[str, np.ndarray] | None = None
    input_shapes: Mapping[str, Sequence[int]] | None = None
    rtol: float | None = None
    atol: float | None = None
    strict: bool = False
    """A failed check raises `VerificationFailedError` instead of dropping the pass that caused it."""
    batch: int = 1
    """Batch size of generated inputs (verification and tuning)."""
    run_timeout_s: float | None = DEFAULT_RUN_TIMEOUT_S
    """Seconds one onnxruntime run (reference outputs, a check) may take before it is stopped; None: no limit."""

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(dims) for name, dims in (self.input_shapes or {}).items()}


@dataclasses.dataclass(frozen=True)
class TuneOptions:
    """Timing the candidate graphs under onnxruntime session configurations."""

    enabled: bool = False
    budget_s: float | None = 30.0
    objective: str = "latency"


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """What is written: the output path, its weights layout, and the outputs kept."""

    path: Path | None = None
    external_data: bool | None = None
    force: bool = False
    prune_outputs: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class OptimizeOptions:
    """Everything one `optimize()` call is asked to do."""

    passes: PassSelection = PassSelection()
    verify: VerifyOptions = VerifyOptions()
    tune: TuneOptions = TuneOptions()
    output: OutputOptions = OutputOptions()
    lossy: LossyOptions | None = None

    @classmethod
    def from_keywords(
        cls, output: str | os.PathLike | None = None, *, level: str = "O2", passes: Sequence[str] | None = None,
        skip_passes: Sequence[str] = (), verify: bool = True, inputs: Mapping[str, np.ndarray] | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None, rtol: float | None = None, atol: float | None = None,
        strict: bool = False, keep_initializer_inputs: bool = False, external_data: bool | None = None, force: bool = False,
        fold_max_bytes: int | None = None, fold_max_growth: float | None = None, target_opset: int | None = None,
        tune: bool = False, tune_budget: float | None = 30.0, objective: str = "latency", batch: int = 1,
        lossy: LossyOptions | None = None, prune_outputs: Sequence[str] | None = None,
        run_timeout: float | None = DEFAULT_RUN_TIMEOUT_S,
    ) -> OptimizeOptions:
        """The options from `optimize()`'s keyword arguments (the names it has always taken)."""
        return cls(
            passes=PassSelection(level, tuple(passes) if passes else None, tuple(skip_passes), keep_initializer_inputs, fold_max_bytes, fold_max_growth, target_opset),
            verify=VerifyOptions(verify, inputs, input_shapes, rtol, atol, strict, batch, run_timeout),
            tune=TuneOptions(tune, tune_budget, objective),
            output=OutputOptions(Path(output) if output is not None else None, external_data, force, tuple(prune_outputs) if prune_outputs else None),
            lossy=lossy,
        )

    def check(self) -> None:
        """Refuse combinations that cannot work (UserError subclasses)."""
        check_batch(self.verify.inputs, self.verify.batch)
        if self.verify.run_timeout_s is not None and not self.verify.run_timeout_s > 0:
            raise UserError(f"{mention('run_timeout')} must be a positive number of seconds", option="run_timeout")
        if self.lossy is not None and self.lossy.requested and not self.verify.enabled:
            raise LossyInputError(f"lossy variants are held to an error budget, which needs verification: drop {mention('no_verify')}", option="verify")

    @property
    def lossy_requested(self) -> bool:
        return self.lossy is not None and self.lossy.requested
