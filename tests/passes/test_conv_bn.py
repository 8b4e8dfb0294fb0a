"""fuse-conv-batchnorm (TVM style): before, op sequence after, equivalence, and each decline."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from passes.fusion.conv_bn import FuseConvBatchNormPass, FuseGemmBatchNormPass
from passes.fusion.gemm import FuseMatMulAddPass
from tests.helpers import assert_equivalent, assert_unchanged, from_text, ops, random_feeds, run_pass, verify, verify_declines

HEADER = '<ir_version: 10, opset_import: ["" : 17]>'
PARAMS = """float[2, 3, 3, 3] w = {W}, float[2] b = {0.1, -0.2}, float[2] scale = {1.5, 0.5},
   float[2] shift = {0.3, -0.1}, float[2] mean = {0.2, -0.4}, float[2] var = {0.9, 1.7}"""


def _text(body: str, bias: bool = True, outputs: str = "float[1, 2, 5, 5] y") -> str:
    weights = ", ".join(f"{v:.3f}" for v in np.linspace(-1, 1, 54))
    return f"""{HEADER}
g (float[1, 3, 5, 5] x) => ({outputs}) <{PARAMS.replace("{W}", "{" + weights + "}")}> {{
  {body.replace("(x, w, b)", "(x, w, b)" if bias else "(x, w)")}
}}"""


def test_fuses_conv_batchnorm():
    text = _text("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = BatchNormalization<epsilon=0.001>(c, scale, shift, mean, var)")
    model, _ = verify(FuseConvBatchNormPass, text, ["Conv"], None, stats={"conv+batchnorm": 1})
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(text, model, random_feeds(x=(1, 3, 5, 5)), rtol=1e-5, atol=1e-5)


def test_fuses_conv_without_bias():
    text = _text("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = BatchNormalization(c, scale, shift, mean, var)", bias=False)
    model, _ = verify(FuseConvBatchNormPass, text, ["Conv"], random_feeds(x=(1, 3, 5, 5)), stats={"conv+batchnorm": 1}, rtol=1e-5, atol=1e-5)
    assert len(model.graph.node(0).inputs) == 3


@pytest.mark.parametrize(
    "body, reason",
    [
        ("c = Relu(x)\n  y = BatchNormalization(c, s3, h3, m3, v3)", "input is not produced by Conv"),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = BatchNormalization(c, scale, shift, mean, var)\n  z = Relu(c)", "Conv output is also used elsewhere"),
        ("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = BatchNormalization(c, scale, shift, mean, v)", "BatchNormalization parameters are not constants"),
    ],
)
def test_declines(body, reason):
    text = _text(body, outputs="float[1, 2, 5, 5] y, float[1, 2, 5, 5] z" if "z =" in body else "float[1, 2, 5, 5] y")
    text = text.replace("(float[1, 3, 5, 5] x)", "(float[1, 3, 5, 5] x, float[2] v)") if "mean, v)" in body else text
    if "s3" in body:
        text = text.replace("=> (float[1, 2, 5, 5] y)", "=> (float[1, 3, 5, 5] y)").replace(
            "float[2] var = {0.9, 1.7}",
            "float[2] var = {0.9, 1.7}, float[3] s3 = {1.0, 2.0, 3.0}, float[3] h3 = {0.0, 0.0, 0.0}, float[3] m3 = {0.0, 0.0, 0.0}, float[3] v3 = {1.0, 1.0, 1.0}",
        )
    verify_declines(FuseConvBatchNormPass, text, {f"conv+batchnorm: {reason}": 1})


def _values(count: int, low: float = -1.0, high: float = 1.0) -> str:
    return "{" + ", ".join(f"{v:.3f}" for v in np.linspace(low, high, count)) + "}"


BN4 = "float[4] scale = {1.5, 0.5, -0.7, 1.1}, float[4] shift = {0.3, -0.1, 0.2, 0.0}, float[4] mean = {0.2, -0.4, 0.1, 0.3}, float[4] var = {0.9, 1.7, 0.4, 1.2}"


@pytest.mark.parametrize(
    "weight_shape, attrs",
    [((4, 2, 3, 3), "group=2"), ((4, 1, 3, 3), "group=4"), ((4, 4, 3, 3), "group=1"), ((4, 2, 3, 3), "group=2, strides=[2, 2], pads=[1, 1, 1, 1]")],
    ids=["grouped", "depthwise", "ungrouped", "grouped-strided"],
)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_fuses_conv_transpose_with_groups(weight_shape, attrs, bias):
    # ConvTranspose's weight is [C_in, C_out/group, k, k]: C_out = weight_shape[1] * group = 4 here.
    group = int(attrs.split("group=")[1].split(",")[0])
    out = weight_shape[1] * group
    size = int(np.prod(weight_shape))
    stride = 2 if "strides" in attrs else 1
    spatial = (5 - 1) * stride + 3 - (2 if "pads" in attrs else 0)
    inputs = "(x, w, b)" if bias else "(x, w)"
    text = f"""{HEADER}
