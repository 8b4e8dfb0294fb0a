"""Regression tests for what tests/test_fuzz.py found: each shrunk failing model, written out in ONNX
text, held to the fuzzing property (tests/fuzz/check.py: optimizing at O2 and O3 drops no pass and
computes the same outputs), plus TVM-style tests of the pass that was fixed (before, op sequence after,
equivalence in onnxruntime, and the case the fix makes it decline).

Problems whose fix lay outside the passes (value names clashing across a graph and its If branch;
onnxruntime's own optimizer breaking a model, which verification blamed on the passes) are tested at
the end, against the pipeline and verification fixes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

from optimizer.api import optimize
from optimizer.graph.matching import is_default_domain
from passes.folding.constant_if import InlineConstantIfPass
from passes.fusion.gelu import FuseGeluAnyOpsetPass, FuseGeluPass
from passes.fusion.hard_activations import FuseHardActivationsPass
from passes.fusion.layer_norm import FuseLayerNormPass
from passes.fusion.rms_norm import FuseRMSNormPass
from passes.pruning.zero_channels import PruneZeroChannelsPass
from tests.fuzz.check import assert_optimized_output_matches, assert_optimizes_equivalently, run_model
from tests.helpers import assert_equivalent, assert_unchanged, from_text, random_feeds, run_pass, verify, verify_declines


def _holds(text: str) -> None:
    """The fuzzing property, on the model in `text`."""
    assert_optimizes_equivalently(onnx.parser.parse_model(text), known_issues=False)


# -- A one-element constant with more dims than x broadcasts x up a rank ------------------------------
# Found as `Div(Clip(Add(Relu(x[1, 1]), 3), 0, 6), 6[1, 1, 1])` (opset 11): fuse-hard-activations made
# it HardSigmoid(x), of shape [1, 1] instead of [1, 1, 1], and verification dropped the pass. The same
# read of "a scalar" as "any one-element constant" was in fuse-gelu(-ort) (the 0.5), fuse-layer-norm
# (eps, gamma) and fuse-rms-norm (eps, the 1 of 1/s). The passes now decline such a match.

HARD_SIGMOID = """<ir_version: 10, opset_import: ["" : 17]>
g (float[2, 3] x) => (float[{out}] y) <float three = {{3.0}}, float low = {{0.0}}, float high = {{6.0}}, float{shape} six = {{6.0}}> {{
  a = Add(x, three)
  c = Clip(a, low, high)
  y = Div(c, six)
}}"""

GELU = """<ir_version: 10, opset_import: ["" : {opset}]>
g (float[2, 3] x) => (float[{out}] y) <float k = {{0.70710677}}, float one = {{1.0}}, float{shape} half = {{0.5}}> {{
  a = Mul(x, k)
  b = Erf(a)
  c = Add(b, one)
  d = Mul(x, c)
  y = Mul(d, half)
}}"""

LAYER_NORM = """<ir_version: 10, opset_import: ["" : 18]>
g (float[2, 3] x) => (float[{out}] y) <int64[1] axes = {{-1}}, float two = {{2.0}}, float{shape} eps = {{1e-5}}> {{
  m = ReduceMean<keepdims=1>(x, axes)
  d = Sub(x, m)
  p = Pow(d, two)
  v = ReduceMean<keepdims=1>(p, axes)
  a = Add(v, eps)
  s = Sqrt(a)
  y = Div(d, s)
}}"""

LAYER_NORM_GAMMA = """<ir_version: 10, opset_import: ["" : 18]>
g (float[2, 3] x) => (float[{out}] y) <int64[1] axes = {{-1}}, float two = {{2.0}}, float eps = {{1e-5}}, float{shape} gamma = {{{gamma}}}> {{
  m = ReduceMean<keepdims=1>(x, axes)
  d = Sub(x, m)
  p = Pow(d, two)
  v = ReduceMean<keepdims=1>(p, axes)
  a = Add(v, eps)
  s = Sqrt(a)
  n = Div(d, s)
  y = Mul(n, gamma)
}}"""

RMS_NORM = """<ir_version: 11, opset_import: ["" : 23]>
g (float[2, 3] x) => (float[{out}] y) <int64[1] axes = {{-1}}, float two = {{2.0}}, float{shape} one = {{1.0}}, float eps = {{1e-6}}> {{
  p = Pow(x, two)
  v = ReduceMean<keepdims=1>(p, axes)
  a = Add(v, eps)
  s = Sqrt(a)
  r = Div(one, s)
  y = Mul(x, r)
}}"""

FUSIONS = {
    "hard-sigmoid": (FuseHardActivationsPass, HARD_SIGMOID, {}, "HardSigmoid"),
    "gelu": (FuseGeluPass, GELU, {"opset": 20}, "Gelu"),
    "gelu-ort": (FuseGeluAnyOpsetPass, GELU, {"opset": 17}, "com.microsoft:Gelu"),
    "layer-norm-eps": (FuseLayerNormPass, LAYER_NORM, {}, "LayerNormalization"),
    "layer-norm-gamma": (FuseLayerNormPass, LAYER_NORM_GAMMA, {"gamma": "1.5, 0.5, 2.0"}, "LayerNormalization"),
    "rms-norm": (FuseRMSNormPass, RMS_NORM, {}, "RMSNormalization"),
}


def _fusion_text(template: str, params: dict, wide: bool) -> str:
    if "gamma" in params:  # gamma [3] (normalized dims) or [1, 1, 3] (one dim more than x)
        shape = "[1, 1, 3]" if wide else "[3]"
    else:
        shape = "[1, 1, 1]" if wide else ""
    return template.format(out="1, 2, 3" if wide else "2, 3", shape=shape, **params)


def _op_names(model: ir.Model) -> list[str]:
    return [n.op_type if is_default_domain(n.domain) else f"{n.domain}:{n.op_type}" for n in model.graph]


@pytest.mark.parametrize("case", FUSIONS)
def test_fuses_with_a_one_element_constant_of_lower_rank(case):
    pass_class, template, params, fused = FUSIONS[case]
    text = _fusion_text(template, params, wide=False)
    model = from_text(text)
    assert sum(run_pass(pass_class, model).stats.values()) == 1
    assert _op_names(model) == [fused]
    assert_equivalent(text, model, random_feeds(x=(2, 3)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", FUSIONS)
def test_declines_a_constant_that_broadcasts_the_input_up(case):
    pass_class, template, params, _ = FUSIONS[case]
    text = _fusion_text(template, params, wide=True)
    model = from_text(text)
    applied = run_pass(pass_class, model)
    assert applied.stats == {}
    assert any("broadcasts it up" in reason for reason in applied.declined), applied.declined
    assert_unchanged(text, model)
    # Through the whole pipeline, held to the outputs only: onnxruntime's own optimizer miscomputes the
    # rms-norm case (see test_onnxruntime_optimizer_miscomputing_is_not_blamed_on_passes), which the
    # built-in verification would blame on a pass.
    assert_optimized_output_matches(onnx.parser.parse_model(text))


def test_fuzz_found_hard_sigmoid_with_wide_divisor():
    _holds("""<ir_version: 10, opset_import: ["" : 11]>
