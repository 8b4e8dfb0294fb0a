"""`optimize check`: gates a CI job can trust, one row per gate (measured, limit, pass or fail).

Static gates read the file: size on disk (external data included), parameter count, ops required or
forbidden. Measured gates run the model in onnxruntime: absolute latency, latency and size regression
against a baseline timed in the same run, and the error of each output against the baseline (the
`--max-error` SPEC of lossy variants). A latency verdict allows for the noise measured on a control
copy (never less than 2%) and says so.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from optimizer.errors import UserError
import numpy as np

from optimizer.comparison import (
    LoadedModel, check_same_interface, error_rows, load_model, model_summary, output_errors_with_stats, settings_note, time_against, time_with_control,
)
from optimizer.error_budget import ErrorBudget
from optimizer.units import format_against, format_bytes

__all__ = ["GateInputError", "CheckOptions", "Gate", "CheckResult", "parse_size", "parse_ratio", "check_op_names", "run_check"]


class GateInputError(UserError):
    """Gate options that cannot be checked (a bad limit, a gate that needs --baseline)."""


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """`50MB`, `1.5GiB`, `200k`, `1048576`: bytes. K/M/G are binary (1024-based), as the tool prints sizes."""
    match = _SIZE.match(str(text))
    size = float(match.group(1)) * _UNITS[(match.group(2) or "").lower()] if match else math.nan
    if not math.isfinite(size) or size > 2**62:
        raise GateInputError(f"--max-size {text!r}: expected a size such as 50MB, 1.5GB or 1048576")
    return int(size)


def parse_ratio(text: str, option: str) -> float:
    """`5%` or `0.05`: a non-negative fraction."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise GateInputError(f"{option} {text!r}: expected a percentage such as 5% (or a fraction such as 0.05)") from None
    if not math.isfinite(value) or value < 0:
        raise GateInputError(f"{option} {text!r}: expected a finite, non-negative percentage such as 5%")
    return value


@dataclasses.dataclass
class CheckOptions:
    max_size: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None
    baseline: Path | None = None
    max_regression: float | None = None
    error_budget: ErrorBudget | None = None
    require_ops: Sequence[str] = ()
    forbid_ops: Sequence[str] = ()
    config: Path | None = None
    baseline_config: Path | None = None
    inputs: Mapping[str, np.ndarray] | None = None
    input_shapes: Mapping[str, Sequence[int]] | None = None
    budget_s: float = 20.0
    discover_configs: bool = True
    """Run each model under the settings file beside it (`MODEL.onnx.json`) when none is given."""

    def validate(self) -> None:
        """GateInputError when no gate is asked for or a gate lacks what it needs."""
        gates = (self.max_size, self.max_params, self.max_latency_ms, self.max_regression, self.error_budget)
        if all(g is None for g in gates) and not self.require_ops and not self.forbid_ops:
            raise GateInputError("no gate given: use --max-size, --max-params, --max-latency-ms, --max-regression, --max-error, --require-op or --forbid-op")
        if self.baseline is None and (self.max_regression is not None or self.error_budget is not None):
            raise GateInputError("--max-regression and --max-error compare against a baseline: add --baseline OLD.onnx")
        if self.baseline is not None and self.max_regression is None and self.error_budget is None:
            raise GateInputError("--baseline is used by --max-regression and --max-error: add one of them")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise GateInputError("--max-latency-ms must be positive")


@dataclasses.dataclass
class Gate:
    gate: str
    measured: float | int | str
    limit: float | int | str
    unit: str
    passed: bool
    detail: str
    measured_text: str
    limit_text: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CheckResult:
    model: dict
    baseline: dict | None
    gates: list[Gate]
    latency: dict | None
    errors: list[dict] | None
    inputs: str | None
    summary: dict | None = None
    settings: dict | None = None
    """Which runtime settings each model ran under, in words."""
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def to_dict(self) -> dict:
        return {
            "summary": self.summary,
            "model": self.model,
            "baseline": self.baseline,
            "gates": [g.to_dict() for g in self.gates],
            "passed": self.passed,
            "latency": self.latency,
            "errors": self.errors,
            "inputs": self.inputs,
            "settings": self.settings,
            "warnings": self.warnings,
        }


