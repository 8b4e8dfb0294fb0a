"""fold-constants, fold-shapes, inline-constant-if, initializer-inputs-to-constants (TVM style)."""

import numpy as np

from optimizer.pipeline import PassOptions
from passes.folding.constant_folding import FoldConstantsPass
from passes.folding.constant_if import InlineConstantIfPass
from passes.folding.initializer_inputs import InitializerInputsToConstantsPass
from passes.folding.shape_folding import FoldShapesPass
from tests.helpers import assert_equivalent, assert_unchanged, from_text, ops, random_feeds, run_pass, verify, verify_declines

HEADER = '<ir_version: 10, opset_import: ["" : 17]>'


def test_folds_constant_chain():
    text = f"""{HEADER}
g (float[4] x) => (float[4] y) <float[4] w = {{1.0, 2.0, 3.0, 4.0}}, float[1] two = {{2.0}}> {{
  w2 = Mul(w, two)
  w3 = Sqrt(w2)
  y = Add(x, w3)
}}"""
    verify(FoldConstantsPass, text, ["Add"], random_feeds(x=(4,)), stats={"Mul": 1, "Sqrt": 1})


def test_folds_into_graph_output_keeping_its_name():
    text = f"""{HEADER}
g (float[2] x) => (float[2] y, float[2] c) <float[2] w = {{1.0, 4.0}}> {{
  y = Relu(x)
  c = Sqrt(w)
}}"""
    model = from_text(text)
    run_pass(FoldConstantsPass, model)
    assert [v.name for v in model.graph.outputs] == ["y", "c"]
    assert "Sqrt" not in ops(model)
    assert_equivalent(text, model, random_feeds(x=(2,)))


def test_declines_graph_input_and_initializer_input():
    text = f"""{HEADER}
g (float[2] x, float[2] w) => (float[2] y) <float[2] w = {{1.0, 4.0}}> {{
  s = Sqrt(w)
  y = Add(x, s)
}}"""
    verify_declines(FoldConstantsPass, text)


def test_declines_random_and_dequantize():
    text = f"""{HEADER}
g (float[4] x) => (float[4] y) <int8[4] q = {{1, 2, 3, 4}}, float scale = {{0.5}}, int8 zp = {{0}}> {{
  d = DequantizeLinear(q, scale, zp)
  r = RandomNormalLike(x)
  s = Add(d, r)
  y = Add(x, s)
}}"""
    verify_declines(FoldConstantsPass, text)


def test_size_guard_refuses_bloating_fold():
    text = f"""{HEADER}
g (float[1000, 1000] x) => (float[1000, 1000] y) <int64[2] shape = {{1000, 1000}}> {{
  big = ConstantOfShape<value=float {{1.0}}>(shape)
  y = Add(x, big)
}}"""
    model = from_text(text)
    applied = run_pass(FoldConstantsPass, model)
    assert applied.stats == {}
    assert applied.declined == {"output too large": 1}
    assert_unchanged(text, model)
    allowed = run_pass(FoldConstantsPass, model, PassOptions(fold_max_bytes=10**8))
    assert allowed.stats == {"ConstantOfShape": 1}


def test_folds_static_shape_and_keeps_dynamic_dims():
    text = f"""{HEADER}
g (float[N, 4] x) => (float[N, 4] y) <int64 zero = {{0}}, int64 one = {{1}}, int64[1] axes = {{0}}> {{
  s = Shape(x)
  n = Gather(s, zero)
  c = Gather(s, one)
  n1 = Unsqueeze(n, axes)
  c1 = Unsqueeze(c, axes)
  t = Concat<axis=0>(n1, c1)
  y = Reshape(x, t)
}}"""
    model = from_text(text)
    applied = run_pass(FoldShapesPass, model)
    assert applied.stats == {"Gather": 1}  # dim 1 is static; dim 0 (N) stays dynamic
    assert ops(model).count("Gather") == 1 and "Shape" in ops(model)
    for n in (1, 3):
        assert_equivalent(text, model, random_feeds(x=(n, 4)))


def test_folds_fully_static_shape():
    text = f"""{HEADER}
g (float[2, 3] x) => (float[2, 3] y) {{
  s = Shape(x)
  y = Reshape(x, s)
}}"""
    verify(FoldShapesPass, text, ["Reshape"], random_feeds(x=(2, 3)), stats={"Shape": 1})


