"""fuse-conv-affine (TVM style): exporters' per-channel Mul/Add after Conv fold; each decline is named."""

import numpy as np
import pytest

from passes.fusion.conv_affine import FuseConvAffinePass
from tests.helpers import assert_equivalent, assert_unchanged, from_text, model_text, random_feeds, run_pass, verify, verify_declines


def _values(count: int, low: float = -1.0, high: float = 1.0) -> str:
    return "{" + ", ".join(f"{v:.3f}" for v in np.linspace(low, high, count)) + "}"


CONSTANTS = f"""float[4, 3, 3, 3] w = {_values(108)}, float[4] b = {{0.1, -0.2, 0.3, 0.05}},
   float[1, 4, 1, 1] s_nchw = {{1.5, 0.5, -0.7, 1.1}}, float[4, 1, 1] s_chw = {{0.9, -1.2, 2.0, 0.3}},
   float[1, 4, 1, 1] t_nchw = {{0.3, -0.1, 0.2, 0.0}}, float[4, 1, 1] t_chw = {{-0.5, 0.4, 0.1, 0.6}},
   float s_scalar = {{2.5}}, float[1] t_one = {{-0.75}}, float[1, 1, 1, 1] s_ones = {{0.25}},
   float[4] s_flat = {{1.5, 0.5, -0.7, 1.1}}, float[1, 4, 5, 5] s_spatial = {_values(100)},
   float[2, 4, 1, 1] s_batch = {_values(8)}, float[1, 1, 4, 1, 1] s_rank5 = {{1.5, 0.5, -0.7, 1.1}},
   float[3, 1, 1] s_three = {{1.0, 2.0, 3.0}}, double[4, 1, 1] s_double = {{1.0, 2.0, 3.0, 4.0}},
   float[4, 1, 1] s_inf = {{1.0, inf, 3.0, 4.0}}"""


def _text(body: str, opset: int = 17, x: str = "float[1, 3, 5, 5] x", y: str = "float[1, 4, 5, 5] y", constants: str = CONSTANTS) -> str:
    return model_text(body, x, y, constants, opset=opset)


FEEDS = random_feeds(x=(1, 3, 5, 5))


@pytest.mark.parametrize(
    "body, stats",
    [
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = Mul(c, s_nchw)", {"conv+mul": 1}),  # PyTorch: Conv with bias
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w)\n  y = Mul(s_chw, c)", {"conv+mul": 1}),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = Mul(c, s_scalar)", {"conv+mul": 1}),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = Mul(c, s_ones)", {"conv+mul": 1}),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = Add(c, t_nchw)", {"conv+add": 1}),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w)\n  y = Add(t_chw, c)", {"conv+add": 1}),  # tf2onnx: bias-less Conv + Add
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w)\n  y = Add(c, t_one)", {"conv+add": 1}),
        # tf2onnx's decomposed BatchNormalization: bias-less Conv, Mul then Add of [C, 1, 1] constants.
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w)\n  m = Mul(c, s_chw)\n  y = Add(m, t_chw)", {"conv+mul": 1, "conv+add": 1}),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  a = Add(c, t_nchw)\n  y = Mul(s_nchw, a)", {"conv+mul": 1, "conv+add": 1}),
    ],
    ids=["bias-mul-nchw", "no-bias-mul-chw-first", "mul-scalar", "mul-ones", "bias-add-nchw", "no-bias-add-chw", "add-one", "tf-mul-add", "add-then-mul"],
)
@pytest.mark.parametrize("opset", [9, 13, 18])
def test_fuses(body, stats, opset):
    text = _text(body, opset)
    model, _ = verify(FuseConvAffinePass, text, ["Conv"], None, stats=stats)
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(text, model, FEEDS, rtol=1e-5, atol=1e-5)


def test_add_creates_the_bias():
    text = _text("c = Conv<pads=[1, 1, 1, 1]>(x, w)\n  y = Add(c, t_chw)")
    model = from_text(text)
    run_pass(FuseConvAffinePass, model)
    conv = model.graph.node(0)
    assert len(conv.inputs) == 3
    np.testing.assert_allclose(conv.inputs[2].const_value.numpy(), [-0.5, 0.4, 0.1, 0.6])


