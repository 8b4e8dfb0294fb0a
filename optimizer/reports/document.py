"""The report document: one typed object per command (`run`, `check`, `compare`).

A document is built once from the command's results (`RunReport.from_result`, `CheckReport.from_result`,
`CompareReport.from_body`) or read back from its JSON (`document_from_dict`). Every rendering (terminal,
`--json`, `--report out.json|.md|.html`) is made from this object and nothing else, so the JSON a CI job
parses and the page a person reads always say the same thing. `to_dict()` gives the JSON-ready dict
whose keys are documented in the README ("Reports").

The sections owned by other stages and still moving (tuning, latency) are thin:
they keep their JSON as it is and name only what the renderers read.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from optimizer import __version__
from optimizer.reports.record import Record
from optimizer.reports.summary import Summary, summarize_file, summarize_model

if TYPE_CHECKING:
    import onnx_ir as ir

SCHEMA_VERSION = 2
"""Of `--json` and reports. 2 added `kind`, `tool`, `created`, `machine`, `analysis`, `profile` and weight bytes by op type;
later additions that only add keys (`summary`, `provenance`, error statistics) keep it."""

__all__ = [
    "SCHEMA_VERSION", "TOP_NODES", "header", "run_summary", "provenance", "Provenance", "analysis_summary", "document_from_dict", "Document",
    "RunReport", "CheckReport", "CompareReport", "ModelFacts", "PassRow", "DroppedRow", "OutputCheck", "Verification",
    "OutputErrorRow", "ErrorDistribution", "ErrorStats", "ERROR_STAT_COLUMNS", "error_stat_rows", "LossyVariantRow", "LossySection", "TuningSection", "ProfileRow", "ProfileSection", "CostNode", "AnalysisSection", "GateRow", "OpCountRow", "SizeRow",
]

TOP_NODES = 10


def header(kind: str) -> dict:
    """What every document starts with: the schema, the command kind, the tool versions, when and where it ran."""
    import onnx
    import onnxruntime

    from optimizer.measure import machine_info

    machine = machine_info()
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "tool": {"optimize": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "onnxruntime_flavour": machine.get("onnxruntime_flavour")},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
    }


def analysis_summary(model: ir.Model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> dict:
    """The cost model's figures for a report: work, span, parallelism, regions, FLOPs by op type and the costliest nodes.

    Per-node rows are cut to the TOP_NODES costliest (`optimize inspect --json` has them all). A model
    the cost model cannot handle gives `{"error": ...}` rather than failing the report.
    """
    from optimizer.analysis import analyze

    try:
        analysis = analyze(model, input_shapes)
    except Exception as error:  # noqa: BLE001 - the report stands without the cost model
        return {"error": f"{type(error).__name__}: {error}".splitlines()[0]}
    summary = analysis.to_dict()
    nodes = summary.pop("nodes")
    summary["top_nodes"] = sorted(nodes, key=lambda n: -(n.get("flops") or 0))[:TOP_NODES]
    summary["critical_path_length"] = len(summary.pop("critical_path"))
    return summary


# -- sections -------------------------------------------------------------------------------------


def _dict():
    return dataclasses.field(default_factory=dict)


def _list():
    return dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ModelFacts(Record):
    """One model's figures: run's input/output, check's model/baseline, compare's A/B."""

    path: str | None = None
    external_data: str | None = None
    file_bytes: int | None = None
    nodes: int | None = None
    op_counts: dict[str, int] = _dict()
    initializer_bytes: int | None = None
    parameters: int | None = None
    weight_bytes_by_dtype: dict[str, int] = _dict()
    weight_bytes_by_op_type: dict[str, int] = _dict()
    config: str | None = None


@dataclasses.dataclass
class PassRow(Record):
    """One pass of the pipeline: rounds run, changes and declines by kind, seconds, why it was dropped."""

    name: str = ""
    runs: int = 0
    changes: dict[str, int] = _dict()
    declined: dict[str, int] = _dict()
    seconds: float = 0.0
    dropped: str | None = None


@dataclasses.dataclass
class DroppedRow(Record):
    """A pass the final check dropped, and why."""

    name: str = ""
    reason: str = ""


@dataclasses.dataclass
class ErrorDistribution(Record):
    """Mean, percentiles and maximum of an element-wise error."""

    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None


@dataclasses.dataclass
class ErrorStats(Record):
    """An output's error statistics (optimizer.error_stats): abs and rel distributions, the minimum tolerances."""

    elements: int | None = None
    abs: ErrorDistribution | None = None
    rel: ErrorDistribution | None = None
    min_tolerance: dict[str, float] = _dict()