g (float[1, 4, 5, 5] x) => (float[1, {out}, {spatial}, {spatial}] y)
  <float[{", ".join(map(str, weight_shape))}] w = {_values(size)}, float[4] b = {{0.1, -0.2, 0.3, 0.05}}, {BN4}> {{
  c = ConvTranspose<{attrs}>{inputs}
  y = BatchNormalization<epsilon=0.001>(c, scale, shift, mean, var)
}}"""
    verify(FuseConvBatchNormPass, text, ["ConvTranspose"], random_feeds(x=(1, 4, 5, 5)), stats={"conv+batchnorm": 1}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_fuses_grouped_conv_across_opsets(opset):
    text = f"""<ir_version: 10, opset_import: ["" : {opset}]>
g (float[1, 4, 5, 5] x) => (float[1, 4, 5, 5] y) <float[4, 2, 3, 3] w = {_values(72)}, float[4] b = {{0.1, -0.2, 0.3, 0.05}}, {BN4}> {{
  c = Conv<group=2, pads=[1, 1, 1, 1]>(x, w, b)
  y = BatchNormalization(c, scale, shift, mean, var)
}}"""
    verify(FuseConvBatchNormPass, text, ["Conv"], random_feeds(x=(1, 4, 5, 5)), stats={"conv+batchnorm": 1}, rtol=1e-5, atol=1e-5)


def test_declines_conv_transpose_weight_not_split_into_groups():
    # Malformed: 3 input channels cannot form 2 groups; the pass must not guess.
    text = f"""{HEADER}
g (float[1, 3, 5, 5] x) => (float[1, 4, 7, 7] y) <float[3, 2, 3, 3] w = {_values(54)}, {BN4}> {{
  c = ConvTranspose<group=2>(x, w)
  y = BatchNormalization(c, scale, shift, mean, var)
}}"""
    verify_declines(FuseConvBatchNormPass, text, {"conv+batchnorm: Conv weight does not split into its groups": 1})


def test_declines_conv_batchnorm_of_another_width():
    text = f"""{HEADER}
g (float[1, 3, 5, 5] x) => (float[1, 2, 5, 5] y) <float[2, 3, 3, 3] w = {_values(54)}, {BN4}> {{
  c = Conv<pads=[1, 1, 1, 1]>(x, w)
  y = BatchNormalization(c, scale, shift, mean, var)
}}"""
    model = from_text(text)
    applied = run_pass(FuseConvBatchNormPass, model)
    assert applied.declined == {"conv+batchnorm: parameter length differs from the Conv's output channels": 1}
    assert_unchanged(text, model)


def test_declines_training_mode_outputs():
    text = f"""<ir_version: 10, opset_import: ["" : 9]>
g (float[1, 3, 5, 5] x) => (float[1, 4, 5, 5] y, float[4] running_mean) <float[4, 3, 3, 3] w = {_values(108)}, {BN4}> {{
  c = Conv<pads=[1, 1, 1, 1]>(x, w)
  y, running_mean, running_var, saved_mean, saved_var = BatchNormalization(c, scale, shift, mean, var)
}}"""
    model = from_text(text)
    applied = run_pass(FuseConvBatchNormPass, model)
    assert applied.declined == {"conv+batchnorm: training-mode outputs are used": 1}
    assert_unchanged(text, model)


# BatchNormalization after Gemm / MatMul (fuse-gemm-batchnorm).

LINEAR = f"float[4, 3] wt = {_values(12)}, float[3, 4] w = {_values(12, -0.8, 1.2)}, float[4] bias = {{0.5, -0.5, 0.25, 1.0}}, float[1, 4] bias_row = {{0.5, -0.5, 0.25, 1.0}}, float[2, 1] bias_col = {{0.7, -0.3}}, float cs = {{0.4}}, {BN4}"


def _linear(body: str, opset: int = 17, x: str = "float[2, 3] x", y: str = "float[2, 4] y", extra: str = "") -> str:
    return f"""<ir_version: 10, opset_import: ["" : {opset}]>