g (float[1, 1] input0) => (float[1, 1, 1] div_8) <float s_2 = {3.0}, float s_4 = {0.0}, float s_5 = {6.0}, float[1, 1, 1] s_7 = {6.0}> {
  relu_0 = Relu(input0)
  relu_1 = Relu(relu_0)
  add_3 = Add(relu_1, s_2)
  clip_6 = Clip(add_3, s_4, s_5)
  div_8 = Div(clip_6, s_7)
}""")


# -- fuse-gelu-ort: FastGelu on a scalar --------------------------------------------------------------
# Found at O3, opset 11: the Tanh Gelu form on a rank-0 value (in an If branch the pipeline inlined)
# became com.microsoft FastGelu, which onnxruntime refuses to run on a scalar ("Input 0 is expected to
# have 1 or more dimensions, got 0"); verification dropped the pass. The Erf form's com.microsoft Gelu
# runs on scalars and is still fused.

TANH_GELU = """<ir_version: 10, opset_import: ["" : 11]>
g (float{shape} x) => (float{shape} y) <float c = {{0.044715}}, float k = {{0.7978846}}, float one = {{1.0}}, float half = {{0.5}}> {{
  x2 = Mul(x, x)
  x3 = Mul(x, x2)
  a = Mul(x3, c)
  b = Add(x, a)
  d = Mul(b, k)
  t = Tanh(d)
  e = Add(t, one)
  f = Mul(x, e)
  y = Mul(f, half)
}}"""


def test_fuses_tanh_gelu_into_fastgelu():
    text = TANH_GELU.format(shape="[3]")
    model = from_text(text)
    assert run_pass(FuseGeluAnyOpsetPass, model).stats == {"fastgelu (opset < 20, onnxruntime)": 1}
    assert _op_names(model) == ["com.microsoft:FastGelu"]
    assert_equivalent(text, model, random_feeds(x=(3,)), rtol=1e-4, atol=1e-5)


def test_declines_fastgelu_on_a_scalar():
    text = TANH_GELU.format(shape="")
    verify_declines(FuseGeluAnyOpsetPass, text, {"fastgelu (opset < 20, onnxruntime): FastGelu needs an input of rank 1 or more": 1})
    _holds(text)


def test_fuzz_found_fastgelu_on_a_scalar_in_an_inlined_branch():
    _holds("""<ir_version: 10, opset_import: ["" : 11]>