ERROR_STAT_COLUMNS = ("output", "abs p50", "abs p90", "abs p99", "abs max", "rel p50", "rel p99", "rel max", "passes with")
"""The columns of `error_stat_rows`, as every rendering prints them."""


def error_stat_rows(outputs: Sequence) -> list[tuple[str, ...]]:
    """One row per output that has statistics (`OutputCheck` or `OutputErrorRow`), figures as text:
    the error percentiles and the smallest tolerance that passes ("atol 1.20e-06 (rtol 0) or rtol 3.40e-07 (atol 0)")."""
    from optimizer.units import format_error

    rows = []
    for output in outputs or []:
        stats = getattr(output, "stats", None)
        if not isinstance(stats, ErrorStats) or not isinstance(stats.abs, ErrorDistribution):
            continue
        rel = stats.rel if isinstance(stats.rel, ErrorDistribution) else ErrorDistribution()
        need = stats.min_tolerance or {}
        passes = f"atol {format_error(need.get('atol'), plain_zero=True)} (rtol 0) or rtol {format_error(need.get('rtol'), plain_zero=True)} (atol 0)"
        rows.append((output.name, *(format_error(v, plain_zero=True) for v in (stats.abs.p50, stats.abs.p90, stats.abs.p99, stats.abs.max, rel.p50, rel.p99, rel.max)), passes))
    return rows


@dataclasses.dataclass
class OutputCheck(Record):
    """Verification of one output against the original."""

    name: str = ""
    max_abs: float | None = None
    max_rel: float | None = None
    cosine: float | None = None
    passed: bool | None = None
    note: str = ""
    stats: ErrorStats | None = None


@dataclasses.dataclass
class Verification(Record):
    """The lossless graph against the original in onnxruntime."""

    status: str = "not run"
    outputs: list[OutputCheck] = _list()
    reason: str = ""
    tolerance: dict | None = None
    inputs_source: str = ""
    of: str | None = None



@dataclasses.dataclass
class OutputErrorRow(Record):
    """The error of one output against a reference: compare's outputs, check's errors, a lossy variant's errors."""

    name: str = ""
    max_abs: float | None = None
    rel: float | None = None
    cos: float | None = None
    top1: float | None = None
    nonfinite: int | None = None
    stats: ErrorStats | None = None


@dataclasses.dataclass
class LossyVariantRow(Record):
    """One lossy variant tried or skipped."""

    method: str | None = None
    label: str | None = None
    status: str | None = None
    reason: str | None = None
    errors: list[OutputErrorRow] = _list()
    excluded_nodes: list[dict] = _list()
    weight_bytes_by_dtype: dict[str, int] = _dict()
    speedup_vs_lossless: float | None = None
    speedup_vs_lossless_min: float | None = None
    notes: list[str] = _list()



@dataclasses.dataclass
class LossySection(Record):
    """The lossy stage: the error budget, each variant, the one that ships."""

    budget: str | None = None
    chosen: str | None = None
    variants: list[LossyVariantRow] = _list()
    lossless_latency_ms: dict | None = None
    noise: float | None = None
    notes: list[str] = _list()


    @property
    def chosen_variant(self) -> LossyVariantRow | None:
        """The variant that ships (None when none does)."""
        if not self.chosen:
            return None
        return next((v for v in self.variants or [] if isinstance(v, LossyVariantRow) and v.method == self.chosen), None)

    @property
    def chosen_label(self) -> str | None:
        """The label of the variant that ships (None when none does)."""
        return self.chosen_variant.label if self.chosen_variant else None


@dataclasses.dataclass
class TuningSection(Record):
    """The tuner's record, as `TuningResult.to_dict()` writes it: the choice, the measured figures, the
    final round, and `decision`, the one decision record the sentence, the tables and the charts read."""

    chosen: dict = _dict()
    measured: dict = _dict()
    final: dict = _dict()
    decision: dict | None = None

    @property
    def chosen_label(self) -> str:
        return (self.chosen or {}).get("label", "")

    @property
    def speedup(self) -> float | None:
        """The chosen settings' speed against the original under onnxruntime's defaults (paired, as every verdict)."""
        return (self.measured or {}).get("speedup_vs_defaults")

    @property
    def noise(self) -> float:
        return (self.measured or {}).get("noise") or 0.0

    @property
    def sentence(self) -> str:
        """Why the chosen candidate ships (the decision record's sentence)."""
        return (self.decision or {}).get("sentence") or (self.measured or {}).get("decision") or ""

    @property
    def candidates(self) -> list[dict]:
        """The decision record's candidates: the preferred one first, then the final run's, then the rest."""
        return (self.decision or {}).get("candidates") or []

    @property
    def budget_summary(self) -> str:
        """Seconds spent of the budget given, and whether every pair was clear before it ran out."""
        record = self.decision or {}
        spent, budget = record.get("spent_s"), record.get("budget_s")
        if spent is None:
            search = (self.measured or {}).get("search") or {}
            spent, budget = search.get("seconds"), search.get("budget_s")
        text = f"{spent or 0:.1f} s of a {budget:g} s budget" if budget else f"{spent or 0:.1f} s, no budget"
        return text + ("; stopped early: every pair was clear" if record.get("stopped_early") else "")

    @staticmethod
    def speed_vs_preferred(candidate: Mapping) -> str:
        """A candidate's speedup over the preferred one with its interval, e.g. "1.12x (1.05-1.20)"."""
        speedup, interval = candidate.get("speedup_vs_preferred"), candidate.get("interval")
        if speedup is None:
            return "-"
        return f"{speedup:.2f}x" + (f" ({interval[0]:.2f}-{interval[1]:.2f})" if interval and None not in interval else "")