def test_fuses_conv1d():
    text = _text(
        "c = Conv<pads=[1, 1]>(x, w)\n  m = Mul(c, s)\n  y = Add(m, t)",
        x="float[2, 3, 7] x",
        y="float[2, 4, 7] y",
        constants=f"float[4, 3, 3] w = {_values(36)}, float[4, 1] s = {{1.5, 0.5, -0.7, 1.1}}, float[4, 1] t = {{0.3, -0.1, 0.2, 0.0}}",
    )
    verify(FuseConvAffinePass, text, ["Conv"], random_feeds(x=(2, 3, 7)), stats={"conv+mul": 1, "conv+add": 1}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("group", [1, 2, 4])
def test_fuses_conv_transpose(group):
    # ConvTranspose weight [C_in, C_out/group, k, k]; C_out = 4 in every case.
    per_group = 4 // group
    text = _text(
        "c = ConvTranspose<group=G, strides=[2, 2]>(x, w, b)\n  m = Mul(c, s)\n  y = Add(t, m)".replace("G", str(group)),
        x="float[1, 4, 3, 3] x",
        y="float[1, 4, 7, 7] y",
        constants=f"float[4, {per_group}, 3, 3] w = {_values(36 * per_group)}, float[4] b = {{0.1, -0.2, 0.3, 0.05}}, "
        "float[1, 4, 1, 1] s = {1.5, 0.5, -0.7, 1.1}, float[4, 1, 1] t = {0.3, -0.1, 0.2, 0.0}",
    )
    verify(FuseConvAffinePass, text, ["ConvTranspose"], random_feeds(x=(1, 4, 3, 3)), stats={"conv+mul": 1, "conv+add": 1}, rtol=1e-5, atol=1e-5)


def test_fuses_grouped_conv():
    text = _text(
        "c = Conv<group=2, pads=[1, 1, 1, 1]>(x, w)\n  y = Mul(c, s_chw)",
        x="float[1, 4, 5, 5] x",
        constants=f"float[4, 2, 3, 3] w = {_values(72)}, float[4, 1, 1] s_chw = {{0.9, -1.2, 2.0, 0.3}}",
    )
    verify(FuseConvAffinePass, text, None, random_feeds(x=(1, 4, 5, 5)), stats={"conv+mul": 1}, rtol=1e-5, atol=1e-5)


def test_keeps_a_shared_weight_for_its_other_reader():
    text = _text(
        "c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  m = Mul(c, s_chw)\n  d = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = Add(m, d)",
    )
    verify(FuseConvAffinePass, text, ["Conv", "Conv", "Add"], FEEDS, stats={"conv+mul": 1}, rtol=1e-5, atol=1e-5)


CONV = "c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  "


@pytest.mark.parametrize(
    "body, reason, x, y",
    [
        ("c = Relu(x)\n  y = Mul(c, s_scalar)", "conv+mul: input is not produced by Conv", None, "float[1, 3, 5, 5] y"),
        (CONV + "y = Mul(c, s_chw)\n  z = Relu(c)", "conv+mul: Conv output is also used elsewhere", None, "float[1, 4, 5, 5] y, float[1, 4, 5, 5] z"),
        (CONV + "y = Add(c, c)", "conv+add: Conv output is also used elsewhere", None, None),
        (CONV + "y = Mul(c, v)", "conv+mul: other operand is not a constant", "float[1, 3, 5, 5] x, float[4, 1, 1] v", None),
        (CONV + "y = Add(v, c)", "conv+add: other operand is not a constant", "float[1, 3, 5, 5] x, float[4, 1, 1] v", None),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, v)\n  y = Mul(c, s_chw)", "conv+mul: Conv weight is not a constant", "float[1, 3, 5, 5] x, float[4, 3, 3, 3] v", None),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w, v)\n  y = Add(c, t_chw)", "conv+add: Conv bias is not a constant", "float[1, 3, 5, 5] x, float[4] v", None),
        (CONV + "y = Mul(c, s_double)", "conv+mul: not floating point of one type", None, None),
        (CONV + "y = Mul(c, s_flat)", "conv+mul: constant varies over batch or spatial dims", None, None),
        (CONV + "y = Mul(c, s_spatial)", "conv+mul: constant varies over batch or spatial dims", None, None),
        (CONV + "y = Add(c, s_batch)", "conv+add: constant varies over batch or spatial dims", None, "float[2, 4, 5, 5] y"),
        (CONV + "y = Mul(c, s_rank5)", "conv+mul: constant has more dims than the Conv output (the broadcast would change its shape)", None, "float[1, 1, 4, 5, 5] y"),
        (CONV + "y = Mul(c, s_inf)", "conv+mul: scale is not finite", None, None),
    ],
    ids=[
        "not-conv", "shared-conv", "add-itself", "mul-input", "add-input", "weight-input", "bias-input",
        "dtype", "flat-runs-along-width", "spatial", "batch", "more-dims", "infinite",
    ],
)
def test_declines(body, reason, x, y):
    text = _text(body, x=x or "float[1, 3, 5, 5] x", y=y or "float[1, 4, 5, 5] y")
    verify_declines(FuseConvAffinePass, text, {reason: 1})


