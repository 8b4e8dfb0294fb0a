"""The pipeline: fixed point, records, preconditions established, postconditions checked by pass."""

from __future__ import annotations

import collections

import onnx_ir as ir
import pytest

from optimizer.pipeline import (
    NEEDS_SHAPES,
    OUTPUTS_UNCHANGED,
    Decline,
    InterfaceChangedError,
    OptimizationPass,
    PassFailedError,
    Pipeline,
    interface_of,
)
from tests.helpers import from_text

_TEXT = """
<ir_version: 10, opset_import: ["" : 18]>
g (float[2, 3] x) => (float[2, 3] y) {
  a = Relu(x)
  b = Identity(a)
  y = Identity(b)
}
"""


class _DropOneIdentity(OptimizationPass):
    """Removes one inner Identity per run, so the pipeline needs several rounds."""

    name = "drop-one-identity"
    description = "test pass"

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        for node in model.graph:
            if node.op_type == "Identity" and not node.outputs[0].is_graph_output():
                node.outputs[0].replace_all_uses_with(node.inputs[0])
                model.graph.remove(node, safe=True)
                return collections.Counter(Identity=1)
        self.decline("only the output Identity is left")
        return collections.Counter()


class _SeesShapes(OptimizationPass):
    name = "sees-shapes"
    description = "test pass"
    preconditions = frozenset({NEEDS_SHAPES})
    seen: list = []

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        relu = next(node for node in model.graph if node.op_type == "Relu")
        type(self).seen.append(relu.outputs[0].shape)
        return collections.Counter()


class _DropInput(OptimizationPass):
    name = "drop-input"
    description = "test pass"
    postconditions = frozenset({OUTPUTS_UNCHANGED})

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        if not model.graph.inputs:
            return collections.Counter()
        model.graph.inputs.pop()
        return collections.Counter(inputs=1)


class _Raises(OptimizationPass):
    name = "raises"
    description = "test pass"

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        raise ValueError("broken on purpose")


def test_runs_to_a_fixed_point_and_records_each_run():
    model = from_text(_TEXT)
    records = Pipeline([_DropOneIdentity()]).run(model)
    assert [(r.round, r.changes) for r in records] == [(1, {"Identity": 1}), (2, {})]
    assert records[-1].declined == {"only the output Identity is left": 1}
    assert [node.op_type for node in model.graph] == ["Relu", "Identity"]


def test_needs_shapes_runs_shape_inference_first():
    _SeesShapes.seen = []
    Pipeline([_SeesShapes()]).run(from_text(_TEXT))
    assert _SeesShapes.seen and list(_SeesShapes.seen[0]) == [2, 3]


def test_outputs_unchanged_allows_dropping_inputs_only():
    model = from_text(_TEXT)
    before = interface_of(model)
    Pipeline([_DropInput()]).run(model)
    assert interface_of(model) == ((), before[1])


def test_interface_unchanged_is_the_default_postcondition():
    class _DropInputQuietly(_DropInput):
        name = "drop-input-quietly"
        postconditions = OptimizationPass.postconditions

    with pytest.raises(PassFailedError) as failure:
        Pipeline([_DropOneIdentity(), _DropInputQuietly()]).run(from_text(_TEXT))
    assert failure.value.pass_name == "drop-input-quietly"
    assert isinstance(failure.value.cause, InterfaceChangedError)
    assert "passes run before it: drop-one-identity" in str(failure.value)


def test_a_pass_that_raises_is_named():
    with pytest.raises(PassFailedError, match="pass 'raises' failed \\(ValueError: broken on purpose\\)"):
        Pipeline([_Raises()]).run(from_text(_TEXT))


def test_decline_message_is_the_reason():
    assert Decline("not a constant").reason == "not a constant"
