"""fuse-gelu (TVM style): the exporters' orders fuse, equivalence holds, each decline is named."""

import pytest

from passes.fusion.gelu import FuseGeluAnyOpsetPass, FuseGeluPass
from tests.helpers import assert_equivalent, model_text, random_feeds, verify, verify_declines


def _text(body: str, opset: int = 20, extra_outputs: str = "") -> str:
    return model_text(body, "float[2, 8] x", f"float[2, 8] y{extra_outputs}", f"float sqrt2 = {{1.4142135}}, float inv_sqrt2 = {{0.70710677}}, float one = {{1.0}}, float half = {{0.5}}, float two = {{2.0}}", opset=opset)


PYTORCH = "a = Div(x, sqrt2)\n  e = Erf(a)\n  s = Add(e, one)\n  m = Mul(x, s)\n  y = Mul(m, half)"
HALF_FIRST = "h = Mul(half, x)\n  a = Mul(x, inv_sqrt2)\n  e = Erf(a)\n  s = Add(one, e)\n  y = Mul(h, s)"
HALF_SECOND = "a = Div(x, sqrt2)\n  e = Erf(a)\n  s = Add(e, one)\n  m = Mul(s, half)\n  y = Mul(x, m)"


@pytest.mark.parametrize("body", [PYTORCH, HALF_FIRST, HALF_SECOND], ids=["pytorch", "half-first", "half-second"])
def test_fuses_gelu_forms(body):
    text = _text(body)
    verify(FuseGeluPass, text, ["Gelu"], random_feeds(x=(2, 8)), stats={"gelu": 1}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "body, opset, reason, extra",
    [
        (PYTORCH, 17, "opset below 20 (use --target-opset 20 or --level O3)", ""),
        (PYTORCH.replace("Div(x, sqrt2)", "Div(x, two)"), 20, "Erf input is not x / sqrt(2)", ""),
        (PYTORCH.replace("y = Mul(m, half)", "y = Mul(m, two)"), 20, "product is not 0.5 * x * (1 + Erf)", ""),
        (PYTORCH + "\n  z = Relu(s)", 20, "1 + Erf is not multiplied", ", float[2, 8] z"),
    ],
    ids=["old-opset", "wrong-scale", "wrong-half", "shared-intermediate"],
)
def test_declines(body, opset, reason, extra):
    text = _text(body, opset, extra)
    verify_declines(FuseGeluPass, text, {f"gelu: {reason}": 1})


def _tanh_text(body: str, opset: int = 20, extra_outputs: str = "") -> str:
    return model_text(body, "float[2, 8] x", f"float[2, 8] y{extra_outputs}", f"""float k = {{0.7978845608}}, float c = {{0.044715}}, float kc = {{0.0356774081}}, float one = {{1.0}}, float half = {{0.5}},
   float two = {{2.0}}, float three = {{3.0}}, float four = {{4.0}}, float wrong = {{0.05}}""", opset=opset)


# transformers' NewGELUActivation (GPT-2 gelu_new) as torch.onnx exports it: 0.5*x first, Pow(x, 3.0).
GPT2 = """h = Mul(x, half)
  p = Pow(x, three)
  q = Mul(p, c)
  r = Add(x, q)
  t = Mul(r, k)
  th = Tanh(t)
  s = Add(th, one)
  y = Mul(h, s)"""
# x^3 as x * (x * x), constants on the left, 0.5 applied last.
CUBE_BY_MULS = """sq = Mul(x, x)
  cu = Mul(x, sq)
  q = Mul(c, cu)
  r = Add(q, x)
  t = Mul(k, r)
  th = Tanh(t)
  s = Add(one, th)
  m = Mul(x, s)
  y = Mul(m, half)"""
# FastGELU / Megatron: sqrt(2/pi) * x * (1 + 0.044715 * x * x), 0.5 applied to (1 + Tanh).
FACTORED = """a = Mul(x, k)
  b = Mul(c, x)
  bb = Mul(b, x)
  o = Add(one, bb)
  t = Mul(a, o)
  th = Tanh(t)
  s = Add(th, one)
  m = Mul(s, half)
  y = Mul(x, m)"""