g ({x}) => ({y}{extra}) <{LINEAR}> {{
  {body}
}}"""


BN = "y = BatchNormalization<epsilon=0.001>(h, scale, shift, mean, var)"


@pytest.mark.parametrize(
    "gemm, opset",
    [
        ("h = Gemm<transB=1>(x, wt, bias)", 9),  # PyTorch nn.Linear -> nn.BatchNorm1d
        ("h = Gemm<transB=1>(x, wt, bias)", 13),
        ("h = Gemm(x, w, bias_row)", 17),
        ("h = Gemm<alpha=0.5, beta=2.0>(x, w, bias_col)", 11),
        ("h = Gemm<beta=-1.5>(x, w, cs)", 13),
        ("h = Gemm<transB=1>(x, wt)", 13),
    ],
    ids=["pytorch-opset9", "pytorch-opset13", "row-C", "alpha-beta-column-C", "scalar-C", "no-C"],
)
def test_fuses_gemm_batchnorm(gemm, opset):
    text = _linear(f"{gemm}\n  {BN}", opset)
    model, _ = verify(FuseGemmBatchNormPass, text, ["Gemm"], None, stats={"gemm+batchnorm": 1})
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(text, model, random_feeds(x=(2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_fuses_matmul_batchnorm(opset):
    text = _linear(f"h = MatMul(x, w)\n  {BN}", opset)
    verify(FuseGemmBatchNormPass, text, ["MatMul", "Add"], random_feeds(x=(2, 3)), stats={"gemm+batchnorm": 1}, rtol=1e-5, atol=1e-5)


def test_matmul_batchnorm_then_gemm():
    """With fuse-matmul-add after it, a MatMul + BatchNormalization ends as one Gemm."""
    text = _linear(f"h = MatMul(x, w)\n  {BN}")
    model = from_text(text)
    run_pass(FuseGemmBatchNormPass, model)
    assert run_pass(FuseMatMulAddPass, model).stats == {"matmul+add": 1}
    assert ops(model) == ["Gemm"]
    assert_equivalent(text, model, random_feeds(x=(2, 3)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "text, reason",
    [
        (_linear(f"h = Relu(x)\n  y = BatchNormalization(h, s3, h3, m3, v3)", y="float[2, 3] y"), "input is not produced by Gemm or MatMul"),
        (_linear(f"h = Gemm<transB=1>(x, wt, bias)\n  {BN}", opset=6), "opset below 7 (legacy broadcast attribute)"),
        (_linear(f"h = Gemm<transB=1>(x, wt, bias)\n  {BN}\n  z = Relu(h)", extra=", float[2, 4] z"), "Gemm output is also used elsewhere"),
        (_linear(f"h = Gemm(x, v, bias)\n  {BN}", x="float[2, 3] x, float[3, 4] v"), "Gemm weight is not a float constant"),
        (_linear(f"h = Gemm(x, w, c)\n  {BN}", x="float[2, 3] x, float[4] c"), "Gemm C is not a constant"),
        (_linear(f"h = MatMul(x, w)\n  {BN}", x="float[2, 5, 3] x", y="float[2, 5, 4] y"), "MatMul output is not 2-D: BatchNormalization's channel axis 1 is not the weight's last axis"),
        (_linear(f"h = MatMul(x, w3)\n  {BN}", x="float[2, 3] x, float[2, 3, 4] w3", y="float[2, 2, 4] y"), "MatMul weight is not a float constant"),
        (_linear(f"h = Gemm(x, w, bias)\n  y = BatchNormalization(h, scale, shift, mean, v)", x="float[2, 3] x, float[4] v"), "BatchNormalization parameters are not constants"),
        (_linear("h = Gemm<transB=1>(x, wt, bias)\n  y = BatchNormalization(h, s3, h3, m3, v3)"), "parameter length differs from the Gemm's output columns"),
    ],
    ids=["not-linear", "opset-6", "shared", "weight-input", "C-input", "3d-matmul", "matmul-weight-input", "params-input", "width"],
)
def test_declines_gemm_batchnorm(text, reason):
    text = text.replace(f"{BN4}", f"{BN4}, float[3] s3 = {{1.0, 2.0, 3.0}}, float[3] h3 = {{0.0, 0.1, 0.0}}, float[3] m3 = {{0.0, 0.5, 0.0}}, float[3] v3 = {{1.0, 1.0, 2.0}}")
    verify_declines(FuseGemmBatchNormPass, text, {f"gemm+batchnorm: {reason}": 1})


def test_declines_matmul_weight_not_2d():
    text = _linear(f"h = MatMul(x, w1)\n  {BN}", x="float[2, 3] x", y="float[2, 4] y").replace(f"{BN4}", f"{BN4}, float[1, 3, 4] w1 = {_values(12)}")
    model = from_text(text)
    applied = run_pass(FuseGemmBatchNormPass, model)
    assert applied.declined == {"gemm+batchnorm: MatMul weight is not 2-D": 1}
    assert_unchanged(text, model)


@pytest.mark.parametrize(
    "text, reason",
    [
        (_linear("h = Gemm(x, w, bias)\n  y = BatchNormalization(h, scale, shift, mean, var5)"), "BatchNormalization parameters differ in length"),
        (_linear(f"h = Gemm(x, w, bias3)\n  {BN}"), "Gemm C does not broadcast to the output"),
        (_linear(f"h = Gemm(x, w13, bias)\n  {BN}"), "Gemm weight is not 2-D"),
        (_linear(f"h = MatMul(x, w)\n  {BN}\n  z = Relu(h)", extra=", float[2, 4] z"), "MatMul output is also used elsewhere"),
    ],
    ids=["params-lengths", "C-shape", "gemm-weight-3d", "matmul-shared"],
)
def test_declines_gemm_batchnorm_malformed_or_shared(text, reason):
    extra = f"float[5] var5 = {_values(5, 0.5, 2.0)}, float[3] bias3 = {{1.0, 2.0, 3.0}}, float[1, 3, 4] w13 = {_values(12)}"
    text = text.replace(f"{BN4}", f"{BN4}, {extra}")
    model = from_text(text)
    applied = run_pass(FuseGemmBatchNormPass, model)
    assert applied.declined == {f"gemm+batchnorm: {reason}": 1}
    assert_unchanged(text, model)


def test_declines_gemm_batchnorm_across_graphs():
    text = f"""<ir_version: 10, opset_import: ["" : 17]>