g (float input0) => (float if_17) <bool cond_0 = {0}> {
  if_17 = If(cond_0) <else_branch = else_16 () => (float mul_15) {
      mul_3 = Mul(input0, input0)
      mul_4 = Mul(input0, mul_3)
      s_5 = Constant<value = float {0.044715}>()
      mul_6 = Mul(mul_4, s_5)
      add_7 = Add(input0, mul_6)
      s_8 = Constant<value = float {0.7978846}>()
      mul_9 = Mul(add_7, s_8)
      tanh_10 = Tanh(mul_9)
      s_11 = Constant<value = float {1.0}>()
      add_12 = Add(tanh_10, s_11)
      mul_13 = Mul(input0, add_12)
      s_14 = Constant<value = float {0.5}>()
      mul_15 = Mul(mul_13, s_14)
  }, then_branch = then_2 () => (float identity_1) { identity_1 = Identity(input0) }>
}""")


# -- prune-zero-channels: a Gemm with one zero column and a scalar C ----------------------------------
# Found at O2 (fuzz model with a Gemm<beta=0>(h, B[2, 1] = 0, C = 0.947)): reading the scalar C as a
# per-column bias, the pass indexed a 0-d array, raised, and the pipeline dropped it for the whole model.

ZERO_GEMM = """<ir_version: 10, opset_import: ["" : 17]>
g (float[2, 3] x) => (float[2, {n}] y) <float[3, {n}] w = {{{w}}}, float c = {{0.0}}, float[{n}, 2] w2 = {{{w2}}}> {{
  h = Gemm(x, w, c)
  r = Relu(h)
  y = MatMul(r, w2)
}}"""


def test_prunes_gemm_columns_with_a_scalar_c():
    text = ZERO_GEMM.format(n=3, w="0.5, 0.0, -1.0, 0.25, 0.0, 2.0, -0.5, 0.0, 1.0", w2="1.0, 2.0, 3.0, 4.0, 5.0, 6.0").replace("float[2, 3] y", "float[2, 2] y")
    model, _ = verify(PruneZeroChannelsPass, text, ["Gemm", "Relu", "MatMul"], None, stats={"layers": 1, "channels": 1})
    assert model.graph.initializers["w"].const_value.numpy().shape == (3, 2)
    assert_equivalent(text, model, random_feeds(x=(2, 3)))


def test_declines_a_single_zero_gemm_column_with_a_scalar_c():
    text = ZERO_GEMM.format(n=1, w="0.0, 0.0, 0.0", w2="1.0, 2.0").replace("float[2, 1] y", "float[2, 2] y")
    model = from_text(text)
    applied = run_pass(PruneZeroChannelsPass, model)  # raised IndexError before the fix
    assert applied.stats == {}
    assert applied.declined == {"Gemm: every output channel is zero": 1}
    assert_unchanged(text, model)
    _holds(text)


def test_fuzz_found_gemm_with_zero_column_and_scalar_c():
    _holds("""<ir_version: 10, opset_import: ["" : 11]>