# sqrt(2/pi) folded into the coefficients by a constant folder.
FOLDED = """a = Mul(x, k)
  p = Pow(x, three)
  b = Mul(p, kc)
  t = Add(a, b)
  th = Tanh(t)
  s = Add(th, one)
  m = Mul(x, s)
  y = Mul(half, m)"""


@pytest.mark.parametrize("body", [GPT2, CUBE_BY_MULS, FACTORED, FOLDED], ids=["gpt2-gelu-new", "cube-by-muls", "factored", "folded"])
def test_fuses_tanh_gelu_forms(body):
    text = _tanh_text(body)
    model, _ = verify(FuseGeluPass, text, ["Gelu"], None, stats={"gelu-tanh": 1})
    gelu = next(iter(model.graph))
    assert gelu.attributes["approximate"].as_string() == "tanh"
    assert gelu.inputs[0].name == "x" and gelu.outputs[0].name == "y"
    assert_equivalent(text, model, random_feeds(x=(2, 8)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "body, opset, reason, extra",
    [
        (GPT2, 18, "opset below 20 (use --target-opset 20 or --level O3)", ""),
        (GPT2.replace("Add(th, one)", "Add(th, two)"), 20, "Tanh is not followed by + 1", ""),
        (GPT2 + "\n  z = Relu(s)", 20, "1 + Tanh is not multiplied", ", float[2, 8] z"),
        (FACTORED.replace("  y = Mul(x, m)", "").replace("m = Mul(s, half)", "y = Mul(s, half)"), 20, "product is not completed by a second Mul", ""),
        (CUBE_BY_MULS.replace("Mul(m, half)", "Mul(m, two)"), 20, "product is not 0.5 * x * (1 + Tanh)", ""),
        (GPT2.replace("Pow(x, three)", "Pow(x, four)"), 20, "Tanh input is not a cubic polynomial in x", ""),
        (GPT2.replace("Mul(p, c)", "Mul(p, wrong)"), 20, "Tanh input is not sqrt(2/pi) * (x + 0.044715 * x^3)", ""),
        (GPT2 + "\n  z = Relu(p)", 20, "an intermediate is used elsewhere", ", float[2, 8] z"),
    ],
    ids=["old-opset", "not-plus-one", "shared-one-plus-tanh", "no-second-mul", "wrong-half", "not-cubic", "wrong-coefficient", "shared-cube"],
)
def test_tanh_declines(body, opset, reason, extra):
    text = _tanh_text(body, opset, extra)
    verify_declines(FuseGeluPass, text, {f"gelu-tanh: {reason}": 1})


@pytest.mark.parametrize(
    "text, op, rule, shape",
    [
        (_text(PYTORCH, opset=13), "Gelu", "gelu (opset < 20, onnxruntime)", (2, 8)),
        (_text(HALF_FIRST, opset=11), "Gelu", "gelu (opset < 20, onnxruntime)", (2, 8)),
        (_tanh_text(GPT2, opset=17), "FastGelu", "fastgelu (opset < 20, onnxruntime)", None),
    ],
    ids=["erf-opset13", "erf-opset11", "gpt2-tanh-opset17"],
)
def test_onnxruntime_variant_fuses_below_opset_20(text, op, rule, shape):
    model, _ = verify(FuseGeluAnyOpsetPass, text, [op], None, stats={rule: 1})
    assert model.graph.node(0).domain == "com.microsoft"
    assert model.opset_imports["com.microsoft"] == 1
    x_shape = tuple(model.graph.inputs[0].shape)
    assert_equivalent(text, model, random_feeds(x=x_shape), rtol=1e-4, atol=1e-5)


def test_onnxruntime_variant_leaves_opset_20_to_the_standard_pass():
    text = _text(PYTORCH, opset=20)
    verify_declines(FuseGeluAnyOpsetPass, text, {"gelu (opset < 20, onnxruntime): opset 20 or later: the standard fusion applies": 1})


def test_declines_when_the_scaled_input_is_a_graph_output():
    text = _text(PYTORCH, 20, ", float[2, 8] a")
    verify_declines(FuseGeluPass, text, "gelu: an intermediate is used elsewhere")