g (float[2, 3] x, float[2, 4] z, bool cond) => (float[2, 4] y) <{LINEAR}> {{
  h = Gemm<transB=1>(x, wt, bias)
  y = If(cond) <
    then_branch = then_g () => (float[2, 4] r) {{ r = BatchNormalization(h, scale, shift, mean, var) }},
    else_branch = else_g () => (float[2, 4] q) {{ q = Neg(z) }}
  >
}}"""
    model = from_text(text)
    applied = run_pass(FuseGemmBatchNormPass, model)
    assert applied.declined == {"gemm+batchnorm: Gemm and BatchNormalization live in different graphs": 1}
    assert_unchanged(text, model)


def test_declines_matmul_batchnorm_of_unknown_rank():
    text = _linear(f"h = MatMul(x, w)\n  {BN}")
    model = from_text(text)
    model.graph.inputs[0].shape = None  # an input of unknown rank: the product's rank is unknown too
    before = ir.serde.serialize_model(model).graph
    del before.value_info[:]
    applied = run_pass(FuseGemmBatchNormPass, model)
    assert applied.declined == {"gemm+batchnorm: MatMul output rank is unknown": 1}
    assert ops(model) == ["MatMul", "BatchNormalization"]
    after = ir.serde.serialize_model(model).graph
    del after.value_info[:]
    assert onnx.printer.to_text(after) == onnx.printer.to_text(before)
