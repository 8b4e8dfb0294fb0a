"""fuse-transposes (TVM style): exporters' Transpose patterns fold away, equivalence holds, each decline is named.

A Transpose whose input is not a Transpose is looked at and counted as declined ("input is not a
Transpose"), so a decline test expects that entry next to the one it is about.
"""

import pytest

from passes.fusion.transpose import FuseTransposesPass
from tests.helpers import random_feeds, run_pass, verify, verify_declines

W = "{" + ", ".join(str(i / 10) for i in range(12)) + "}"
NOT_A_PAIR = "transpose+transpose: input is not a Transpose"


def _text(signature: str, body: str, opset: int = 17) -> str:
    return f"""<ir_version: 10, opset_import: ["" : {opset}]>
g {signature} <float[4, 3] w = {W}, float[3, 4] wt = {W}, float[3] c = {{0.1, 0.2, 0.3}}> {{
  {body}
}}"""


def _fused(text: str, feeds: dict, stats: dict, after: list[str]):
    model, applied = verify(FuseTransposesPass, text, after, feeds, stats=stats)
    assert run_pass(FuseTransposesPass, model).stats == {}
    return model


PAIRS = {
    # tf2onnx wraps NCHW-only ops in NHWC <-> NCHW transposes; back-to-back pairs cancel.
    "tf2onnx-nchw-nhwc-nchw": ("(float[1, 3, 4, 5] x) => (float[1, 3, 4, 5] y)", "a = Transpose<perm=[0, 2, 3, 1]>(x)\n  b = Transpose<perm=[0, 3, 1, 2]>(a)\n  y = Relu(b)", (1, 3, 4, 5), ["Relu"]),
    "tf2onnx-nhwc-nchw-nhwc": ("(float[1, 4, 5, 3] x) => (float[1, 4, 5, 3] y)", "a = Transpose<perm=[0, 3, 1, 2]>(x)\n  b = Transpose<perm=[0, 2, 3, 1]>(a)\n  y = Relu(b)", (1, 4, 5, 3), ["Relu"]),
    # PyTorch x.transpose(1, 2).transpose(2, 3): one Transpose with the composed permutation.
    "pytorch-transpose-transpose": ("(float[2, 3, 4, 5] x) => (float[2, 4, 5, 3] y)", "a = Transpose<perm=[0, 2, 1, 3]>(x)\n  b = Transpose<perm=[0, 1, 3, 2]>(a)\n  y = Relu(b)", (2, 3, 4, 5), ["Transpose", "Relu"]),
    # PyTorch x.permute(0, 2, 3, 1).permute(0, 3, 1, 2) with no other readers: nothing left.
    "pytorch-permute-back": ("(float[2, 3, 4, 5] x) => (float[2, 3, 4, 5] y)", "a = Relu(x)\n  t = Transpose<perm=[0, 2, 3, 1]>(a)\n  y = Transpose<perm=[0, 3, 1, 2]>(t)", (2, 3, 4, 5), ["Relu"]),
    # No perm attribute: each reverses the axes.
    "default-perm": ("(float[2, 3, 4] x) => (float[2, 3, 4] y)", "a = Transpose(x)\n  b = Transpose(a)\n  y = Relu(b)", (2, 3, 4), ["Relu"]),
    "mixed-default-perm": ("(float[2, 3, 4] x) => (float[3, 4, 2] y)", "a = Transpose(x)\n  b = Transpose<perm=[1, 0, 2]>(a)\n  y = Relu(b)", (2, 3, 4), ["Transpose", "Relu"]),
}


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_composes_transpose_pairs(case):
    signature, body, shape, after = PAIRS[case]
    _fused(_text(signature, body), random_feeds(x=shape), {"transpose+transpose": 1}, after)


def test_identity_pair_keeps_graph_output_name():
    model = _fused(
        _text("(float[2, 3] x) => (float[2, 3] y)", "a = Relu(x)\n  t = Transpose<perm=[1, 0]>(a)\n  y = Transpose<perm=[1, 0]>(t)"),
        random_feeds(x=(2, 3)),
        {"transpose+transpose": 1},
        ["Relu"],
    )
    assert [v.name for v in model.graph.outputs] == ["y"]


