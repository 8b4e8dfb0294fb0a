"""fuse-rms-norm (TVM style): exporters' variants fuse, equivalence holds, each decline is named."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from passes.fusion.rms_norm import FuseRMSNormPass
from tests.helpers import assert_equivalent, from_text, model_text, ops, random_feeds, run_pass, verify, verify_declines

GAMMA = "{" + ", ".join(f"{v:.2f}" for v in np.linspace(0.5, 1.5, 8)) + "}"
GAMMA_3x8 = "{" + ", ".join(f"{v:.3f}" for v in np.linspace(0.5, 1.5, 24)) + "}"


def _text(body: str, opset: int = 23, extra_outputs: str = "", shape: str = "2, 3, 8", extra_inputs: str = "") -> str:
    return model_text(body, f"float[{shape}] x{extra_inputs}", f"float[{shape}] y{extra_outputs}", f"""int64[1] axes = {{-1}}, int64[2] axes2 = {{-2, -1}}, int64[1] axes1 = {{1}}, float two = {{2.0}}, float three = {{3.0}},
   float one = {{1.0}}, float eps = {{1e-6}}, float[8] gamma = {GAMMA}, float[1, 1, 8] gamma118 = {GAMMA},
   float[3, 8] gamma38 = {GAMMA_3x8}, float[3, 1] gamma31 = {{0.5, 1.0, 1.5}}""", opset=opset)


def _float16_text(body: str) -> str:
    """`body` on float16 input; float16 constants are written as their bit patterns (2.0, 1e-6, 1.0)."""
    return model_text(body, "float16[2, 3, 8] x", "float16[2, 3, 8] y", f"""int64[1] axes = {{-1}}, float16 two = {{16384}}, float16 eps = {{17}}, float16[8] gamma = {{15360, 15360, 15360, 15360, 15360, 15360, 15360, 15360}},
   float two32 = {{2.0}}, float eps32 = {{1e-6}}""", opset=23)


# transformers' LlamaRMSNorm as exported: float32 casts (identities here), rsqrt as Reciprocal(Sqrt), weight * n.
LLAMA = """xf = Cast<to=1>(x)
  p = Pow(xf, two)
  v = ReduceMean<keepdims=1>(p, axes)
  ve = Add(v, eps)
  s = Sqrt(ve)
  r = Reciprocal(s)
  n = Mul(xf, r)
  nc = Cast<to=1>(n)
  y = Mul(gamma, nc)"""
DIV_FORM = """p = Mul(x, x)
  v = ReduceMean(p, axes)
  ve = Add(eps, v)
  s = Sqrt(ve)
  n = Div(x, s)
  y = Mul(n, gamma)"""
# LlamaRMSNorm on float16 input: computed in float32, cast back before the float16 weight.
LLAMA_FLOAT16 = LLAMA.replace("Pow(xf, two)", "Pow(xf, two32)").replace("Add(v, eps)", "Add(v, eps32)").replace("Cast<to=1>(n)", "Cast<to=10>(n)")
# torch.onnx's TorchScript exporter writes rsqrt as Div(1, Sqrt(.)); no weight.
RSQRT_AS_DIV = """p = Pow(x, two)
  v = ReduceMean(p, axes)
  ve = Add(v, eps)
  s = Sqrt(ve)
  r = Div(one, s)
  y = Mul(x, r)"""
TWO_AXES = DIV_FORM.replace("(p, axes)", "(p, axes2)").replace("Mul(n, gamma)", "Mul(n, gamma38)")
BROADCAST_GAMMA = DIV_FORM.replace("Mul(n, gamma)", "Mul(gamma118, n)")


@pytest.mark.parametrize(
    "body, gamma_shape",
    [(LLAMA, (8,)), (DIV_FORM, (8,)), (RSQRT_AS_DIV, (8,)), (TWO_AXES, (3, 8)), (BROADCAST_GAMMA, (8,))],
    ids=["llama-identity-casts", "mul-square-div", "rsqrt-as-div-no-weight", "two-trailing-axes", "broadcast-gamma"],
)
def test_fuses_rms_norm_variants(body, gamma_shape):
    text = _text(body)
    model, _ = verify(FuseRMSNormPass, text, ["RMSNormalization"], None, stats={"rmsnorm": 1})
    fused = next(iter(model.graph))
    assert fused.inputs[0].name == "x" and fused.outputs[0].name == "y"
    assert fused.attributes["axis"].as_int() == -len(gamma_shape)
    assert fused.attributes["epsilon"].as_float() == pytest.approx(1e-6)
    assert fused.inputs[1].const_value.shape == gamma_shape
    assert_equivalent(text, model, random_feeds(x=(2, 3, 8)), rtol=1e-5, atol=1e-6)


def test_input_read_elsewhere_stays():
    text = _text(LLAMA.replace("y = Mul(gamma, nc)", "t = Mul(gamma, nc)\n  y = Add(x, t)"))
    verify(FuseRMSNormPass, text, ["RMSNormalization", "Add"], random_feeds(x=(2, 3, 8)), stats={"rmsnorm": 1}, rtol=1e-5, atol=1e-6)


def test_cast_read_elsewhere_stays():
    text = _text(LLAMA + "\n  z = Relu(xf)", extra_outputs=", float[2, 3, 8] z")
    model = from_text(text)
    applied = run_pass(FuseRMSNormPass, model)
    assert applied.stats == {"rmsnorm": 1}
    assert sorted(ops(model)) == ["Cast", "RMSNormalization", "Relu"]
    assert_equivalent(text, model, random_feeds(x=(2, 3, 8)), rtol=1e-5, atol=1e-6)


def test_opset_17_model_upgraded_to_23_fuses():
    """Below opset 18 ReduceMean takes its axes as an attribute; onnx's converter moves them to an input."""
    text = _text(LLAMA.replace("ReduceMean<keepdims=1>(p, axes)", "ReduceMean<axes=[-1], keepdims=1>(p)"), opset=17)
    upgraded = onnx.version_converter.convert_version(onnx.parser.parse_model(text), 23)
    model = ir.serde.deserialize_model(upgraded)
    applied = run_pass(FuseRMSNormPass, model)
    assert applied.stats == {"rmsnorm": 1}
    assert [op for op in ops(model) if op != "Constant"] == ["RMSNormalization"]  # the converter's axes Constant, now unused
    assert_equivalent(text, model, random_feeds(x=(2, 3, 8)), rtol=1e-5, atol=1e-6)


