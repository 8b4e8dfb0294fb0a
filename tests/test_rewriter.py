"""The rewrite framework on a toy rule: replacements applied, declines counted, several anchors,
functions visited, the graph interface kept, postconditions checked by the pipeline."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from optimizer.graph.values import constant_array
from optimizer.pipeline import INTERFACE_UNCHANGED, Decline, OptimizationPass, PassFailedError, Pipeline
from optimizer.rewriter import Replacement, RewritePass, Rule
from tests.helpers import assert_equivalent, from_text, ops, run_pass


class _InverseOfConstant(Rule):
    """Toy rule: `Sub(x, c) => Add(x, -c)` and `Div(x, c) => Mul(x, 1/c)` for a constant c."""

    name = "inverse"
    anchors = ("Sub", "Div")

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        constant = constant_array(node.inputs[1])
        if constant is None:
            raise Decline("operand is not a constant")
        inverse = -constant if node.op_type == "Sub" else 1 / constant
        replacement = Replacement(removed=[node])
        value = replacement.initializer(f"{node.outputs[0].name}_inverse", inverse.astype(constant.dtype))
        op = "Add" if node.op_type == "Sub" else "Mul"
        replacement.insert(ir.Node("", op, [node.inputs[0], value], num_outputs=1), node.outputs[0])
        return replacement


class _InversePass(RewritePass):
    name = "toy-inverse"
    description = "Toy pass for the framework tests."
    rules = (_InverseOfConstant,)


_MAIN = """
<ir_version: 10, opset_import: ["" : 18]>
g (float[2] x, float[2] z) => (float[2] y, float[2] w) <float[2] c = {2.0, 4.0}> {
  s = Sub(x, c)
  d = Div(s, c)
  y = Relu(d)
  w = Sub(x, z)
}
"""


def test_replacement_applied_with_new_initializers_and_equivalent_result():
    model = from_text(_MAIN)
    result = run_pass(_InversePass, model)
    assert ops(model) == ["Add", "Mul", "Relu", "Sub"]
    assert result.stats == {"inverse": 2}
    assert {"s_inverse", "d_inverse"} <= set(model.graph.initializers)
    feeds = {"x": np.array([1.0, -3.0], np.float32), "z": np.array([0.5, 2.0], np.float32)}
    assert_equivalent(_MAIN, model, feeds)


def test_decline_counted_by_rule_and_reason_and_nothing_changes():
    model = from_text(_MAIN)
    result = run_pass(_InversePass, model)
    assert result.declined == {"inverse: operand is not a constant": 1}
    assert ops(model)[-1] == "Sub"


def test_initializer_names_stay_unique():
    text = """
    <ir_version: 10, opset_import: ["" : 18]>
    g (float[2] x) => (float[2] y) <float[2] c = {2.0, 4.0}, float[2] s_inverse = {1.0, 1.0}> {
      s = Sub(x, c)
      y = Add(s, s_inverse)
    }
    """
    model = from_text(text)
    run_pass(_InversePass, model)
    assert "s_inverse_2" in model.graph.initializers
    assert_equivalent(text, model, {"x": np.array([1.0, 2.0], np.float32)})


def test_graph_output_keeps_its_name_type_and_shape():
    text = """
    <ir_version: 10, opset_import: ["" : 18]>
    g (float[2] x) => (float[2] y) <float[2] c = {2.0, 4.0}> {
      y = Sub(x, c)
    }
    """
    model = from_text(text)
    run_pass(_InversePass, model)
    output = model.graph.outputs[0]
    assert (output.name, output.dtype, list(output.shape)) == ("y", ir.DataType.FLOAT, [2])
    assert output.producer().op_type == "Add"
    assert_equivalent(text, model, {"x": np.array([1.0, 2.0], np.float32)})


_WITH_FUNCTION = """
<ir_version: 10, opset_import: ["" : 18, "local" : 1]>
g (float[2] x) => (float[2] y) {
  y = local.shift(x)
}
<domain: "local", opset_import: ["" : 18]>
shift (a) => (b) {
  c = Constant <value = float[1] {3.0}> ()
  b = Sub(a, c)
}
"""


def test_functions_are_visited_and_get_constants_as_nodes():
    model = from_text(_WITH_FUNCTION)
    result = run_pass(_InversePass, model)
    assert result.stats == {"inverse": 1}
    function = next(iter(model.functions.values()))
    assert [node.op_type for node in function] == ["Constant", "Constant", "Add"]
    assert not model.graph.initializers
    assert_equivalent(_WITH_FUNCTION, model, {"x": np.array([1.0, 2.0], np.float32)})


class _InverseImportingContribOps(_InverseOfConstant):
    introduces = {"com.microsoft": 1}


class _ImportingPass(RewritePass, name="toy-importing"):
    """Toy pass whose rule introduces an opset import."""

    rules = (_InverseImportingContribOps,)


def test_introduced_opsets_are_imported_by_the_model_and_the_function():
    model = from_text(_WITH_FUNCTION)
    run_pass(_ImportingPass, model)
    function = next(iter(model.functions.values()))
    assert model.opset_imports["com.microsoft"] == 1 and function.opset_imports["com.microsoft"] == 1


def test_subgraphs_are_visited():
    text = """
    <ir_version: 10, opset_import: ["" : 18]>
    g (bool cond, float[2] x) => (float[2] y) {
      y = If (cond) <
        then_branch = t () => (float[2] a) { c = Constant <value = float[2] {1.0, 2.0}> () a = Sub(x, c) },
        else_branch = e () => (float[2] b) { b = Identity(x) }
      >
    }
    """
    model = from_text(text)
    assert run_pass(_InversePass, model).stats == {"inverse": 1}
    assert_equivalent(text, model, {"cond": np.array(True), "x": np.array([1.0, 2.0], np.float32)})


class _RenameOutput(OptimizationPass):
    name = "rename-output"
    description = "Breaks the interface on purpose."

    def apply(self, model: ir.Model):
        model.graph.outputs[0].name = "renamed"
        return {"renamed": 1}


def test_broken_postcondition_names_the_pass_and_those_before_it():
    model = from_text(_MAIN)
    with pytest.raises(PassFailedError) as failure:
        Pipeline([_InversePass(), _RenameOutput()]).run(model)
    assert failure.value.pass_name == "rename-output"
    assert INTERFACE_UNCHANGED in str(failure.value)
    assert "passes run before it: toy-inverse" in str(failure.value)