def test_declines_a_broadcast_that_grows_the_channels():
    # A 1-channel Conv times a [3, 1, 1] constant has 3 channels: no weight of the Conv can do that.
    text = _text(
        "c = Conv<pads=[1, 1, 1, 1]>(x, w1)\n  y = Mul(c, s_three)",
        y="float[1, 3, 5, 5] y",
        constants=f"float[1, 3, 3, 3] w1 = {_values(27)}, float[3, 1, 1] s_three = {{1.0, 2.0, 3.0}}",
    )
    model = from_text(text)
    applied = run_pass(FuseConvAffinePass, model)
    assert applied.declined == {"conv+mul: constant's channel dim is not the Conv's output channels": 1}
    assert_unchanged(text, model)


def test_declines_a_weight_not_split_into_groups():
    # Malformed on purpose (4 output channels do not split into 3 groups): the pass must not guess.
    text = _text("c = Conv<group=3>(x, w)\n  y = Mul(c, s_chw)", y="float[1, 4, 3, 3] y")
    model = from_text(text)
    applied = run_pass(FuseConvAffinePass, model)
    assert applied.declined == {"conv+mul: Conv weight does not split into its groups": 1}
    assert_unchanged(text, model)


def test_declines_a_bias_of_another_length():
    # Malformed on purpose: a 3-value bias for 4 output channels.
    text = _text("c = Conv<pads=[1, 1, 1, 1]>(x, w, b3)\n  y = Add(c, t_chw)", constants=CONSTANTS + ", float[3] b3 = {1.0, 2.0, 3.0}")
    model = from_text(text)
    applied = run_pass(FuseConvAffinePass, model)
    assert applied.declined == {"conv+add: Conv bias length differs from its output channels": 1}
    assert_unchanged(text, model)


def test_declines_across_graphs():
    text = f"""<ir_version: 10, opset_import: ["" : 17]>
g (float[1, 3, 5, 5] x, float[1, 4, 5, 5] z, bool cond) => (float[1, 4, 5, 5] y) <{CONSTANTS}> {{
  c = Conv<pads=[1, 1, 1, 1]>(x, w, b)
  y = If(cond) <
    then_branch = then_g () => (float[1, 4, 5, 5] r) {{ r = Mul(c, s_chw) }},
    else_branch = else_g () => (float[1, 4, 5, 5] q) {{ q = Neg(z) }}
  >
}}"""
    model = from_text(text)
    applied = run_pass(FuseConvAffinePass, model)
    assert applied.declined == {"conv+mul: Conv and Mul live in different graphs": 1}
    assert_unchanged(text, model)