def test_composes_a_chain_of_three():
    body = "a = Transpose<perm=[1, 0, 2]>(x)\n  b = Transpose<perm=[0, 2, 1]>(a)\n  d = Transpose<perm=[2, 1, 0]>(b)\n  y = Relu(d)"
    _fused(_text("(float[2, 3, 4] x) => (float[2, 4, 3] y)", body), random_feeds(x=(2, 3, 4)), {"transpose+transpose": 2}, ["Transpose", "Relu"])


def test_composed_transpose_may_produce_a_graph_output():
    body = "a = Transpose<perm=[0, 2, 1]>(x)\n  y = Transpose<perm=[1, 0, 2]>(a)"
    model = _fused(_text("(float[2, 3, 4] x) => (float[4, 2, 3] y)", body), random_feeds(x=(2, 3, 4)), {"transpose+transpose": 1}, ["Transpose"])
    assert [v.name for v in model.graph.outputs] == ["y"]


GEMMS = {
    # x.t() @ W + c exported with the Transpose in front of Gemm.
    "transposed-a": ("(float[4, 2] x) => (float[2, 3] y)", "t = Transpose<perm=[1, 0]>(x)\n  y = Gemm(t, w, c)", {"x": (4, 2)}, {"transA": 1}),
    # PyTorch nn.Linear (Gemm transB=1) whose weight is itself a transposed activation: the flags cancel.
    "transposed-b-toggles": ("(float[2, 4] x, float[4, 3] v) => (float[2, 3] y)", "t = Transpose<perm=[1, 0]>(v)\n  y = Gemm<transB=1>(x, t, c)", {"x": (2, 4), "v": (4, 3)}, {"transB": 0}),
    "both": ("(float[4, 2] x, float[3, 4] v) => (float[2, 3] y)", "ta = Transpose(x)\n  tb = Transpose<perm=[1, 0]>(v)\n  y = Gemm<alpha=0.5>(ta, tb, c)", {"x": (4, 2), "v": (3, 4)}, {"transA": 1, "transB": 1}),
}


@pytest.mark.parametrize("case", sorted(GEMMS))
def test_folds_transpose_into_gemm(case):
    signature, body, shapes, flags = GEMMS[case]
    model = _fused(_text(signature, body), random_feeds(**shapes), {"transpose+gemm": 1}, ["Gemm"])
    gemm = next(iter(model.graph))
    assert {name: gemm.attributes[name].as_int() for name in flags} == flags


MATMULS = {
    # tf.matmul(x, W, transpose_a=True) as tf2onnx writes it, and PyTorch x.t() @ W.
    "transposed-activation-first": ("(float[4, 2] x) => (float[2, 3] y)", "t = Transpose<perm=[1, 0]>(x)\n  y = MatMul(t, w)", (4, 2), "transA"),
    "transposed-activation-second": ("(float[2, 4] x) => (float[3, 2] y)", "t = Transpose<perm=[1, 0]>(x)\n  y = MatMul(wt, t)", (2, 4), "transB"),
}


@pytest.mark.parametrize("case", sorted(MATMULS))
def test_folds_transpose_into_matmul_as_gemm(case):
    signature, body, shape, flag = MATMULS[case]
    model = _fused(_text(signature, body), random_feeds(x=shape), {"transpose+matmul": 1}, ["Gemm"])
    gemm = next(iter(model.graph))
    assert gemm.attributes[flag].as_int() == 1
    assert [v.name for v in model.graph.outputs] == ["y"]