def test_declines_dynamic_shape():
    text = f"""{HEADER}
g (float[N, M] x) => (int64[2] y) {{
  y = Shape(x)
}}"""
    verify_declines(FoldShapesPass, text)


def _if_model(condition: str) -> str:
    return f"""{HEADER}
g (float[2] x{", bool c" if condition == "input" else ""}) => (float[2] y) {"<bool c = {1}>" if condition == "constant" else ""} {{
  y = If(c) <then_branch = g1 () => (float[2] t) {{ t = Relu(x) }},
             else_branch = g2 () => (float[2] e) {{ e = Neg(x) }}>
}}"""


def test_inlines_constant_if():
    text = _if_model("constant")
    verify(InlineConstantIfPass, text, ["Relu"], {"x": np.array([-1.0, 2.0], np.float32)}, stats={"If": 1})


def test_keeps_if_on_input_condition():
    text = _if_model("input")
    verify_declines(InlineConstantIfPass, text)


def test_initializer_inputs_become_constants():
    text = """<ir_version: 3, opset_import: ["" : 9]>
g (float[2] x, float[2] w) => (float[2] y) <float[2] w = {1.0, 2.0}> {
  y = Add(x, w)
}"""
    model = from_text(text)
    applied = run_pass(InitializerInputsToConstantsPass, model)
    assert applied.stats == {"inputs": 1} and applied.converted == ["w"]
    assert [v.name for v in model.graph.inputs] == ["x"]
    assert model.ir_version >= 4
    assert_equivalent(text, model, random_feeds(x=(2,)))


def test_no_initializer_inputs_nothing_changes():
    text = f"""{HEADER}
g (float[2] x) => (float[2] y) <float[2] w = {{1.0, 2.0}}> {{
  y = Add(x, w)
}}"""
    verify_declines(InitializerInputsToConstantsPass, text)


def _never_evaluated(monkeypatch):
    def refuse(node, *args, **kwargs):
        raise AssertionError(f"{node.op_type} was evaluated although its size is known from shapes")

    monkeypatch.setattr("passes.folding.constant_folding.evaluate_node", refuse)


def test_a_broadcast_too_large_is_refused_from_shapes_before_it_is_computed(monkeypatch):
    """[4000, 1] + [1, 4000] is 16e6 floats (64 MB) from 32 KB of constants: judged by its shape, never computed."""
    _never_evaluated(monkeypatch)
    column = ", ".join(["1.0"] * 4000)
    text = f"""{HEADER}
g (float[4000, 4000] x) => (float[4000, 4000] y) <float[4000, 1] a = {{{column}}}, float[1, 4000] b = {{{column}}}> {{
  big = Add(a, b)
  y = Mul(x, big)
}}"""
    verify_declines(FoldConstantsPass, text, {"output too large": 1})


def test_one_hot_and_mat_mul_are_judged_by_their_shapes(monkeypatch):
    _never_evaluated(monkeypatch)
    column = ", ".join(["1.0"] * 2000)
    text = f"""{HEADER}
g (float[2000, 2000] x, float[3000, 5000] z) => (float[2000, 2000] y, float[3000, 5000] w)
  <float[2000, 1] a = {{{column}}}, float[1, 2000] b = {{{column}}}, int64[3000] ids = {{{", ".join(["1"] * 3000)}}},
   int64[1] depth = {{5000}}, float[2] values = {{0.0, 1.0}}> {{
  product = MatMul(a, b)
  y = Add(x, product)
  hot = OneHot(ids, depth, values)
  w = Add(z, hot)
}}"""
    verify_declines(FoldConstantsPass, text, {"output too large": 2})


def test_a_small_broadcast_still_folds():
    text = f"""{HEADER}
g (float[2, 3] x) => (float[2, 3] y) <float[2, 1] a = {{1.0, 2.0}}, float[1, 3] b = {{1.0, 2.0, 3.0}}> {{
  s = Add(a, b)
  y = Mul(x, s)
}}"""
    verify(FoldConstantsPass, text, ["Mul"], random_feeds(x=(2, 3)), stats={"Add": 1})