def _op_present(op_counts: Mapping[str, int], op: str) -> int:
    """How many nodes of `op` (`Attention` matches any domain; `com.microsoft:Attention` only that one;
    `ai.onnx:Relu` and `:Relu` are the default domain's, which op counts list without a prefix)."""
    domain, colon, name = op.rpartition(":")
    if not colon:
        return sum(count for key, count in op_counts.items() if key.rpartition(":")[2] == op)
    return op_counts.get(name if domain in ("", "ai.onnx") else op, 0)


def _known_op_types(model_ops) -> set[str]:
    """Op types a --require-op/--forbid-op may name: every ONNX and onnxruntime schema (bare and
    `domain:Type`) and the model's own, custom domains included."""
    import onnx

    known = set()
    schemas = [(schema.domain, schema.name) for schema in onnx.defs.get_all_schemas_with_history()]
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

        schemas += [(schema.domain, schema.name) for schema in ort_state.get_all_operator_schema()]
    except Exception:  # noqa: BLE001 - a build without the schema registry: the ONNX ones still count
        pass
    for domain, name in schemas:
        known |= {name, f"{domain or 'ai.onnx'}:{name}"} | ({f":{name}"} if domain in ("", "ai.onnx") else set())
    for op in model_ops:
        known |= {op, op.rpartition(":")[2]} | (set() if ":" in op else {f"ai.onnx:{op}", f":{op}"})
    return known


