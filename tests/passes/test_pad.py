"""fuse-pad (TVM style): zero Pads fold into Conv/AveragePool pads across opsets; each decline is named."""

import numpy as np
import pytest

from passes.fusion.pad import FusePadPass
from tests.helpers import assert_equivalent, assert_unchanged, from_text, model_text, ops, random_feeds, run_pass, verify, verify_declines


def _values(count: int) -> str:
    return "{" + ", ".join(f"{v:.3f}" for v in np.linspace(-1, 1, count)) + "}"


CONSTANTS = f"""float[4, 3, 3, 3] w = {_values(108)}, float[4] b = {{0.1, -0.2, 0.3, 0.05}},
   int64[8] pads = {{0, 0, 1, 2, 0, 0, 2, 1}}, int64[8] pads_sym = {{0, 0, 1, 1, 0, 0, 1, 1}},
   int64[4] pads_hw = {{1, 2, 2, 1}}, int64[2] axes_hw = {{2, 3}}, int64[2] axes_neg = {{-1, -2}},
   int64[8] pads_neg = {{0, 0, -1, 0, 0, 0, 0, 0}}, int64[8] pads_channel = {{0, 1, 1, 1, 0, 0, 1, 1}},
   float zero = {{0.0}}, float one = {{1.0}}"""


def _text(body: str, opset: int = 13, x: str = "float[1, 3, 5, 5] x", y: str = "float[1, 4, 6, 6] y", constants: str = CONSTANTS) -> str:
    return model_text(body, x, y, constants, opset=opset)


FEEDS = random_feeds(x=(1, 3, 5, 5))


@pytest.mark.parametrize(
    "body, opset, y",
    [
        # opset < 11: pads and value are attributes.
        ("p = Pad<pads=[0, 0, 1, 2, 0, 0, 2, 1]>(x)\n  y = Conv(p, w, b)", 9, "float[1, 4, 6, 6] y"),
        ("p = Pad<mode=\"constant\", value=0.0, pads=[0, 0, 1, 1, 0, 0, 1, 1]>(x)\n  y = Conv(p, w)", 10, "float[1, 4, 5, 5] y"),
        # opset >= 11: pads (and constant_value) are inputs. PyTorch: F.pad then Conv with bias.
        ("p = Pad(x, pads)\n  y = Conv(p, w, b)", 11, "float[1, 4, 6, 6] y"),
        ("p = Pad(x, pads_sym, zero)\n  y = Conv(p, w)", 13, "float[1, 4, 5, 5] y"),  # tf2onnx: Conv without bias
        ("k = Constant<value = int64[8] {0, 0, 1, 2, 0, 0, 2, 1}>()\n  p = Pad(x, k)\n  y = Conv(p, w, b)", 13, "float[1, 4, 6, 6] y"),
        # opset 18: axes.
        ("p = Pad(x, pads_hw, , axes_hw)\n  y = Conv(p, w, b)", 18, "float[1, 4, 6, 6] y"),
        ("p = Pad(x, pads_hw, zero, axes_neg)\n  y = Conv(p, w, b)", 18, "float[1, 4, 6, 6] y"),
        # The Conv's own pads add up with the Pad's; VALID pads nothing.
        ("p = Pad(x, pads)\n  y = Conv<pads=[1, 0, 0, 1], strides=[2, 2]>(p, w, b)", 13, "float[1, 4, 4, 4] y"),
        ("p = Pad(x, pads_sym)\n  y = Conv<auto_pad=\"VALID\">(p, w, b)", 13, "float[1, 4, 5, 5] y"),
        ("p = Pad(x, pads_sym)\n  y = Conv<auto_pad=\"NOTSET\", dilations=[2, 2]>(p, w, b)", 17, "float[1, 4, 3, 3] y"),
    ],
    ids=["opset9", "opset10-explicit", "opset11", "opset13-value", "constant-node", "opset18-axes", "opset18-neg-axes", "own-pads", "valid", "notset-dilated"],
)
def test_fuses_pad_conv(body, opset, y):
    text = _text(body, opset, y=y)
    model = from_text(text)
    applied = run_pass(FusePadPass, model)
    assert applied.stats == {"pad+conv": 1}
    assert [op for op in ops(model) if op != "Constant"] == ["Conv"]
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(text, model, FEEDS, rtol=1e-5, atol=1e-5)