@dataclasses.dataclass
class ProfileRow(Record):
    """One row of onnxruntime's profile: a node (name, provider) or an op type (node count); mean ms per run and share."""

    name: str | None = None
    op_type: str | None = None
    provider: str | None = None
    nodes: int | None = None
    mean_ms: float | None = None
    share: float | None = None


@dataclasses.dataclass
class ProfileSection(Record):
    """The written model's onnxruntime profile under the shipped settings (or why there is none)."""

    runs: int | None = None
    run_ms: float | None = None
    kernel_ms: float | None = None
    nodes: list[ProfileRow] = _list()
    by_op_type: list[ProfileRow] = _list()
    error: str | None = None



@dataclasses.dataclass
class CostNode(Record):
    """One of the costliest nodes by the cost model."""

    name: str | None = None
    op_type: str | None = None
    flops: float | None = None
    bytes_moved: float | None = None


@dataclasses.dataclass
class AnalysisSection(Record):
    """The cost model's figures for the written graph (`analysis_summary`), or why there are none."""

    work_flops: float | None = None
    span_flops: float | None = None
    parallelism: float | None = None
    inter_op_speedup_bound: float | None = None
    regions: list = _list()
    unknown_cost_nodes: int | None = None
    critical_path_length: int | None = None
    top_nodes: list[CostNode] = _list()
    error: str | None = None



@dataclasses.dataclass
class GateRow(Record):
    """One CI gate: what was measured, the limit, pass or fail, and why."""

    gate: str = ""
    measured: float | int | str | None = None
    limit: float | int | str | None = None
    unit: str = ""
    passed: bool = False
    detail: str = ""
    measured_text: str | None = None
    limit_text: str | None = None


@dataclasses.dataclass
class OpCountRow(Record):
    """One op type's count in A and B."""

    op: str = ""
    a: int = 0
    b: int = 0
    delta: int = 0


@dataclasses.dataclass
class SizeRow(Record):
    """File bytes of A and B and their ratio."""

    a_bytes: int | None = None
    b_bytes: int | None = None
    ratio: float | None = None


@dataclasses.dataclass
class Provenance(Record):
    """Where a document's figures come from: the inputs the models ran on, and each model's runtime settings."""

    inputs: str = ""
    """In words: the file and its arrays, or how they were generated."""
    inputs_file: str | None = None
    saved_inputs: str | None = None
    settings: dict[str, str] = _dict()
    """Label -> the settings file a model ran under (and whether it was found beside it or given), or onnxruntime defaults."""


def provenance(source: str | None, *, inputs_file=None, arrays: Mapping | None = None, saved=None, settings: Mapping[str, str] | None = None) -> dict:
    """The provenance section as JSON-ready data: `source` is what the library says of the inputs
    ("generated (random; x=[1, 4])"); a given file is named with its arrays' dtypes and shapes."""
    if inputs_file is not None:
        described = ", ".join(f"{name} {getattr(a, 'dtype', '?')} {list(getattr(a, 'shape', []))}" for name, a in (arrays or {}).items())
        words = f"{inputs_file}" + (f" ({described})" if described else "")
    else:
        words = source or "none (nothing ran)"
    if saved is not None:
        words += f"; saved to {saved}"
    return {"inputs": words, "inputs_file": str(inputs_file) if inputs_file is not None else None,
            "saved_inputs": str(saved) if saved is not None else None, "settings": dict(settings or {})}


def run_summary(result) -> dict:
    """The summary of an `OptimizationResult`: the input file before, the shipped model after, the run's seconds."""
    before = summarize_file(result.input_path, "before") if result.input_path is not None else None
    after = summarize_model(result.model, result.output_path, "after")
    return {"models": [column for column in (before, after) if column is not None], "seconds": sum(result.seconds.values())}


