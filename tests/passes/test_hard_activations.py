"""fuse-hard-activations (TVM style): HardSigmoid and HardSwish forms fuse, equivalence holds, each decline is named.

A clamp (Clip, Min, Max) is the anchor of both the hard-swish and the hard-sigmoid rule, so a clamp
that neither takes is declined by both, each with its own reason; the tests state both.
"""

import numpy as np
import pytest

from passes.fusion.hard_activations import FuseHardActivationsPass
from tests.helpers import assert_equivalent, model_text, verify, verify_declines


def _text(body: str, opset: int = 14, extra_outputs: str = "", extra_inputs: str = "", dtype: str = "float") -> str:
    return model_text(body, f"{dtype}[2, 8] x{extra_inputs}", f"{dtype}[2, 8] y{extra_outputs}", f"""int32 three_i = {{3}}, int32 zero_i = {{0}}, int32 six_i = {{6}}, float zero = {{0.0}}, float one = {{1.0}}, float half = {{0.5}}, float three = {{3.0}}, float six = {{6.0}}, float five = {{5.0}},
   float two = {{2.0}}, float sixth = {{0.16666667}}, float fifth = {{0.2}}, float[8] bias = {{-1, -0.5, 0, 0.5, 1, 1.5, 2, 2.5}}""", opset=opset)


def _feeds() -> dict[str, np.ndarray]:
    # Spread over both saturated ends and the linear part of relu6(x + 3).
    return {"x": (4 * np.random.default_rng(0).standard_normal((2, 8))).astype(np.float32)}


# HardSigmoid forms
KERAS_HARD_SIGMOID = "a = Mul(x, fifth)\n  b = Add(a, half)\n  y = Clip(b, zero, one)"
RELU6_DIV = "a = Add(x, three)\n  c = Clip(a, zero, six)\n  y = Div(c, six)"
RELU6_MUL = "a = Add(three, x)\n  c = Clip(a, zero, six)\n  y = Mul(sixth, c)"
RELU6_ATTRIBUTES = "a = Add(x, three)\n  c = Clip<min=0.0, max=6.0>(a)\n  y = Div(c, six)"
MIN_MAX = "a = Add(x, three)\n  m = Max(a, zero)\n  c = Min(m, six)\n  y = Div(c, six)"
MAX_MIN = "a = Sub(x, half)\n  m = Min(six, a)\n  c = Max(m, zero)\n  y = Mul(c, sixth)"

# HardSwish forms
MUL_THEN_DIV = "a = Add(x, three)\n  c = Clip(a, zero, six)\n  m = Mul(x, c)\n  y = Div(m, six)"
DIV_THEN_MUL = "a = Add(x, three)\n  c = Clip(a, zero, six)\n  d = Div(c, six)\n  y = Mul(x, d)"
KERAS_HARD_SWISH = "a = Add(x, three)\n  c = Clip(a, zero, six)\n  d = Mul(c, sixth)\n  y = Mul(d, x)"
CLIP_01 = "a = Div(x, six)\n  b = Add(a, half)\n  c = Clip(b, zero, one)\n  y = Mul(x, c)"
MIN_MAX_SWISH = "a = Add(x, three)\n  m = Max(a, zero)\n  c = Min(m, six)\n  p = Mul(c, x)\n  y = Mul(p, sixth)"
TORCH_BELOW_14 = "h = HardSigmoid<alpha=0.16666667, beta=0.5>(x)\n  y = Mul(x, h)"