def test_folded_pads_values():
    text = _text("p = Pad(x, pads)\n  y = Conv<pads=[1, 0, 0, 1]>(p, w, b)", y="float[1, 4, 7, 7] y")
    model = from_text(text)
    run_pass(FusePadPass, model)
    conv = model.graph.node(0)
    assert conv.inputs[0].name == "x"
    assert list(conv.attributes["pads"].value) == [2, 2, 2, 2]


def test_fuses_pad_conv1d():
    text = _text(
        "p = Pad(x, pads)\n  y = Conv(p, w)",
        x="float[2, 3, 7] x",
        y="float[2, 4, 8] y",
        constants=f"float[4, 3, 3] w = {_values(36)}, int64[6] pads = {{0, 0, 1, 0, 0, 3}}",
    )
    verify(FusePadPass, text, ["Conv"], random_feeds(x=(2, 3, 7)), stats={"pad+conv": 1}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "body, opset",
    [
        ("p = Pad<pads=[0, 0, 1, 1, 0, 0, 1, 1]>(x)\n  y = AveragePool<kernel_shape=[3, 3], count_include_pad=1>(p)", 9),
        ("p = Pad(x, pads_sym)\n  y = AveragePool<kernel_shape=[3, 3], count_include_pad=1, pads=[0, 0, 0, 0]>(p)", 13),
        ("p = Pad(x, pads_hw, , axes_hw)\n  y = AveragePool<kernel_shape=[3, 3], count_include_pad=1, strides=[1, 1]>(p)", 18),
    ],
    ids=["opset9", "opset13", "opset18-axes"],
)
def test_fuses_pad_average_pool(body, opset):
    text = _text(body, opset, y="float[1, 3, 5, 5] y")
    verify(FusePadPass, text, ["AveragePool"], FEEDS, stats={"pad+averagepool": 1}, rtol=1e-5, atol=1e-6)


def test_fuses_several_pads():
    text = _text(
        "p = Pad(x, pads_sym)\n  c = Conv(p, w, b)\n  q = Pad(c, pads_sym)\n  y = AveragePool<kernel_shape=[3, 3], count_include_pad=1>(q)",
        y="float[1, 4, 5, 5] y",
    )
    verify(FusePadPass, text, ["Conv", "AveragePool"], FEEDS, stats={"pad+conv": 1, "pad+averagepool": 1}, rtol=1e-5, atol=1e-5)


CONV = "y = Conv(p, w, b)"


