"""eliminate-no-ops: before model, after op sequence, equivalence in onnxruntime, and declines."""

import numpy as np
import pytest

from passes.cleanup.noop import EliminateNoOpsPass
from tests.helpers import assert_equivalent, from_text, ops, random_feeds, run_pass, verify, verify_declines

HEADER = '<ir_version: 10, opset_import: ["" : 17]>'

NOOPS = {
    "Identity": "a = Identity(x)",
    "Dropout": "a = Dropout(x)",
    "Cast": "a = Cast<to=1>(x)",
    "Reshape": "a = Reshape(x, s)",
    "Expand": "a = Expand(x, s)",
    "Flatten": "a = Flatten<axis=1>(x)",
    "Transpose": "a = Transpose<perm=[0, 1]>(x)",
    "Pad": "a = Pad(x, zeros)",
    "Slice": "a = Slice(x, starts, ends)",
    "Concat": "a = Concat<axis=0>(x)",
    "Split": "a = Split<axis=0>(x)",
    "Mul": "a = Mul(x, one)",
    "Div": "a = Div(x, one)",
    "Add": "a = Add(zero, x)",
    "Sub": "a = Sub(x, zero)",
}


def _model(line: str) -> str:
    return f"""{HEADER}
g (float[2, 4] x) => (float[2, 4] y)
  <int64[2] s = {{2, 4}}, int64[4] zeros = {{0, 0, 0, 0}}, int64[2] starts = {{0, 0}},
   int64[2] ends = {{9223372036854775807, 4}}, float[1] one = {{1.0}}, float[1] zero = {{0.0}}>
{{
  {line}
  y = Relu(a)
}}"""


@pytest.mark.parametrize("op", sorted(NOOPS))
def test_removes_noop(op):
    text = _model(NOOPS[op])
    verify(EliminateNoOpsPass, text, ["Relu"], random_feeds(x=(2, 4)), stats={op: 1})


DECLINES = {
    "cast to another type": "c = Cast<to=11>(x)\n  a = Cast<to=1>(c)",
    "reshape to another shape": "a = Reshape(x, s)",
    "transpose that permutes": "a = Transpose<perm=[1, 0]>(x)",
    "mul by two": "a = Mul(x, two)",
    "mul by ones that broadcast wider": "a = Mul(x, wide)",
    "slice that cuts": "a = Slice(x, starts, ends)",
    "dropout in training mode": "a = Dropout(x, ratio, training)",
}


@pytest.mark.parametrize("case", sorted(DECLINES))
def test_declines(case):
    text = f"""{HEADER}
g (float[2, 4] x) => (float[2, 4] y)
  <int64[2] s = {{4, 2}}, int64[2] starts = {{0, 1}}, int64[2] ends = {{2, 4}}, float[1] two = {{2.0}},
   float[1] ratio = {{0.5}}, bool training = {{1}}, float[3, 1, 1] wide = {{1.0, 1.0, 1.0}}>
{{
  {DECLINES[case]}
  y = Relu(a)
}}"""
    if case == "mul by ones that broadcast wider":
        text = text.replace("=> (float[2, 4] y)", "=> (float[3, 2, 4] y)")
    if case == "reshape to another shape":
        text = text.replace("=> (float[2, 4] y)", "=> (float[4, 2] y)")
    if case == "slice that cuts":
        text = text.replace("=> (float[2, 4] y)", "=> (float[2, 3] y)")
    verify_declines(EliminateNoOpsPass, text)


def test_keeps_identity_between_graph_input_and_output():
    text = f"""{HEADER}
g (float[2] x) => (float[2] y) {{
  y = Identity(x)
}}"""
    verify(EliminateNoOpsPass, text, ["Identity"], None, stats={})


def test_renames_when_output_is_graph_output():
    text = f"""{HEADER}
g (float[2] x) => (float[2] y) {{
  a = Relu(x)
  y = Identity(a)
}}"""
    model = from_text(text)
    run_pass(EliminateNoOpsPass, model)
    assert ops(model) == ["Relu"]
    assert [v.name for v in model.graph.outputs] == ["y"]
    x = np.array([-1.0, 2.0], np.float32)
    assert_equivalent(text, model, {"x": x})
