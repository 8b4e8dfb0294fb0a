"""Error budgets for lossy variants: the `--max-error SPEC` syntax, per-output error metrics, the check.

A SPEC is `METRIC=LIMIT`:
  rel=0.01    max|a-b| / max|a| per output (at most the limit)
  cos=0.999   cosine similarity per output (at least the limit)
  top1=0.99   argmax agreement over the last axis (at least the limit; outputs whose last axis has 2+ entries)
Every limit must hold on every output it applies to (`optimize --max-error`; meant to serve CI gates too).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from optimizer.verify import float_error_metrics

__all__ = ["ErrorLimit", "ErrorBudget", "OutputError", "parse_error_spec", "measure_errors", "DEFAULT_BUDGET"]

METRICS = {
    "rel": ("max|a-b| / max|a|", "at most"),
    "cos": ("cosine similarity", "at least"),
    "top1": ("argmax agreement over the last axis", "at least"),
}


@dataclasses.dataclass(frozen=True)
class ErrorLimit:
    metric: str
    limit: float

    def holds(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return value <= self.limit if self.metric == "rel" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.metric}={self.limit:g}"


def parse_error_spec(spec: str) -> ErrorLimit:
    """`rel=0.01`, `cos=0.999` or `top1=0.99`; ValueError with a one-line message otherwise."""
    metric, sep, value = spec.partition("=")
    metric = metric.strip().lower()
    if not sep or metric not in METRICS:
        raise ValueError(f"--max-error {spec!r}: expected METRIC=LIMIT with METRIC one of {', '.join(METRICS)} (e.g. rel=0.01)")
    try:
        limit = float(value)
    except ValueError:
        raise ValueError(f"--max-error {spec!r}: {value!r} is not a number") from None
    if not math.isfinite(limit) or limit < 0 or (metric != "rel" and limit > 1):
        bound = "a number >= 0" if metric == "rel" else "a number in [0, 1]"
        raise ValueError(f"--max-error {spec!r}: the {metric} limit must be {bound}")
    return ErrorLimit(metric, limit)


@dataclasses.dataclass
class OutputError:
    """How far one output of a lossy variant is from the original's."""

    name: str
    max_abs: float
    rel: float
    cos: float
    top1: float | None
    nonfinite: int
    """NaN/Inf entries in the variant's output where the original's is finite."""

    def value(self, metric: str) -> float | None:
        return getattr(self, metric)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _output_error(name: str, expected, actual) -> OutputError:
    a = np.asarray(expected)
    b = np.asarray(actual)
    if a.shape != b.shape:
        return OutputError(name, math.inf, math.inf, 0.0, 0.0 if a.ndim else None, 0)
    if a.dtype.kind not in "fc":
        same = float(np.mean(a == b)) if a.size else 1.0
        return OutputError(name, 0.0 if same == 1.0 else math.inf, 0.0 if same == 1.0 else math.inf, same, None, 0)
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    finite = np.isfinite(a64)
    nonfinite = int(np.count_nonzero(finite & ~np.isfinite(b64)))
    if nonfinite:
        return OutputError(name, math.inf, math.inf, 0.0, 0.0 if a.ndim and a.shape[-1] > 1 else None, nonfinite)
    a64, b64 = np.where(finite, a64, 0.0), np.where(finite, b64, 0.0)
    max_abs, rel, cos = float_error_metrics(a64, b64)
    top1 = None
    if a.ndim >= 1 and a.shape[-1] > 1 and a.size:
        top1 = float(np.mean(np.argmax(a64, axis=-1) == np.argmax(b64, axis=-1)))
    return OutputError(name, max_abs, rel, min(cos, 1.0), top1, 0)


def measure_errors(names: Sequence[str], expected: Sequence, actual: Sequence) -> list[OutputError]:
    """Per-output errors of `actual` (a lossy variant's outputs) against `expected` (the original's)."""
    return [_output_error(name, a, b) for name, a, b in zip(names, expected, actual)]


@dataclasses.dataclass(frozen=True)
class ErrorBudget:
    limits: tuple[ErrorLimit, ...]

    @classmethod
    def parse(cls, specs: Sequence[str]) -> ErrorBudget:
        """From `--max-error` values; the default budget when none is given. A metric given twice keeps the last."""
        if not specs:
            return DEFAULT_BUDGET
        limits = {limit.metric: limit for limit in (parse_error_spec(spec) for spec in specs)}
        return cls(tuple(limits.values()))

    def violations(self, errors: Sequence[OutputError]) -> list[str]:
        """One line per broken limit, e.g. "rel error 0.67 > 0.05 on 'logits'"; empty when the budget holds."""
        found = []
        for error in errors:
            if error.nonfinite:
                found.append(f"{error.nonfinite} NaN/Inf values on '{error.name}'")
                continue
            for limit in self.limits:
                value = error.value(limit.metric)
                if value is None:
                    continue
                if not limit.holds(value):
                    from optimizer.units import format_against

                    sign = ">" if limit.metric == "rel" else "<"
                    words = {"rel": "rel error", "cos": "cosine", "top1": "top-1 agreement"}.get(limit.metric, f"{limit.metric} error")
                    found.append(f"{words} {format_against(value, limit.limit)} {sign} {limit.limit:g} on '{error.name}'")
        return found

    def __str__(self) -> str:
        return ", ".join(str(limit) for limit in self.limits)


DEFAULT_BUDGET = ErrorBudget((ErrorLimit("rel", 0.05),))
"""Used when no `--max-error` is given: 5% of each output's largest magnitude."""
