"""The reference stage: the original model as every later stage sees it.

Checks the output path, loads the original (an in-memory model is written to the scratch folder first),
keeps only the requested graph outputs, records its statistics, and when verifying computes its outputs
once (`Verifier`). `Reference.load_fresh()` hands the pipeline stage a new copy for each attempt.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import onnx_ir as ir

from optimizer import io
from optimizer.errors import mention
from optimizer.options import OutputOptions, VerifyOptions
from optimizer.stats import ModelStats
from optimizer.verify import Tolerance, Verifier, default_tolerance

__all__ = ["Reference", "check_output", "load_reference", "make_verifier", "check_target_opset"]

OutputPruner = Callable[[ir.Model, list[str]], dict]
"""Removes every graph output but the named ones (and what only they need); what it removed."""


@dataclasses.dataclass
class Reference:
    """The original model on disk (`path`), its statistics, and the outputs pruned from it."""

    input_path: Path | None
    path: Path
    model: ir.Model | None
    """The loaded original, until the first `load_fresh()` hands it to the pipeline (which rewrites it)."""
    before: ModelStats
    pruned: dict | None

    def load_fresh(self) -> ir.Model:
        """The loaded original the first time (saves a parse), a fresh copy from disk after."""
        if self.model is not None:
            model, self.model = self.model, None
            return model
        return io.load(self.path, validate=False)

    @property
    def opset(self) -> int:
        return self.model.opset_imports.get("", self.model.opset_imports.get("ai.onnx", 1))


def check_output(input_path: Path | None, output: OutputOptions) -> None:
    """Refuse to overwrite an existing output (or the input) without `force`, or an unwritable one."""
    path = output.path
    if path is None:
        return
    if input_path is not None and path.exists() and input_path.exists() and os.path.samefile(input_path, path) and not output.force:
        raise io.ModelInputError(f"{path}: the output is the input model; pass {mention('force')} to overwrite it", option="force")
    if path.exists() and not output.force:
        raise io.ModelInputError(f"{path}: exists; pass {mention('force')} to overwrite it", option="force")
    io.check_writable(path)


def load_reference(model: str | os.PathLike | ir.Model, scratch: Path, prune: OutputPruner | None, keep: Sequence[str] | None) -> Reference:
    """Load the original; with `keep`, prune the other graph outputs (through `prune`) and reload it."""
    input_path = Path(model) if isinstance(model, (str, os.PathLike)) else None
    if input_path is not None:
        path = input_path
    else:
        path = scratch / "original.onnx"
        io.save(model, path)
    original = io.load(path)
    before = ModelStats.of(original, path)
    pruned = None
    if keep:
        try:
            pruned = prune(original, list(keep))
        except ValueError as error:
            raise io.ModelInputError(f"{mention('prune_outputs')}: {error}", option="prune_outputs") from None
        path = scratch / "pruned-outputs.onnx"
        io.save(original, path)
        original = io.load(path, validate=False)
    return Reference(input_path, path, original, before, pruned)


def check_target_opset(target: int, current: int) -> None:
    """Refuse an opset this installation lacks, or a downgrade."""
    _, max_opset = io.supported_versions()
    if target > max_opset:
        raise io.ModelInputError(f"{mention('target_opset')} {target}: this installation supports opsets up to {max_opset}", option="target_opset")
    if target < current:
        raise io.ModelInputError(f"{mention('target_opset')} {target}: the model already uses opset {current}; only upgrades are supported", option="target_opset")


def make_verifier(options: VerifyOptions, reference: Reference, warnings: list[str]) -> Verifier | None:
    """The verifier holding the reference outputs (None when verification is off); a warning when it cannot run."""
    if not options.enabled:
        return None
    default = default_tolerance(reference.model)
    tolerance = Tolerance(options.rtol if options.rtol is not None else default.rtol, options.atol if options.atol is not None else default.atol)
    verifier = Verifier(reference.path, reference.model, inputs=options.inputs, input_shapes=options.shapes(), tolerance=tolerance, batch=options.batch, run_timeout_s=options.run_timeout_s)
    if verifier.skip_reason:
        warnings.append(f"verification skipped: {verifier.skip_reason}")
    return verifier
