"""fuse-matmul-add (TVM style)."""

import pytest

from passes.fusion.gemm import FuseMatMulAddPass
from tests.helpers import model_text, random_feeds, verify, verify_declines

W = "{" + ", ".join(str(i / 10) for i in range(12)) + "}"


def _text(body: str, x: str = "float[2, 4] x", y: str = "float[2, 3] y", extra: str = "") -> str:
    return model_text(body, x, y + extra, f"float[4, 3] w = {W}, float[3] b = {{0.1, 0.2, 0.3}}, float[2, 3] b2 = {{1, 2, 3, 4, 5, 6}}")


@pytest.mark.parametrize("body", ["m = MatMul(x, w)\n  y = Add(m, b)", "m = MatMul(x, w)\n  y = Add(b2, m)"], ids=["row-bias", "full-bias-first"])
def test_fuses(body):
    text = _text(body)
    verify(FuseMatMulAddPass, text, ["Gemm"], random_feeds(x=(2, 4)), stats={"matmul+add": 1})


@pytest.mark.parametrize(
    "text, reason",
    [
        (_text("m = MatMul(x, w)\n  y = Add(m, b)", x="float[2, 2, 4] x", y="float[2, 2, 3] y"), "MatMul input is not 2-D"),
        (_text("m = MatMul(x, w)\n  y = Add(m, b)\n  z = Relu(m)", extra=", float[2, 3] z"), "MatMul output is also used elsewhere"),
        (_text("m = MatMul(x, w)\n  y = Add(m, c)", x="float[2, 4] x, float[3] c"), "bias is not a constant"),
    ],
    ids=["3d", "shared", "non-constant-bias"],
)
def test_declines(text, reason):
    verify_declines(FuseMatMulAddPass, text, {f"matmul+add: {reason}": 1})
