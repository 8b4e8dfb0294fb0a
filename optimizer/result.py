"""What one `optimize()` call made: `OptimizationResult` (the shipped model, what every pass did, the
verification, before/after statistics, tuning and lossy outcomes), `OptimizedGraph` and `DroppedPass`.

Whatever ships, the pass records, dropped passes and `optimized` describe the graph the passes made at
the requested level; `after`, `verification` and `shipped_variant` describe the graph written (a lossy
variant's verification is its own errors), and `shipped_reason` says why that one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import onnx_ir as ir

from optimizer.pipeline import PassRecord
from optimizer.stats import ModelStats
from optimizer.verify import VerificationResult

if TYPE_CHECKING:
    from optimizer.lossy import LossyResult
    from optimizer.tune import TuningResult

__all__ = ["OptimizationResult", "OptimizedGraph", "DroppedPass"]


@dataclasses.dataclass
class DroppedPass:
    """A pass left out of the run: it raised, or with it the check failed (`reason`)."""

    name: str
    reason: str


@dataclasses.dataclass
class OptimizedGraph:
    """The graph the passes made at the requested level, whether or not it shipped."""

    variant: str
    stats: ModelStats
    verification: VerificationResult | None

    def to_dict(self) -> dict:
        return {
            "variant": self.variant, **dataclasses.asdict(self.stats),
            "verification": self.verification.to_dict() if self.verification else {"status": "not run"},
        }


@dataclasses.dataclass
class OptimizationResult:
    """The outcome of `optimize()`; reports and `--json` read its fields."""

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
    tuning: TuningResult | None = None
    shipped_variant: str | None = None
    shipped_reason: str = ""
    """Why the written graph is the one (the tuner's decision sentence, the lossy verdict, or the verified level)."""
    config_path: Path | None = None
    lossy: LossyResult | None = None
    pruned_outputs: dict | None = None
    optimized: OptimizedGraph | None = None
    """The graph the passes made at the requested level (its statistics and check), whether or not it shipped."""

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
                **({"of": f"the shipped {self.shipped_variant} graph, held to the error budget; the lossless graph's check is under optimized"} if self.lossy and self.lossy.chosen else {}),
            },
            "lossy": self.lossy.to_dict() if self.lossy else None,
            "optimized": self.optimized.to_dict() if self.optimized else None,
            "shipped_variant": self.shipped_variant,
            "shipped_reason": self.shipped_reason,
            "config": str(self.config_path) if self.config_path else None,
            "tuning": self.tuning.to_dict() if self.tuning else None,
            "seconds": self.seconds,
            "warnings": self.warnings,
        }