def check_op_names(ops: Sequence[str], model_ops, option: str) -> None:
    """GateInputError for an op type no schema and no node of the model has (a typo), naming the closest known ones."""
    import difflib

    names = [op for op in ops if op]
    if not names:
        return
    known = _known_op_types(model_ops)
    for op in names:
        if op not in known:
            bare = sorted({k for k in known if ":" not in k})
            close = difflib.get_close_matches(op.rpartition(":")[2], bare, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else "; op types are case-sensitive, e.g. Attention or com.microsoft:Attention"
            raise GateInputError(f"{option} {op}: no ONNX or onnxruntime op type of that name{hint}")


def _static_gates(options: CheckOptions, summary: dict, baseline: dict | None) -> list[Gate]:
    gates = []
    if options.max_size is not None:
        size = summary["file_bytes"]
        gates.append(Gate("size", size, options.max_size, "bytes", size <= options.max_size,
                          "file plus external data on disk", format_bytes(size), format_bytes(options.max_size)))
    if options.max_params is not None:
        count = summary["parameters"]
        gates.append(Gate("params", count, options.max_params, "", count <= options.max_params,
                          "elements of all initializers", f"{count:,}", f"{options.max_params:,}"))
    for op in options.require_ops:
        found = _op_present(summary["op_counts"], op)
        gates.append(Gate("require-op", found, op, "nodes", found > 0,
                          f"{found} {op} node(s)" if found else f"no {op} node: the fusion or export that should produce it did not happen",
                          str(found), f"{op} present"))
    for op in options.forbid_ops:
        found = _op_present(summary["op_counts"], op)
        gates.append(Gate("forbid-op", found, op, "nodes", found == 0,
                          f"{found} {op} node(s) found" if found else f"no {op} node", str(found), f"no {op}"))
    if baseline is not None and options.max_regression is not None:
        ratio = summary["file_bytes"] / baseline["file_bytes"] if baseline["file_bytes"] else float("inf")
        allowed = 1 + options.max_regression
        gates.append(Gate("regression-size", ratio, allowed, "ratio", ratio <= allowed,
                          f"{format_bytes(summary['file_bytes'])} vs baseline {format_bytes(baseline['file_bytes'])} (sizes are exact: no noise margin)",
                          f"{ratio:.3f}x", f"{allowed:.3f}x"))
    return gates


def _latency_alone(model: LoadedModel, feeds, budget_s: float, on_progress) -> tuple[dict, float]:
    """The model and a control copy timed in rotated blocks: stats and the noise they show."""
    stats, noise, plan = time_with_control(model, feeds, budget_s=budget_s, on_progress=on_progress)
    return {"model": dataclasses.asdict(stats["reference"]), "baseline": None, "control": dataclasses.asdict(stats["control"]), "noise": noise, "plan": plan}, noise


MAX_NOISE = 0.5
"""A control copy further than this from its twin makes latency gates fail as inconclusive: a margin that
wide would let through any slowdown a gate is there to catch."""


def _too_noisy(noise: float) -> str:
    return (f"inconclusive: two copies of the same model differed by {noise:.0%} (more than {MAX_NOISE:.0%}); "
            "rerun on a quieter machine or with a longer --budget")


def _latency_gate(limit_ms: float, latency: dict, noise: float) -> Gate:
    median = latency["model"]["median_ms"]
    allowed = limit_ms * (1 + noise)
    passed = median <= allowed and noise <= MAX_NOISE
    detail = _too_noisy(noise) if noise > MAX_NOISE else (
        f"median over {latency['model']['runs']} runs; fails only above the limit plus the {noise:.0%} noise margin "
        f"({allowed:.3g} ms) measured on a control copy")
    return Gate("latency", median, limit_ms, "ms", passed, detail, f"{median:.3g} ms", f"{limit_ms:g} ms")


def _regression_gate(timing, allowance: float) -> Gate:
    low = min(timing.ratio_median, timing.ratio_min)
    allowed = 1 + allowance
    passed = low <= allowed + timing.noise and timing.noise <= MAX_NOISE
    detail = _too_noisy(timing.noise) if timing.noise > MAX_NOISE else (
        f"time vs baseline in the same run: {timing.ratio_median:.3f}x by median, {timing.ratio_min:.3f}x by minimum; "
        f"fails only when both exceed {allowed:.2f}x plus the {timing.noise:.0%} noise margin")
    return Gate("regression-latency", timing.ratio_median, allowed, "ratio", passed, detail, f"{timing.ratio_median:.3f}x", f"{allowed:.2f}x")


_METRIC_NAMES = {"rel": "rel error", "cos": "cosine", "top1": "top-1 agreement"}


def _violations(budget: ErrorBudget, errors) -> list[str]:
    """One line per broken limit, the measured figure with the digits that tell it from its limit
    ("cosine 0.999698 < 0.99999 on 'y'"); outputs with NaN/Inf where the baseline is finite first."""
    measured = [(error, limit, error.value(limit.metric)) for error in errors if not error.nonfinite for limit in budget.limits]
    return [f"{error.nonfinite} NaN/Inf values on '{error.name}'" for error in errors if error.nonfinite] + [
        f"{_METRIC_NAMES.get(limit.metric, limit.metric)} {format_against(value, limit.limit)} {'>' if limit.metric == 'rel' else '<'} {limit.limit:g} on '{error.name}'"
        for error, limit, value in measured if value is not None and not limit.holds(value)
    ]


def _error_gate(budget: ErrorBudget, errors) -> Gate:
    broken = _violations(budget, errors)
    unmeasured = [str(limit) for limit in budget.limits if all(e.value(limit.metric) is None for e in errors)]
    if unmeasured:  # e.g. top1 on outputs without a class axis: a limit nothing was held to is no pass
        broken.append(f"{', '.join(unmeasured)} applies to none of the outputs (top1 needs a last axis of 2 or more)")
    limits = {limit.metric: limit.limit for limit in budget.limits}
    worst = max(errors, key=lambda e: e.rel)
    rel = format_against(worst.rel, limits["rel"]) if "rel" in limits else f"{worst.rel:.3g}"
    cos = format_against(worst.cos, limits["cos"], 6) if "cos" in limits else f"{worst.cos:.6f}"
    measured = f"rel {rel}, cos {cos} on '{worst.name}'"
    detail = "; ".join(broken) if broken else f"every limit holds on {len(errors)} output(s)"
    return Gate("error", worst.rel, str(budget), "", not broken, detail, measured, str(budget))


def _outputs_gate(missing: Sequence[str]) -> Gate:
    """Every output of the baseline must still be there: a model that drops one is not a drop-in replacement."""
    detail = f"missing: {', '.join(missing)}" if missing else "every baseline output is produced"
    return Gate("outputs", len(missing), 0, "missing", not missing, detail, f"{len(missing)} missing", "0 missing")


def run_check(model_path: str | os.PathLike, options: CheckOptions, on_progress: Callable[[str, float], None] | None = None) -> CheckResult:
    """Evaluate every gate `options` asks for.

    Raises GateInputError for bad options, io.ModelInputError for a bad model or baseline,
    ComparisonError for a baseline that cannot be compared, VerificationInputError for unusable inputs.
    """
    from optimizer.reports.summary import summarize_model
    from optimizer.verify import feeds_for

    started = time.perf_counter()
    options.validate()
    model = load_model(model_path, options.config, discover_config=options.discover_configs)
    baseline = load_model(options.baseline, options.baseline_config, discover_config=options.discover_configs) if options.baseline is not None else None
    summary = model_summary(model)
    baseline_summary = model_summary(baseline) if baseline is not None else None
    check_op_names(options.require_ops, summary["op_counts"], "--require-op")
    check_op_names(options.forbid_ops, summary["op_counts"], "--forbid-op")
    gates = _static_gates(options, summary, baseline_summary)
    latency = errors = source = None
    needs_run = options.max_latency_ms is not None or baseline is not None
    if needs_run:
        interface = check_same_interface(baseline, model) if baseline is not None else None
        if interface is not None:
            gates.append(_outputs_gate(interface.only_a))
        feeds, source = feeds_for(model.path, model.model, options.inputs, options.input_shapes, 1)
        if options.max_latency_ms is not None and baseline is None:
            latency, noise = _latency_alone(model, feeds, options.budget_s, on_progress)
            gates.append(_latency_gate(options.max_latency_ms, latency, noise))
        if baseline is not None:
            with_stats = output_errors_with_stats(baseline, model, feeds, interface.shared)
            measured, errors = [error for error, _ in with_stats], error_rows(with_stats)
            if options.error_budget is not None:
                gates.append(_error_gate(options.error_budget, measured))
            if options.max_regression is not None or options.max_latency_ms is not None:
                timing = time_against(baseline, model, feeds, budget_s=options.budget_s, on_progress=on_progress)
                latency = {
                    "model": dataclasses.asdict(timing.candidate), "baseline": dataclasses.asdict(timing.reference),
                    "control": dataclasses.asdict(timing.control), "noise": timing.noise, "plan": timing.plan,
                    "ratio_median": timing.ratio_median, "ratio_min": timing.ratio_min,
                }
                if options.max_latency_ms is not None:
                    gates.append(_latency_gate(options.max_latency_ms, latency, timing.noise))
                if options.max_regression is not None:
                    gates.append(_regression_gate(timing, options.max_regression))
    settings = {"model": model.settings, **({"baseline": baseline.settings} if baseline is not None else {})}
    note = settings_note({"the model": model, "the baseline": baseline}) if baseline is not None and latency is not None else None
    columns = [summarize_model(model.model, model.path, "model")] + ([summarize_model(baseline.model, baseline.path, "baseline")] if baseline is not None else [])
    summary_table = {"models": columns, "seconds": time.perf_counter() - started}
    return CheckResult(summary, baseline_summary, gates, latency, errors, source, summary_table, settings, [note] if note else [])
