"""fuse-gelu (TVM style): the exporters' orders fuse, equivalence holds, each decline is named."""

import pytest

from passes.fusion.gelu import FuseGeluPass
from tests.helpers import assert_equivalent, assert_unchanged, from_text, ops, random_feeds, run_pass


def _text(body: str, opset: int = 20, extra_outputs: str = "") -> str:
    return f"""<ir_version: 10, opset_import: ["" : {opset}]>
g (float[2, 8] x) => (float[2, 8] y{extra_outputs})
  <float sqrt2 = {{1.4142135}}, float inv_sqrt2 = {{0.70710677}}, float one = {{1.0}}, float half = {{0.5}}, float two = {{2.0}}>
{{
  {body}
}}"""


PYTORCH = "a = Div(x, sqrt2)\n  e = Erf(a)\n  s = Add(e, one)\n  m = Mul(x, s)\n  y = Mul(m, half)"
HALF_FIRST = "h = Mul(half, x)\n  a = Mul(x, inv_sqrt2)\n  e = Erf(a)\n  s = Add(one, e)\n  y = Mul(h, s)"
HALF_SECOND = "a = Div(x, sqrt2)\n  e = Erf(a)\n  s = Add(e, one)\n  m = Mul(s, half)\n  y = Mul(x, m)"


@pytest.mark.parametrize("body", [PYTORCH, HALF_FIRST, HALF_SECOND], ids=["pytorch", "half-first", "half-second"])
def test_fuses_gelu_forms(body):
    text = _text(body)
    model = from_text(text)
    applied = run_pass(FuseGeluPass, model)
    assert applied.stats == {"gelu": 1}
    assert ops(model) == ["Gelu"]
    assert_equivalent(text, model, random_feeds(x=(2, 8)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "body, opset, reason, extra",
    [
        (PYTORCH, 17, "opset below 20 (use --target-opset 20)", ""),
        (PYTORCH.replace("Div(x, sqrt2)", "Div(x, two)"), 20, "Erf input is not x / sqrt(2)", ""),
        (PYTORCH.replace("y = Mul(m, half)", "y = Mul(m, two)"), 20, "product is not 0.5 * x * (1 + Erf)", ""),
        (PYTORCH + "\n  z = Relu(s)", 20, "1 + Erf is not multiplied", ", float[2, 8] z"),
    ],
    ids=["old-opset", "wrong-scale", "wrong-half", "shared-intermediate"],
)
def test_declines(body, opset, reason, extra):
    text = _text(body, opset, extra)
    model = from_text(text)
    applied = run_pass(FuseGeluPass, model)
    assert applied.stats == {}
    assert applied.declined == {f"gelu: {reason}": 1}
    assert_unchanged(text, model)
