"""Error statistics of one output against its reference, as polygraphy prints them: the distribution of
the absolute and relative error over the elements (mean, median, p90, p99, max), and the smallest
tolerance that would have passed.

This tool's check passes an output when `max|a - e| <= atol + rtol * max|e|` (optimizer.verify); the
minimum tolerances are given in those terms: `atol` with rtol 0, `rtol` with atol 0 and, when a
tolerance was in force, the atol needed at its rtol and the rtol needed at its atol.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PERCENTILES", "error_statistics", "distribution"]

PERCENTILES = (50, 90, 99)
"""Of the element-wise errors, besides the mean and the maximum."""


def distribution(values: np.ndarray) -> dict[str, float]:
    """Mean, p50, p90, p99 and max of a non-empty float array."""
    low, mid, high = (float(v) for v in np.percentile(values, PERCENTILES))
    return {"mean": float(np.mean(values)), "p50": low, "p90": mid, "p99": high, "max": float(np.max(values))}


def error_statistics(expected, actual, tolerance=None) -> dict | None:
    """The statistics of `actual` against `expected` (float arrays of one shape; non-finite elements
    left out), or None when there is nothing to measure (no finite element, other shapes, not floats).
    `tolerance` (with `rtol`, `atol`) adds the minimum of each at the other's value."""
    e, a = np.asarray(expected), np.asarray(actual)
    if e.shape != a.shape or e.dtype.kind not in "fc" or a.dtype.kind not in "fc":
        return None
    e, a = e.astype(np.float64).ravel(), a.astype(np.float64).ravel()
    finite = np.isfinite(e) & np.isfinite(a)
    e, a = e[finite], a[finite]
    if e.size == 0:
        return None
    absolute = np.abs(a - e)
    magnitude = np.abs(e)
    nonzero = magnitude > 0
    scale = float(np.max(magnitude))
    worst = float(np.max(absolute))
    minimum = {"atol": worst, "rtol": worst / scale if scale > 0 else (0.0 if worst == 0 else math.inf)}
    if tolerance is not None:
        minimum["atol_at_rtol"] = max(0.0, worst - tolerance.rtol * scale)
        minimum["rtol_at_atol"] = max(0.0, (worst - tolerance.atol) / scale) if scale > 0 else (0.0 if worst <= tolerance.atol else math.inf)
    return {
        "elements": int(e.size),
        "abs": distribution(absolute),
        "rel": distribution(absolute[nonzero] / magnitude[nonzero]) if nonzero.any() else None,
        "min_tolerance": minimum,
    }