@pytest.mark.parametrize(
    "body, opset, reason, x, y",
    [
        ("y = Conv(x, w, b)", 13, "pad+conv: input is not produced by Pad", None, "float[1, 4, 3, 3] y"),
        ("p = Pad(x, pads)\n  " + CONV + "\n  z = Relu(p)", 13, "pad+conv: Pad output is also used elsewhere", None, "float[1, 4, 6, 6] y, float[1, 3, 8, 8] z"),
        ("p = Pad<mode=\"reflect\">(x, pads)\n  " + CONV, 13, "pad+conv: Pad mode is not constant", None, None),
        ("p = Pad<mode=\"edge\", pads=[0, 0, 1, 2, 0, 0, 2, 1]>(x)\n  " + CONV, 9, "pad+conv: Pad mode is not constant", None, None),
        ("p = Pad(x, q)\n  " + CONV, 13, "pad+conv: pads are not a constant", "float[1, 3, 5, 5] x, int64[8] q", None),
        ("p = Pad(x, pads, v)\n  " + CONV, 13, "pad+conv: pad value is not a constant", "float[1, 3, 5, 5] x, float v", None),
        ("p = Pad(x, pads_hw, , a)\n  " + CONV, 18, "pad+conv: Pad axes are not a constant", "float[1, 3, 5, 5] x, int64[2] a", None),
        ("p = Pad(x, pads, one)\n  " + CONV, 13, "pad+conv: pad value is not zero", None, None),
        ("p = Pad<pads=[0, 0, 1, 2, 0, 0, 2, 1], value=1.0>(x)\n  " + CONV, 9, "pad+conv: pad value is not zero", None, None),
        ("p = Pad(x, pads_neg)\n  " + CONV, 13, "pad+conv: negative pads (cropping)", None, "float[1, 4, 2, 3] y"),
        ("p = Pad(x, pads_channel)\n  y = Conv(p, w4, b)", 13, "pad+conv: pads on batch or channel dims", None, "float[1, 4, 5, 5] y"),
        ("p = Pad<pads=[0, 1, 1, 0, 1, 1]>(x)\n  " + CONV, 9, "pad+conv: pads do not match the input rank", None, None),
        ("p = Pad(x, pads_hw, , axes_hw)\n  y = Conv(p, ws)", 18, "pad+conv: input rank is unknown", "float x, float ws", "float y"),
        ("p = Pad(x, pads)\n  y = Conv<auto_pad=\"SAME_UPPER\">(p, w, b)", 13, "pad+conv: Conv auto_pad is SAME_* (padding follows the input size)", None, "float[1, 4, 8, 8] y"),
        ("p = Pad(x, pads_sym)\n  y = AveragePool<kernel_shape=[3, 3]>(p)", 13, "pad+averagepool: count_include_pad is 0: the padded zeros would leave the divisor", None, "float[1, 3, 5, 5] y"),
        ("p = Pad<pads=[0, 0, 1, 1, 0, 0, 1, 1]>(x)\n  y = AveragePool<kernel_shape=[3, 3]>(p)", 6, "pad+averagepool: count_include_pad is 0: the padded zeros would leave the divisor", None, "float[1, 3, 5, 5] y"),
        ("p = Pad(x, pads_sym)\n  y = AveragePool<kernel_shape=[3, 3], count_include_pad=1, ceil_mode=1, strides=[2, 2]>(p)", 13, "pad+averagepool: ceil_mode is set", None, "float[1, 3, 3, 3] y"),
        ("p = Pad(x, pads_sym)\n  y = AveragePool<kernel_shape=[3, 3], count_include_pad=1, auto_pad=\"SAME_LOWER\">(p)", 13, "pad+averagepool: AveragePool auto_pad is SAME_* (padding follows the input size)", None, "float[1, 3, 7, 7] y"),
        ("p = Pad(x, pads)\n  y = AveragePool<kernel_shape=[2, 2], count_include_pad=1>(p)", 13, "pad+averagepool: pads would not be smaller than the kernel (onnxruntime refuses such pools)", None, "float[1, 3, 7, 7] y"),
        ("p = Pad(x, pads_sym)\n  y = MaxPool<kernel_shape=[3, 3]>(p)", 13, "pad+maxpool: MaxPool leaves its own padding out of the max, but the Pad's values take part", None, "float[1, 3, 5, 5] y"),
    ],
    ids=[
        "no-pad", "shared", "reflect", "edge-opset9", "pads-input", "value-input", "axes-input", "value-one", "value-one-opset9",
        "negative", "channel", "rank", "rank-unknown", "same-upper", "count-exclude-pad", "count-exclude-pad-opset6", "ceil-mode",
        "pool-same-lower", "pool-pads-reach-kernel", "maxpool",
    ],
)
def test_declines(body, opset, reason, x, y):
    constants = CONSTANTS + f", float[4, 4, 3, 3] w4 = {_values(144)}"
    text = _text(body, opset, x=x or "float[1, 3, 5, 5] x", y=y or "float[1, 4, 6, 6] y", constants=constants)
    verify_declines(FusePadPass, text, {reason: 1})


def test_declines_across_graphs():
    text = f"""<ir_version: 10, opset_import: ["" : 13]>
g (float[1, 3, 5, 5] x, float[1, 4, 6, 6] z, bool cond) => (float[1, 4, 6, 6] y) <{CONSTANTS}> {{
  p = Pad(x, pads)
  y = If(cond) <
    then_branch = then_g () => (float[1, 4, 6, 6] r) {{ r = Conv(p, w, b) }},
    else_branch = else_g () => (float[1, 4, 6, 6] q) {{ q = Neg(z) }}
  >
}}"""
    model = from_text(text)
    applied = run_pass(FusePadPass, model)
    assert applied.declined == {"pad+conv: Pad and Conv live in different graphs": 1}
    assert_unchanged(text, model)
