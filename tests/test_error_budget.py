"""The --max-error SPEC, per-output error metrics and the budget check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimizer.error_budget import DEFAULT_BUDGET, ErrorBudget, ErrorLimit, measure_errors, parse_error_spec


@pytest.mark.parametrize("spec, metric, limit", [("rel=0.01", "rel", 0.01), ("cos=0.999", "cos", 0.999), ("top1=0.99", "top1", 0.99), (" REL = 0.5", "rel", 0.5)])
def test_parse_valid_specs(spec, metric, limit):
    assert parse_error_spec(spec) == ErrorLimit(metric, limit)


@pytest.mark.parametrize("spec, words", [
    ("rel", "METRIC=LIMIT"), ("abs=0.1", "one of rel, cos, top1"), ("rel=x", "not a number"),
    ("rel=-1", ">= 0"), ("cos=1.5", "[0, 1]"), ("top1=nan", "[0, 1]"), ("rel=inf", ">= 0"),
])
def test_parse_rejects_bad_specs_in_one_line(spec, words):
    with pytest.raises(ValueError) as raised:
        parse_error_spec(spec)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_budget_defaults_and_last_spec_of_a_metric_wins():
    assert ErrorBudget.parse([]) is DEFAULT_BUDGET
    assert str(DEFAULT_BUDGET) == "rel=0.05"
    assert str(ErrorBudget.parse(["rel=0.1", "cos=0.99", "rel=0.02"])) == "rel=0.02, cos=0.99"


def test_metrics_on_known_arrays():
    expected = np.array([[1.0, 2.0, 4.0], [3.0, 1.0, 0.0]], dtype=np.float32)
    actual = np.array([[1.0, 2.0, 3.6], [0.9, 3.0, 0.0]], dtype=np.float32)
    (error,) = measure_errors(["y"], [expected], [actual])
    assert error.max_abs == pytest.approx(2.1, rel=1e-6)
    assert error.rel == pytest.approx(2.1 / 4.0, rel=1e-6)
    e, a = expected.astype(np.float64).ravel(), actual.astype(np.float64).ravel()
    assert error.cos == pytest.approx(e @ a / (np.linalg.norm(e) * np.linalg.norm(a)))
    assert error.top1 == 0.5  # row 0 argmax agrees (2), row 1 does not (0 vs 1)
    assert error.nonfinite == 0


def test_identical_outputs_have_no_error_and_scalars_have_no_top1():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    errors = measure_errors(["a", "s"], [x, np.float32(3)], [x.copy(), np.float32(3)])
    assert (errors[0].rel, errors[0].cos, errors[0].top1) == (0.0, 1.0, 1.0)
    assert errors[1].top1 is None and errors[1].rel == 0.0


def test_nan_inf_in_a_variant_breaks_any_budget():
    expected = np.ones((2, 4), dtype=np.float32)
    actual = expected.copy()
    actual[0, 1] = np.inf
    actual[1, 2] = np.nan
    errors = measure_errors(["y"], [expected], [actual])
    assert errors[0].nonfinite == 2
    assert ErrorBudget.parse(["rel=1000"]).violations(errors) == ["2 NaN/Inf values on 'y'"]


def test_shape_mismatch_and_integer_outputs():
    (mismatch,) = measure_errors(["y"], [np.zeros((2, 2))], [np.zeros((2, 3))])
    assert math.isinf(mismatch.rel)
    (ints,) = measure_errors(["ids"], [np.array([1, 2, 3, 4])], [np.array([1, 2, 0, 4])])
    assert math.isinf(ints.rel) and ints.cos == 0.75
    (same,) = measure_errors(["ids"], [np.array([1, 2])], [np.array([1, 2])])
    assert same.rel == 0.0


def test_violations_name_metric_value_limit_and_output():
    expected = np.array([[0.0, 10.0], [10.0, 0.0]], dtype=np.float32)
    actual = np.array([[0.0, 9.0], [0.0, 10.0]], dtype=np.float32)
    errors = measure_errors(["logits"], [expected], [actual])
    budget = ErrorBudget.parse(["rel=0.05", "cos=0.999", "top1=0.99"])
    found = budget.violations(errors)
    assert found[0] == "rel error 1 > 0.05 on 'logits'"
    assert any(v.startswith("cosine ") and "< 0.999" in v for v in found)
    assert any(v == "top-1 agreement 0.5 < 0.99 on 'logits'" for v in found)
    assert ErrorBudget.parse(["rel=2"]).violations(errors) == []


def test_a_violation_prints_the_digits_that_tell_the_value_from_its_limit():
    from optimizer.error_budget import OutputError

    error = OutputError("out", max_abs=0.1, rel=0.01, cos=0.999698, top1=None, nonfinite=0)
    (line,) = ErrorBudget.parse(["cos=0.99999"]).violations([error])
    assert line == "cosine 0.999698 < 0.99999 on 'out'"  # not "cos error 1 < 0.99999"
