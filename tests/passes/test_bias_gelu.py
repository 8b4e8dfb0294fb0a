"""fuse-bias-gelu (TVM style): bias Add + Gelu (standard or onnxruntime's) fuses; each decline is named."""

import pytest

from passes.fusion.bias_gelu import FuseBiasGeluPass
from tests.helpers import assert_equivalent, model_text, random_feeds, verify, verify_declines


def _text(body: str, opset: int = 20, inputs: str = "float[2, 3, 8] x", outputs: str = "float[2, 3, 8] y") -> str:
    return model_text(body, inputs, outputs, f"""float[8] b = {{0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8}}, float[8, 8] w = {{{", ".join(["0.1"] * 64)}}}, float[3, 8] b2 = {{{", ".join(["0.25"] * 24)}}}""", opset=opset, imports='"com.microsoft" : 1')


@pytest.mark.parametrize(
    "body, opset, op, rule",
    [
        ("s = Add(x, b)\n  y = Gelu(s)", 20, "BiasGelu", "bias+gelu"),
        ("s = Add(b, x)\n  y = Gelu<approximate=\"tanh\">(s)", 20, "FastGelu", "bias+gelu"),
        ("s = Add(x, b)\n  y = com.microsoft.Gelu(s)", 17, "BiasGelu", "bias+gelu (onnxruntime Gelu)"),
        ("s = Add(x, b)\n  y = com.microsoft.FastGelu(s)", 17, "FastGelu", "bias+fastgelu"),
    ],
    ids=["standard-erf", "standard-tanh", "onnxruntime-gelu", "onnxruntime-fastgelu"],
)
def test_fuses_bias_into_gelu(body, opset, op, rule):
    text = _text(body, opset)
    model, _ = verify(FuseBiasGeluPass, text, [op], None, stats={rule: 1})
    assert model.graph.node(0).domain == "com.microsoft"
    assert_equivalent(text, model, random_feeds(x=(2, 3, 8)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "body, outputs, reason",
    [
        ("s = Mul(x, b)\n  y = Gelu(s)", None, "input is not a bias Add"),
        ("s = Add(x, b)\n  y = Gelu(s)", "float[2, 3, 8] y, float[2, 3, 8] s", "the biased value is used elsewhere"),
        ("s = Add(x, b2)\n  y = Gelu(s)", None, "bias is not a vector over the last axis"),
        ("s = Add(x, x)\n  y = Gelu(s)", None, "input is not a bias Add"),
        ("m = MatMul(x, w)\n  s = Add(m, b)\n  y = Gelu(s)", None, "bias belongs to a dense MatMul (onnxruntime fuses them into Gemm, faster)"),
    ],
    ids=["not-add", "shared-sum", "bias-not-vector", "non-constant-bias", "dense-layer-bias"],
)
def test_declines(body, outputs, reason):
    text = _text(body, outputs=outputs) if outputs else _text(body)
    verify_declines(FuseBiasGeluPass, text, {f"bias+gelu: {reason}": 1})