g (float[1, 1] x) => (float[1, 1] y) <float[1, 2] w = {-0.13210486, 0.64042264}, float[2, 1] w0 = {0.0, 0.0}, float c = {0.94708097}> {
  h = Gemm(x, w)
  r = Relu(h)
  y = Gemm<beta = 0.0>(r, w0, c)
}""")


# -- inline-constant-if: branch node and value names that the enclosing graph already uses -----------
# Found at O3, opset 11: a Gelu decomposition in the main graph and in an If branch whose condition
# folds to a constant. fuse-gelu-ort named both new nodes node_Gelu_0 (onnx-ir names per graph);
# inlining the branch put both in one graph, which onnxruntime refuses ("two nodes with same node
# name"), and verification dropped the pass. Plain exported models can have it too: a branch node
# named like an outer one.

INLINE = """<ir_version: 10, opset_import: ["" : 17]>
g (float[4] x, bool cond) => (float[4] y, float[4] z) <bool c = {1}> {
  [n] a = Relu(x)
  v = Neg(x)
  y = If(COND) <then_branch = g1 () => (float[4] t) { [n] t = Sigmoid(a) }, else_branch = g2 () => (float[4] u) { [n] u = Abs(a) }>
  z = Add(y, v)
}"""


def test_inline_constant_if_renames_a_clashing_node_name():
    text = INLINE.replace("COND", "c")
    model, _ = verify(InlineConstantIfPass, text, ["Relu", "Neg", "Sigmoid", "Add"], None, stats={"If": 1})
    names = [node.name for node in model.graph]
    assert names[0] == "n" and names[2] != "n"
    feeds = {**random_feeds(x=(4,)), "cond": np.array(True)}
    assert_equivalent(text, model, feeds)


def test_inline_constant_if_renames_a_clashing_value_name():
    # A branch value named like an outer one (what per-graph automatic names give after a rewrite):
    # inlined as is, the graph would compute `v` twice.
    text = INLINE.replace("COND", "c").replace("{ [n] t = Sigmoid(a) }", "{ v = Sigmoid(a)\n [n] t = Abs(v) }")
    model = from_text(text)
    assert run_pass(InlineConstantIfPass, model).stats == {"If": 1}
    outputs = [value.name for node in model.graph for value in node.outputs]
    assert len(outputs) == len(set(outputs)), outputs
    proto = ir.serde.serialize_model(model)
    onnx.checker.check_model(proto, full_check=True)
    x = np.array([-1.0, 0.5, 2.0, -3.0], np.float32)
    y, z = run_model(proto, {"x": x, "cond": np.array(True)})
    sigmoid = 1 / (1 + np.exp(-np.maximum(x, 0)))
    np.testing.assert_allclose(y, sigmoid, rtol=1e-6)
    np.testing.assert_allclose(z, sigmoid - x, rtol=1e-6)


def test_inline_constant_if_declines_a_condition_that_is_not_constant():
    text = INLINE.replace("COND", "cond")
    verify_declines(InlineConstantIfPass, text)


GELU_IN_BRANCH = """<ir_version: 10, opset_import: ["" : {opset}]>
g (float[7] x, float[7] x2) => (float[7] y) <float k = {{0.70710677}}, float one = {{1.0}}, float half = {{0.5}}, float p = {{1.1}}, float q = {{-1.0}}> {{
  a = Mul(x, k)
  b = Erf(a)
  c = Add(b, one)
  d = Mul(x, c)
  e = Mul(d, half)
  f = Relu(e)
  s = ReduceSum<keepdims=0>(x2)
  cond = Greater({cond})
  y = If(cond) <then_branch = g1 () => (float[7] t) {{
      k1 = Constant<value = float {{0.70710677}}>()
      a1 = Mul(f, k1)
      b1 = Erf(a1)
      c1 = Add(b1, one)
      d1 = Mul(f, c1)
      e1 = Mul(d1, half)
      {tail}
  }}, else_branch = g2 () => (float[7] u) {{ u = Neg(f) }}>
}}"""


@pytest.mark.parametrize("tail", ["t = Identity(e1)", "t = Relu(e1)"], ids=["fused-value-is-branch-output", "fused-value-is-internal"])
def test_fuzz_found_gelu_in_main_graph_and_constant_if_branch(tail):
    # The condition folds to a constant (1.1 > -1), so the branch is inlined after both Gelus are fused.
    _holds(GELU_IN_BRANCH.format(opset=11, cond="p, q", tail=tail))


# -- Fixed outside the passes (optimizer.pipeline.make_value_names_unique, optimizer.verify) -----------


@pytest.mark.parametrize("opset", [20, 11])
def test_fusion_in_main_graph_and_if_branch_keeps_names_unique(opset):
    _holds(GELU_IN_BRANCH.format(opset=opset, cond="s, one", tail="t = Relu(e1)"))


def test_onnxruntime_optimizer_failure_is_not_blamed_on_passes():
    # onnxruntime 1.31 with ORT_ENABLE_EXTENDED: "Node input 'n' is not a graph input, initializer, or
    # output of a previous node" (its RMSNorm-like fusion of gamma * (x * (1 / sqrt(mean(x^2) + eps))) on a 1-D x).
    _holds("""<ir_version: 10, opset_import: ["" : 20]>
