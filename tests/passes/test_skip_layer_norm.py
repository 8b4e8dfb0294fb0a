"""fuse-skip-layer-norm (TVM style): BERT and GPT-2 residual forms fuse; each decline is named."""

import numpy as np
import pytest

from passes.fusion.skip_layer_norm import FuseSkipLayerNormPass
from tests.helpers import assert_equivalent, from_text, model_text, ops, random_feeds, run_pass, verify, verify_declines


def _vector(n: int, seed: int) -> str:
    values = np.random.default_rng(seed).standard_normal(n) * 0.5
    return "{" + ", ".join(f"{v:.3f}" for v in values) + "}"


def _text(body: str, inputs: str = "float[2, 3, 8] a, float[2, 3, 8] r", outputs: str = "float[2, 3, 8] y") -> str:
    return model_text(body, inputs, outputs, f"""float[8] gamma = {_vector(8, 1)}, float[8] beta = {_vector(8, 2)}, float[8] bias = {_vector(8, 3)},
   float[8, 8] w = {{{", ".join(f"{v:.3f}" for v in np.random.default_rng(4).standard_normal(64) * 0.3)}}}, float[3, 8] gamma2d = {{{", ".join(["1.0"] * 24)}}}""", opset=17, ir_version=8)


PLAIN = "s = Add(a, r)\n  y = LayerNormalization<axis=-1, epsilon=1e-5>(s, gamma, beta)"
WITH_BIAS = "m = MatMul(a, w)\n  d = Add(m, bias)\n  s = Add(d, r)\n  y = LayerNormalization<axis=-1, epsilon=1e-12>(s, gamma, beta)"
BIAS_ON_SKIP_SIDE = "m = MatMul(a, w)\n  d = Add(bias, m)\n  s = Add(r, d)\n  y = LayerNormalization<epsilon=1e-5>(s, gamma, beta)"


@pytest.mark.parametrize(
    "body, expected",
    [(PLAIN, 4), (WITH_BIAS, 5), (BIAS_ON_SKIP_SIDE, 5)],
    ids=["plain", "bert-dense-bias", "bias-on-second-operand"],
)
def test_fuses_residual_layer_norm(body, expected):
    text = _text(body)
    model = from_text(text)
    applied = run_pass(FuseSkipLayerNormPass, model)
    assert applied.stats == {"skip+layernorm": 1}
    fused = [n for n in model.graph if n.op_type == "SkipLayerNormalization"]
    assert len(fused) == 1 and fused[0].domain == "com.microsoft"
    assert len(fused[0].inputs) == expected
    assert model.opset_imports["com.microsoft"] == 1
    assert [op for op in ops(model) if op != "MatMul"] == ["SkipLayerNormalization"]
    assert_equivalent(text, model, random_feeds(a=(2, 3, 8), r=(2, 3, 8)), rtol=1e-4, atol=1e-5)


def test_two_dimensional_rows_fuse():
    text = _text(PLAIN, inputs="float[6, 8] a, float[6, 8] r", outputs="float[6, 8] y")
    verify(FuseSkipLayerNormPass, text, None, random_feeds(a=(6, 8), r=(6, 8)), stats={"skip+layernorm": 1}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "body, inputs, outputs, reason",
    [
        ("s = Add(a, r)\n  y, mu, inv = LayerNormalization<axis=-1>(s, gamma, beta)", None, "float[2, 3, 8] y, float[2, 3, 1] mu", "mean or inverse std output is used"),
        ("s = Sub(a, r)\n  y = LayerNormalization<axis=-1>(s, gamma, beta)", None, None, "input is not a residual Add"),
        (PLAIN, "float[2, 3, 8] a, float[8] r", None, "residual operands differ in shape or are not 2-D/3-D"),
        ("s = Add(a, r)\n  y = LayerNormalization<axis=1>(s, gamma2d, beta)", None, None, "not normalized over the last axis"),
        (PLAIN + "\n  z = Add(s, y)", None, "float[2, 3, 8] z", "the residual sum is read elsewhere (pre-LN block)"),
    ],
    ids=["mean-used", "not-add", "broadcast-skip", "axis", "gpt2-pre-ln-sum-reused"],
)
def test_declines(body, inputs, outputs, reason):
    kwargs = {k: v for k, v in (("inputs", inputs), ("outputs", outputs)) if v}
    text = _text(body, **kwargs)
    verify_declines(FuseSkipLayerNormPass, text, {f"skip+layernorm: {reason}": 1})
