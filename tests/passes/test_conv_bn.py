"""fuse-conv-batchnorm (TVM style): before, op sequence after, equivalence, and each decline."""

import numpy as np
import pytest

from passes.fusion.conv_bn import FuseConvBatchNormPass
from tests.helpers import assert_equivalent, assert_unchanged, from_text, ops, random_feeds, run_pass

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
    model = from_text(text)
    applied = run_pass(FuseConvBatchNormPass, model)
    assert applied.stats == {"conv+batchnorm": 1}
    assert ops(model) == ["Conv"]
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert_equivalent(text, model, random_feeds(x=(1, 3, 5, 5)), rtol=1e-5, atol=1e-5)


def test_fuses_conv_without_bias():
    text = _text("c = Conv<pads=[1, 1, 1, 1]>(x, w, b)\n  y = BatchNormalization(c, scale, shift, mean, var)", bias=False)
    model = from_text(text)
    assert run_pass(FuseConvBatchNormPass, model).stats == {"conv+batchnorm": 1}
    assert ops(model) == ["Conv"] and len(model.graph.node(0).inputs) == 3
    assert_equivalent(text, model, random_feeds(x=(1, 3, 5, 5)), rtol=1e-5, atol=1e-5)


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
    model = from_text(text)
    applied = run_pass(FuseConvBatchNormPass, model)
    assert applied.stats == {}
    assert applied.declined == {f"conv+batchnorm: {reason}": 1}
    assert_unchanged(text, model)