g (float[4] x) => (float[4] y) <float two = {2.0}, int64[1] axes = {-1}, float eps = {1e-6}, float one = {1.0}, float[4] gamma = {1.0, 2.0, 3.0, 4.0}> {
  i = Identity(x)
  p = Pow(i, two)
  m = ReduceMean<keepdims=1>(p, axes)
  a = Add(m, eps)
  s = Sqrt(a)
  r = Div(one, s)
  n = Mul(i, r)
  y = Mul(gamma, n)
}""")


def test_onnxruntime_optimizer_miscomputing_is_not_blamed_on_passes():
    _holds(_fusion_text(RMS_NORM, {}, wide=True))


def test_a_rewrite_that_onnxruntime_then_miscomputes_is_dropped():
    # Found at O2, opset 18 (shrunk by hand from the fuzz model). The original runs alike with onnxruntime's
    # optimizations on and off (the Div has two readers, so onnxruntime's RMSNorm-like fusion leaves it);
    # CSE merges the two Muls, the Div then has one reader, and onnxruntime's fusion takes the pattern and
    # loses the dim the [1, 1, 1] eps adds. CSE's output is right (with onnxruntime's optimizations off),
    # but deployed with them on it would compute [1, 2] instead of [1, 1, 2]: verification, which runs
    # candidates as they will be deployed, drops CSE, and what ships computes the original's outputs
    # either way. (Kept as the expected behaviour: onnxruntime's fault, the optimizer's protection.)
    text = """<ir_version: 10, opset_import: ["" : 18]>
g (float[1, 2] x) => (float[1, 1, 2] y, float[1, 1, 2] m) <float two = {2.0}, int64[1] axes = {-1}, float[1, 1, 1] eps = {1e-5}, float[2] gamma = {1.1369617, 0.7697867}> {
  r = Relu(x)
  p = Pow(r, two)
  v = ReduceMean<keepdims = 1>(p, axes)
  a = Add(v, eps)
  s = Sqrt(a)
  d = Div(r, s)
  m = Mul(gamma, d)
  m2 = Mul(gamma, d)
  y = Add(m, m2)
}"""
    model = onnx.parser.parse_model(text)
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "m.onnx", Path(scratch) / "o.onnx"
        onnx.save(model, source)
        result = optimize(source, target, level="O2", tune=False, verify=True)
        assert [d.name for d in result.dropped] == ["eliminate-common-subexpressions"]
        assert result.verification.passed
        feeds = {"x": np.array([[0.7, 1.3]], np.float32)}
        expected = run_model(model, feeds)
        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])  # default optimizations
        for e, a in zip(expected, session.run(None, feeds)):
            np.testing.assert_allclose(a, e, rtol=1e-5)
    assert_optimized_output_matches(model)  # and the rewrite itself is right, with onnxruntime's optimizations off