@pytest.mark.parametrize(
    "body, opset, alpha, beta",
    [
        (KERAS_HARD_SIGMOID, 13, 0.2, 0.5),
        (RELU6_DIV, 13, 1 / 6, 0.5),
        (RELU6_MUL, 13, 1 / 6, 0.5),
        (RELU6_ATTRIBUTES, 10, 1 / 6, 0.5),
        (MIN_MAX, 13, 1 / 6, 0.5),
        (MAX_MIN, 13, 1 / 6, -0.5 / 6),
    ],
    ids=["keras-clip", "relu6-div", "relu6-mul", "clip-attributes-opset10", "min-max", "max-min-sub"],
)
def test_fuses_hard_sigmoid_forms(body, opset, alpha, beta):
    text = _text(body, opset)
    model, _ = verify(FuseHardActivationsPass, text, ["HardSigmoid"], None, stats={"hard-sigmoid": 1})
    fused = next(iter(model.graph))
    assert fused.attributes["alpha"].as_float() == pytest.approx(alpha, rel=1e-6)
    assert fused.attributes["beta"].as_float() == pytest.approx(beta, rel=1e-6)
    assert fused.inputs[0].name == "x" and fused.outputs[0].name == "y"
    assert_equivalent(text, model, _feeds(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "body",
    [MUL_THEN_DIV, DIV_THEN_MUL, KERAS_HARD_SWISH, CLIP_01, MIN_MAX_SWISH, TORCH_BELOW_14],
    ids=["mul-then-div", "div-then-mul", "keras-mul-sixth", "clip-0-1", "min-max", "x-times-hardsigmoid"],
)
def test_fuses_hard_swish_forms(body):
    text = _text(body)
    model, _ = verify(FuseHardActivationsPass, text, ["HardSwish"], None, stats={"hard-swish": 1})
    assert next(iter(model.graph)).outputs[0].name == "y"
    assert_equivalent(text, model, _feeds(), rtol=1e-5, atol=1e-6)


def test_hard_swish_of_an_intermediate_keeps_its_producer():
    text = _text("u = Add(x, bias)\n  " + MUL_THEN_DIV.replace("(x,", "(u,"))
    verify(FuseHardActivationsPass, text, ["Add", "HardSwish"], _feeds(), stats={"hard-swish": 1}, rtol=1e-5, atol=1e-6)


def test_below_opset_14_only_the_hard_sigmoid_part_fuses():
    text = _text(DIV_THEN_MUL, opset=13)
    model, applied = verify(FuseHardActivationsPass, text, ["HardSigmoid", "Mul"], _feeds(), stats={"hard-sigmoid": 1}, rtol=1e-5, atol=1e-6)
    assert applied.declined == {"hard-swish: opset below 14 (use --target-opset 14)": 1}


NOT_MULTIPLIED = "hard-swish: clamp is not multiplied by its input"
NOT_0_1 = "hard-sigmoid: clamp range is not [0, 1] after scaling"


@pytest.mark.parametrize(
    "text, declined",
    [
        (_text(RELU6_DIV.replace("Div(c, six)", "Div(c, five)")), {NOT_MULTIPLIED: 1, NOT_0_1: 1}),
        (_text(RELU6_DIV.replace("Clip(a, zero, six)", "Clip(a, zero, top)"), extra_inputs=", float top"),
         {"hard-swish: Clip bounds are not constant": 1, "hard-sigmoid: Clip bounds are not constant": 1}),
        (_text(RELU6_DIV + "\n  z = Relu(c)", extra_outputs=", float[2, 8] z"),
         {"hard-swish: an intermediate is used elsewhere": 1, "hard-sigmoid: an intermediate is used elsewhere": 1}),
        (_text("y = Clip(x, zero, one)"), {NOT_MULTIPLIED: 1, "hard-sigmoid: a plain Clip to [0, 1]: nothing to fuse": 1}),
        (_text("a = Add(x, three_i)\n  c = Clip(a, zero_i, six_i)\n  y = Div(c, six_i)", dtype="int32"),
         {"hard-swish: input is not floating point": 1, "hard-sigmoid: input is not floating point": 1}),
        (_text("y = Min(x, six)"),
         {"hard-swish: Min is not a clamp Min(Max(x, constant), constant)": 1, "hard-sigmoid: Min is not a clamp Min(Max(x, constant), constant)": 1}),
        (_text(MIN_MAX + "\n  z = Relu(m)", extra_outputs=", float[2, 8] z"),
         {"hard-swish: Max is not a clamp Max(Min(x, constant), constant)": 1, "hard-sigmoid: Max is not a clamp Max(Min(x, constant), constant)": 1,
          "hard-swish: an intermediate is used elsewhere": 1, "hard-sigmoid: an intermediate is used elsewhere": 1}),
        (_text(MUL_THEN_DIV.replace("Add(x, three)", "Add(x, two)")), {"hard-swish: HardSigmoid part is not alpha 1/6, beta 1/2": 1, NOT_0_1: 1}),
        (_text(MUL_THEN_DIV, opset=13), {"hard-swish: opset below 14 (use --target-opset 14)": 1, NOT_0_1: 1}),
        (_text(MUL_THEN_DIV + "\n  z = Relu(a)", extra_outputs=", float[2, 8] z"),
         {"hard-swish: an intermediate is used elsewhere": 1, NOT_0_1: 1}),
        (_text(TORCH_BELOW_14, opset=13), {"hard-swish: opset below 14 (use --target-opset 14)": 1}),
        (_text(TORCH_BELOW_14.replace("Mul(x, h)", "Mul(h, two)")), {"hard-swish: HardSigmoid is not multiplied by its input": 1}),
        (_text(TORCH_BELOW_14.replace("alpha=0.16666667, ", "")), {"hard-swish: HardSigmoid part is not alpha 1/6, beta 1/2": 1}),
        (_text(TORCH_BELOW_14 + "\n  z = Relu(h)", extra_outputs=", float[2, 8] z"), {"hard-swish: an intermediate is used elsewhere": 1}),
    ],
    ids=[
        "wrong-scale", "non-constant-bound", "shared-clamp", "plain-clip", "integer", "min-not-a-clamp", "shared-max",
        "swish-wrong-offset", "swish-old-opset", "swish-shared-add",
        "hardsigmoid-old-opset", "hardsigmoid-not-times-x", "hardsigmoid-wrong-alpha", "hardsigmoid-shared",
    ],
)
def test_declines(text, declined):
    verify_declines(FuseHardActivationsPass, text, declined)
