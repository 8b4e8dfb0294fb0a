"""eliminate-dead-code, eliminate-common-subexpressions, deduplicate-initializers (TVM style)."""

from passes.cleanup.dead_code import EliminateDeadCodePass
from passes.cleanup.deduplication import DeduplicateConstantsPass, EliminateCommonSubexpressionsPass
from tests.helpers import assert_equivalent, from_text, random_feeds, run_pass, verify, verify_declines

HEADER = '<ir_version: 10, opset_import: ["" : 17]>'


def test_removes_dead_nodes_and_initializers():
    text = f"""{HEADER}
g (float[3] x) => (float[3] y) <float[3] unused = {{1.0, 2.0, 3.0}}> {{
  dead = Sigmoid(x)
  dead2 = Neg(dead)
  y = Relu(x)
}}"""
    verify(EliminateDeadCodePass, text, ["Relu"], random_feeds(x=(3,)), stats={"nodes": 2, "initializers": 1})


def test_dead_code_keeps_live_graph():
    text = f"""{HEADER}
g (float[3] x) => (float[3] y, float[3] z) {{
  y = Relu(x)
  z = Sigmoid(y)
}}"""
    verify_declines(EliminateDeadCodePass, text)


def test_merges_common_subexpressions():
    text = f"""{HEADER}
g (float[3] x) => (float[3] y) {{
  a = Relu(x)
  b = Relu(x)
  y = Add(a, b)
}}"""
    verify(EliminateCommonSubexpressionsPass, text, ["Relu", "Add"], random_feeds(x=(3,)), stats={"nodes": 1})


def test_cse_leaves_random_draws_alone():
    text = f"""{HEADER}
g (float[3] x) => (float[3] y) {{
  a = RandomNormalLike(x)
  b = RandomNormalLike(x)
  y = Add(a, b)
}}"""
    verify_declines(EliminateCommonSubexpressionsPass, text)


def test_cse_keeps_different_attributes():
    text = f"""{HEADER}
g (float[3] x) => (float[3] y) {{
  a = LeakyRelu<alpha=0.1>(x)
  b = LeakyRelu<alpha=0.2>(x)
  y = Add(a, b)
}}"""
    verify_declines(EliminateCommonSubexpressionsPass, text)


def test_deduplicates_identical_initializers():
    text = f"""{HEADER}
g (float[3] x) => (float[3] y) <float[3] a = {{1.0, 2.0, 3.0}}, float[3] b = {{1.0, 2.0, 3.0}}> {{
  p = Add(x, a)
  y = Mul(p, b)
}}"""
    model = from_text(text)
    applied = run_pass(DeduplicateConstantsPass, model)
    assert applied.stats == {"initializers": 1}
    assert len(model.graph.initializers) == 1
    assert_equivalent(text, model, random_feeds(x=(3,)))


def test_dedup_keeps_distinct_initializers():
    text = f"""{HEADER}
g (float[3] x) => (float[3] y) <float[3] a = {{1.0, 2.0, 3.0}}, float[3] b = {{1.0, 2.0, 4.0}}> {{
  p = Add(x, a)
  y = Mul(p, b)
}}"""
    verify_declines(DeduplicateConstantsPass, text)