DECLINES = {
    "not-a-pair": (
        "(float[2, 3] x) => (float[3, 2] y)",
        "y = Transpose<perm=[1, 0]>(x)",
        17,
        {NOT_A_PAIR: 1},
    ),
    "pair-shared": (
        "(float[2, 3, 4] x) => (float[2, 3, 4] y, float[2, 4, 3] z)",
        "a = Transpose<perm=[0, 2, 1]>(x)\n  b = Transpose<perm=[0, 2, 1]>(a)\n  y = Relu(b)\n  z = Relu(a)",
        17,
        {NOT_A_PAIR: 1, "transpose+transpose: first Transpose output is used elsewhere": 1},
    ),
    "pair-of-constant": (
        "(float[3, 4] x) => (float[3, 4] y)",
        "a = Transpose<perm=[1, 0]>(wt)\n  b = Transpose<perm=[1, 0]>(a)\n  y = Add(x, b)",
        17,
        {NOT_A_PAIR: 1, "transpose+transpose: Transpose of a constant is left to constant folding": 1},
    ),
    "pair-unknown-rank": (
        "(float[] x) => (float[] y)",
        "a = Transpose(x)\n  b = Transpose(a)\n  y = Relu(b)",
        17,
        {NOT_A_PAIR: 1, "transpose+transpose: permutation unknown (no perm and input rank unknown)": 1},
    ),
    "pair-identity-input-to-output": (
        "(float[2, 3] x) => (float[2, 3] y)",
        "a = Transpose<perm=[1, 0]>(x)\n  y = Transpose<perm=[1, 0]>(a)",
        17,
        {NOT_A_PAIR: 1, "transpose+transpose: identity result is a graph output that cannot be renamed": 1},
    ),
    "gemm-plain": (
        "(float[2, 4] x) => (float[2, 3] y)",
        "y = Gemm(x, w, c)",
        17,
        {"transpose+gemm: no transposed operand": 1},
    ),
    "gemm-shared": (
        "(float[4, 2] x) => (float[2, 3] y, float[2, 4] z)",
        "t = Transpose<perm=[1, 0]>(x)\n  y = Gemm(t, w, c)\n  z = Relu(t)",
        17,
        {NOT_A_PAIR: 1, "transpose+gemm: Transpose output is used elsewhere": 1},
    ),
    "gemm-constant-weight": (
        "(float[2, 4] x) => (float[2, 3] y)",
        "t = Transpose<perm=[1, 0]>(wt)\n  y = Gemm(x, t, c)",
        17,
        {NOT_A_PAIR: 1, "transpose+gemm: Transpose of a constant is left to constant folding": 1},
    ),
    # Attention's Q @ K^T transposes the last two of four axes: not a 2-D Transpose.
    "matmul-attention-scores": (
        "(float[1, 2, 5, 8] q, float[1, 2, 5, 8] k) => (float[1, 2, 5, 5] y)",
        "kt = Transpose<perm=[0, 1, 3, 2]>(k)\n  y = MatMul(q, kt)",
        17,
        {NOT_A_PAIR: 1, "transpose+matmul: no 2-D transposed operand": 1},
    ),
    "matmul-shared": (
        "(float[4, 2] x) => (float[2, 3] y, float[2, 4] z)",
        "t = Transpose<perm=[1, 0]>(x)\n  y = MatMul(t, w)\n  z = Relu(t)",
        17,
        {NOT_A_PAIR: 1, "transpose+matmul: Transpose output is used elsewhere": 1},
    ),
    # PyTorch dynamo's linear without bias: MatMul(x, Transpose(W)); folding makes W^T.
    "matmul-constant-weight": (
        "(float[2, 4] x) => (float[2, 3] y)",
        "t = Transpose<perm=[1, 0]>(wt)\n  y = MatMul(x, t)",
        17,
        {NOT_A_PAIR: 1, "transpose+matmul: Transpose of a constant is left to constant folding": 1},
    ),
    "matmul-dynamic-other": (
        "(float[4, 2] x, float[4, 3] v) => (float[2, 3] y)",
        "t = Transpose<perm=[1, 0]>(x)\n  y = MatMul(t, v)",
        17,
        {NOT_A_PAIR: 1, "transpose+matmul: other operand is not a 2-D constant": 1},
    ),
    "matmul-int": (
        "(int32[4, 2] x) => (int32[2, 3] y)",
        "t = Transpose<perm=[1, 0]>(x)\n  y = MatMul(t, wi)",
        17,
        {NOT_A_PAIR: 1, "transpose+matmul: not float32 or float64": 1},
    ),
    "matmul-opset10": (
        "(float[4, 2] x) => (float[2, 3] y)",
        "t = Transpose<perm=[1, 0]>(x)\n  y = MatMul(t, w)",
        10,
        {NOT_A_PAIR: 1, "transpose+matmul: opset below 11 (Gemm needs C)": 1},
    ),
}


@pytest.mark.parametrize("case", sorted(DECLINES))
def test_declines(case):
    signature, body, opset, declined = DECLINES[case]
    text = _text(signature, body, opset).replace("float[3] c =", "int32[4, 3] wi = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, float[3] c =")
    verify_declines(FuseTransposesPass, text, declined)