# -- documents ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Document(Record):
    """What every document has: the schema, the command kind, the tool versions, when and where it ran, warnings, seconds per stage."""

    schema_version: int | None = None
    kind: str | None = None
    tool: dict = _dict()
    created: str = ""
    machine: dict = _dict()
    warnings: list[str] = _list()
    seconds: dict[str, float] = _dict()
    summary: Summary | None = None
    provenance: Provenance | None = None


@dataclasses.dataclass
class RunReport(Document):
    """The `run` command's document (kind "optimize")."""

    input: ModelFacts = dataclasses.field(default_factory=ModelFacts)
    output: ModelFacts = dataclasses.field(default_factory=ModelFacts)
    level: str | None = None
    introduced_ops: dict[str, int] = _dict()
    passes: list[PassRow] = _list()
    dropped_passes: list[DroppedRow] = _list()
    converted_initializer_inputs: list[str] = _list()
    pruned_outputs: dict | None = None
    verification: Verification = dataclasses.field(default_factory=Verification)
    lossy: LossySection | None = None
    shipped_variant: str | None = None
    shipped_reason: str | None = None
    optimized: dict | None = None
    """The graph the passes made at the requested level (variant, statistics, check), whether or not it shipped."""
    config: str | None = None
    tuning: TuningSection | None = None
    analysis: AnalysisSection | None = None
    profile: ProfileSection | None = None


    @classmethod
    def from_result(cls, result, *, analysis: dict | None = None, profile: dict | None = None, head: dict | None = None, origin: dict | None = None) -> RunReport:
        """The document of an `OptimizationResult`, under the common header, with the optimized graph's
        analysis and its profile under the shipped settings when they were made, and `origin` (`provenance()`)."""
        body = result.to_dict()
        body.pop("schema_version", None)
        if origin is None:
            origin = provenance(result.verification.inputs_source if result.verification else None)
        return cls.from_dict({**(head or header("optimize")), "summary": run_summary(result), "provenance": origin, **body, "analysis": analysis, "profile": profile})

    @property
    def verified(self) -> bool:
        return self.verification.status == "passed"


@dataclasses.dataclass
class CheckReport(Document):
    """The `check` command's document: the gates and the figures behind them."""

    model: ModelFacts = dataclasses.field(default_factory=ModelFacts)
    baseline: ModelFacts | None = None
    gates: list[GateRow] = _list()
    passed: bool | None = None
    latency: dict | None = None
    errors: list[OutputErrorRow] | None = None
    inputs: str | None = None


    @classmethod
    def from_result(cls, result, head: dict | None = None, origin: dict | None = None) -> CheckReport:
        """The document of a `gates.CheckResult`, with `origin` (`provenance()`; by default from the result)."""
        body = result.to_dict()
        origin = origin if origin is not None else provenance(body.get("inputs"), settings=body.get("settings"))
        return cls.from_dict({**(head or header("check")), "provenance": origin, **body})

    @property
    def failed_gates(self) -> list[GateRow]:
        return [gate for gate in self.gates or [] if not gate.passed]


@dataclasses.dataclass
class CompareReport(Document):
    """The `compare` command's document: B against A."""

    a: ModelFacts = dataclasses.field(default_factory=ModelFacts)
    b: ModelFacts = dataclasses.field(default_factory=ModelFacts)
    inputs: str | None = None
    outputs: list[OutputErrorRow] = _list()
    op_counts: list[OpCountRow] = _list()
    size: SizeRow = dataclasses.field(default_factory=SizeRow)
    latency: dict | None = None


    @classmethod
    def from_body(cls, body: Mapping, head: dict | None = None, origin: dict | None = None) -> CompareReport:
        """The document of `comparison.compare_models`' body, with `origin` (`provenance()`; by default from the body)."""
        origin = origin if origin is not None else provenance(body.get("inputs"), settings=body.get("settings"))
        return cls.from_dict({**(head or header("compare")), "provenance": origin, **body})

    @property
    def changed_ops(self) -> list[OpCountRow]:
        return [row for row in self.op_counts or [] if row.delta]


_KINDS: dict[str, type[Document]] = {"optimize": RunReport, "check": CheckReport, "compare": CompareReport}


def document_from_dict(data: Mapping | Document) -> Document:
    """The typed document of a JSON-ready dict (by its `kind`; an unknown kind gives the bare `Document`)."""
    if isinstance(data, Document):
        return data
    return _KINDS.get(data.get("kind"), Document).from_dict(data)
