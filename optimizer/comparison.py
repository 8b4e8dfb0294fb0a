"""Two models side by side: `optimize compare A B`, and what `optimize check` measures against a baseline.

Outputs are compared per output with the error-budget metrics (rel, cos, top-1) on the same inputs;
op counts and sizes are diffed; latency is measured in one run with the timing harness (rotated
blocks, a control copy of A for the noise), each model under its own settings: `--config`, else its
`MODEL.onnx.json` when there is one, else onnxruntime's defaults.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from optimizer.errors import UserError
import numpy as np
import onnx_ir as ir

from optimizer import io, runtime
from optimizer.error_budget import OutputError, measure_errors
from optimizer.measure import LatencyStats, time_candidates

__all__ = [
    "ComparisonError", "Interface", "LoadedModel", "LatencyComparison", "load_model", "settings_note", "model_summary", "check_same_interface",
    "run_outputs", "output_errors_with_stats", "error_rows", "op_count_diff", "time_with_control", "time_against", "compare_models", "NOISE_FLOOR",
]

NOISE_FLOOR = 0.02
"""The smallest noise margin latency verdicts assume, however close the control copy came."""


class ComparisonError(UserError):
    """Two models that cannot be compared (different interfaces, inputs neither accepts)."""


@dataclasses.dataclass
class LoadedModel:
    path: Path
    model: ir.Model
    config_path: Path | None
    config_found: bool = False
    """The settings file was found beside the model (`MODEL.onnx.json`), not given."""

    def session(self):
        return runtime.session(self.path, self.config_path)

    @property
    def settings(self) -> str:
        """Which runtime settings the model runs under, in words (for the reports' provenance)."""
        if self.config_path is None:
            return "onnxruntime defaults"
        return f"{self.config_path} ({'found beside the model' if self.config_found else 'given'})"


def load_model(path: str | os.PathLike, config_path: str | os.PathLike | None = None, *, discover_config: bool = True) -> LoadedModel:
    """Validate and load a model (io.ModelInputError when bad); its settings file when given or, with
    `discover_config`, when one written for it lies next to it."""
    from optimizer.verify import check_value_sizes

    path = Path(path)
    model = io.load(path)
    check_value_sizes(model)  # a value too large for memory: refused before it runs
    beside = runtime.config_path_for(path)
    found = config_path is None and discover_config and beside.is_file() and runtime.is_config_of(beside, path.name)
    if found:
        config_path = beside
    if config_path is not None:
        runtime.load_config(config_path)  # ConfigError now rather than mid-measurement
    return LoadedModel(path, model, Path(config_path) if config_path is not None else None, found)


def settings_note(models: Mapping[str, LoadedModel]) -> str | None:
    """A warning when the models run under different settings (one has a settings file, another not):
    their latency then compares settings as well as graphs."""
    kinds = {label: model.config_path is not None for label, model in models.items()}
    if len(set(kinds.values())) < 2:
        return None
    tuned = [label for label, has in kinds.items() if has]
    plain = [label for label, has in kinds.items() if not has]
    return (f"{' and '.join(tuned)} run{'s' if len(tuned) == 1 else ''} under {'its' if len(tuned) == 1 else 'their'} settings file, "
            f"{' and '.join(plain)} under onnxruntime defaults: the latency compares settings as well as graphs "
            "(give each a settings file, or none with --no-config)")


def model_summary(loaded: LoadedModel) -> dict:
    """Path, size on disk, nodes and op counts, parameters, weight bytes by dtype and by op type."""
    from optimizer.stats import ModelStats

    stats = ModelStats.of(loaded.model, loaded.path)
    return {
        "path": str(loaded.path),
        "file_bytes": stats.file_bytes,
        "nodes": stats.nodes,
        "op_counts": stats.op_counts,
        "parameters": io.parameter_count(loaded.model),
        "weight_bytes_by_dtype": stats.weight_bytes_by_dtype,
        "weight_bytes_by_op_type": stats.weight_bytes_by_op_type,
        "config": str(loaded.config_path) if loaded.config_path else None,
    }


def _inputs(model: ir.Model) -> dict[str, tuple]:
    """Graph inputs (initializers aside): name -> (dtype, static dims with None for dynamic ones)."""
    initializers = set(model.graph.initializers)
    return {
        v.name: (v.dtype, None if v.shape is None else tuple(d if isinstance(d, int) else None for d in v.shape))
        for v in model.graph.inputs if v.name not in initializers
    }


def _compatible(a: tuple, b: tuple) -> bool:
    (dtype_a, dims_a), (dtype_b, dims_b) = a, b
    if dtype_a is not None and dtype_b is not None and dtype_a != dtype_b:
        return False
    if dims_a is None or dims_b is None:
        return True
    return len(dims_a) == len(dims_b) and all(x is None or y is None or x == y for x, y in zip(dims_a, dims_b))


@dataclasses.dataclass
class Interface:
    """What two models have in common: outputs to compare, and outputs only one of them has."""

    shared: list[str]
    only_a: list[str]
    only_b: list[str]


def check_same_interface(a: LoadedModel, b: LoadedModel) -> Interface:
    """Their common outputs (ComparisonError when the inputs differ in name, dtype or static dims, or no output is shared)."""
    inputs_a, inputs_b = _inputs(a.model), _inputs(b.model)
    if sorted(inputs_a) != sorted(inputs_b):
        raise ComparisonError(f"{a.path.name} and {b.path.name} take different inputs ({', '.join(inputs_a)} vs {', '.join(inputs_b)})")
    for name in inputs_a:
        if not _compatible(inputs_a[name], inputs_b[name]):
            raise ComparisonError(f"input '{name}' differs: {_describe(inputs_a[name])} in {a.path.name}, {_describe(inputs_b[name])} in {b.path.name}")
    outputs_a, outputs_b = [v.name for v in a.model.graph.outputs], [v.name for v in b.model.graph.outputs]
    shared = [name for name in outputs_a if name in outputs_b]
    if not shared:
        raise ComparisonError(f"{a.path.name} and {b.path.name} have no output name in common")
    return Interface(shared, [n for n in outputs_a if n not in outputs_b], [n for n in outputs_b if n not in outputs_a])


def _describe(spec: tuple) -> str:
    dtype, dims = spec
    shape = "?" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    return f"{dtype.name.lower() if dtype is not None else '?'} {shape}"


def run_outputs(session, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    return session.run(list(names), dict(feeds))


def output_errors_with_stats(reference: LoadedModel, candidate: LoadedModel, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> list[tuple[OutputError, dict | None]]:
    """Per-output error of the candidate against the reference on `feeds` (one session at a time), with
    its element-wise statistics (optimizer.error_stats)."""
    from optimizer.error_stats import error_statistics

    expected, actual = _run(reference, feeds, names, candidate), _run(candidate, feeds, names, reference)
    return list(zip(measure_errors(names, expected, actual), (error_statistics(e, a) for e, a in zip(expected, actual))))


def error_rows(measured: Sequence[tuple[OutputError, dict | None]]) -> list[dict]:
    """The JSON rows of `output_errors_with_stats`: the error metrics and `stats`."""
    return [{**error.to_dict(), "stats": stats} for error, stats in measured]


def _run(model: LoadedModel, feeds: Mapping[str, np.ndarray], names: Sequence[str], other: LoadedModel) -> list[np.ndarray]:
    try:
        return run_outputs(model.session(), feeds, names)
    except runtime.ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several types
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ComparisonError(f"{model.path.name} does not run on the inputs of {other.path.name}: {message}") from None


def op_count_diff(a: Mapping[str, int], b: Mapping[str, int]) -> list[dict]:
    """One row per op type in either model: counts in A and B and the change, changed ops first."""
    rows = [{"op": op, "a": a.get(op, 0), "b": b.get(op, 0), "delta": b.get(op, 0) - a.get(op, 0)} for op in set(a) | set(b)]
    return sorted(rows, key=lambda r: (r["delta"] == 0, -abs(r["delta"]), r["op"]))


@dataclasses.dataclass
class LatencyComparison:
    """Latency of a candidate against a reference, timed together with a control copy of the reference."""

    reference: LatencyStats
    candidate: LatencyStats
    control: LatencyStats
    noise: float
    plan: dict

    @property
    def ratio_median(self) -> float:
        """Candidate time over reference time, by median (above 1: the candidate is slower)."""
        return self.candidate.median_ms / self.reference.median_ms

    @property
    def ratio_min(self) -> float:
        return self.candidate.min_ms / self.reference.min_ms

    def verdict(self, reference_name: str = "A", candidate_name: str = "B") -> str:
        """One sentence: faster, slower or the same within the noise, by both median and minimum."""
        low, high = sorted((self.ratio_median, self.ratio_min))
        if high < 1 - self.noise:
            return f"{candidate_name} is faster: {1 / self.ratio_median:.2f}x {reference_name}'s speed by median, {1 / self.ratio_min:.2f}x by minimum (noise {self.noise:.0%})"
        if low > 1 + self.noise:
            return f"{candidate_name} is slower: {self.ratio_median:.2f}x {reference_name}'s time by median, {self.ratio_min:.2f}x by minimum (noise {self.noise:.0%})"
        return f"no difference beyond the noise ({self.ratio_median:.2f}x by median, {self.ratio_min:.2f}x by minimum; noise {self.noise:.0%})"

    def to_dict(self) -> dict:
        return {
            "reference": dataclasses.asdict(self.reference),
            "candidate": dataclasses.asdict(self.candidate),
            "control": dataclasses.asdict(self.control),
            "ratio_median": self.ratio_median,
            "ratio_min": self.ratio_min,
            "noise": self.noise,
            "plan": self.plan,
        }


def time_with_control(
    reference: LoadedModel, feeds: Mapping[str, np.ndarray], others: Mapping[str, LoadedModel] | None = None, *,
    budget_s: float | None = 20.0, on_progress: Callable[[str, float], None] | None = None,
) -> tuple[dict[str, LatencyStats], float, dict]:
    """Time the reference (`"reference"`), a control copy of it (`"control"`) and `others` in rotated
    blocks within `budget_s`: the stats by name, the noise the control shows (at least NOISE_FLOOR), the plan."""
    feeds = dict(feeds)
    models = {"reference": reference, "control": reference, **(others or {})}
    runners = {name: (lambda s=model.session(): s.run(None, feeds)) for name, model in models.items()}
    stats, plan = time_candidates(
        runners, rounds=20, budget_s=budget_s,
        on_round=(lambda done, total: on_progress("timing", done / total)) if on_progress else None,
    )
    base, control = stats["reference"], stats["control"]
    noise = max(abs(control.median_ms / base.median_ms - 1), abs(control.min_ms / base.min_ms - 1), NOISE_FLOOR)
    return stats, noise, plan


def time_against(
    reference: LoadedModel, candidate: LoadedModel, feeds: Mapping[str, np.ndarray], *,
    budget_s: float | None = 20.0, on_progress: Callable[[str, float], None] | None = None,
) -> LatencyComparison:
    """Time the reference, a control copy of it and the candidate in rotated blocks, within `budget_s`."""
    stats, noise, plan = time_with_control(reference, feeds, {"candidate": candidate}, budget_s=budget_s, on_progress=on_progress)
    return LatencyComparison(stats["reference"], stats["candidate"], stats["control"], noise, plan)


def compare_models(
    a_path: str | os.PathLike, b_path: str | os.PathLike, *,
    inputs: Mapping[str, np.ndarray] | None = None, input_shapes: Mapping[str, Sequence[int]] | None = None,
    config_a: str | os.PathLike | None = None, config_b: str | os.PathLike | None = None,
    latency: bool = True, budget_s: float | None = 20.0, on_progress: Callable[[str, float], None] | None = None,
    discover_configs: bool = True,
) -> dict:
    """The `compare` document's body: both models' summaries, error per output of B against A, op-count
    and size diffs and, with `latency`, B's time against A's measured in one run."""
    from optimizer.reports.summary import summarize_model
    from optimizer.verify import feeds_for

    started = time.perf_counter()
    a, b = load_model(a_path, config_a, discover_config=discover_configs), load_model(b_path, config_b, discover_config=discover_configs)
    interface = check_same_interface(a, b)
    feeds, source = feeds_for(a.path, a.model, inputs, input_shapes, 1)
    summary_a, summary_b = model_summary(a), model_summary(b)
    errors = output_errors_with_stats(a, b, feeds, interface.shared)
    warnings = [f"outputs only in {which}: {', '.join(names)}" for which, names in (("A", interface.only_a), ("B", interface.only_b)) if names]
    note = settings_note({"A": a, "B": b}) if latency else None
    warnings += [note] if note else []
    body = {
        "summary": {"models": [summarize_model(a.model, a.path, "A"), summarize_model(b.model, b.path, "B")], "seconds": None},
        "a": summary_a,
        "b": summary_b,
        "inputs": source,
        "settings": {"A": a.settings, "B": b.settings},
        "outputs_only_in_a": interface.only_a,
        "outputs_only_in_b": interface.only_b,
        "warnings": warnings,
        "outputs": error_rows(errors),
        "op_counts": op_count_diff(summary_a["op_counts"], summary_b["op_counts"]),
        "size": {
            "a_bytes": summary_a["file_bytes"],
            "b_bytes": summary_b["file_bytes"],
            "ratio": summary_b["file_bytes"] / summary_a["file_bytes"] if summary_a["file_bytes"] else None,
        },
        "latency": None,
    }
    if latency:
        timing = time_against(a, b, feeds, budget_s=budget_s, on_progress=on_progress)
        body["latency"] = {
            "a": dataclasses.asdict(timing.reference),
            "b": dataclasses.asdict(timing.candidate),
            "control": dataclasses.asdict(timing.control),
            "ratio_median": timing.ratio_median,
            "ratio_min": timing.ratio_min,
            "noise": timing.noise,
            "verdict": timing.verdict(),
            "plan": timing.plan,
        }
    body["summary"]["seconds"] = time.perf_counter() - started
    return body