LAYER_NORM_CENTERED = """m = ReduceMean(x, axes)
  d = Sub(x, m)
  p = Pow(d, two)
  v = ReduceMean(p, axes)
  ve = Add(v, eps)
  s = Sqrt(ve)
  y = Div(d, s)"""


@pytest.mark.parametrize(
    "text, reason",
    [
        (_text(DIV_FORM, opset=22), "opset below 23 (use --target-opset 23)"),
        (_text(DIV_FORM.replace("Add(eps, v)", "Add(e, v)"), extra_inputs=", float e"), "Sqrt input is not Add(mean square, constant eps)"),
        (_text(DIV_FORM.replace("Mul(x, x)", "Mul(x, two)")), "mean is not of a square"),
        (_text(DIV_FORM.replace("Mul(x, x)", "Pow(x, three)")), "Pow exponent is not 2"),
        (_text(LAYER_NORM_CENTERED), "input is x - mean(x): a LayerNormalization, left to fuse-layer-norm"),
        (_text(DIV_FORM.replace("(p, axes)", "(p, a)"), extra_inputs=", int64[1] a"), "reduction axes or input rank unknown"),
        (_text(DIV_FORM.replace("(p, axes)", "(p, axes1)")), "reduction is not over the trailing axes"),
        (_text(DIV_FORM + "\n  z = Relu(v)", extra_outputs=", float[2, 3, 1] z"), "an intermediate is used elsewhere"),
        (_text(DIV_FORM.replace("Div(x, s)", "Mul(x, s)")), "Sqrt is not the divisor of the input"),
        (_float16_text(DIV_FORM), "input is not float32"),
        (_float16_text(LLAMA_FLOAT16), "Cast to float32 is not an identity (input is not float32)"),
        (_text(RSQRT_AS_DIV, shape="2, 3, N"), "normalized dims are dynamic"),
        (_text(DIV_FORM.replace("Mul(n, gamma)", "Mul(n, gamma31)")), "scale does not match the normalized dims"),
    ],
    ids=[
        "old-opset", "non-constant-eps", "not-a-square", "cube", "centered-is-layer-norm", "non-constant-axes", "middle-axis",
        "shared-mean", "sqrt-not-divisor", "float16", "float16-casts", "dynamic-dims", "mismatched-scale",
    ],
)
def test_declines(text, reason):
    verify_declines(FuseRMSNormPass, text, {f"rmsnorm: {reason}": 1})
