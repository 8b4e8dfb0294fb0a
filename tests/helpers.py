"""Test helpers: build models from ONNX text, run one pass, run models in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from optimizer.pipeline import NEEDS_SHAPES, OptimizationPass, PassOptions
from optimizer.graph.shapes import infer_shapes


def from_text(text: str) -> ir.Model:
    return ir.from_onnx_text(text)


def model_text(body: str, inputs: str, outputs: str, initializers: str = "", *, opset: int = 17, imports: str = "", ir_version: int = 10) -> str:
    """ONNX text of a one-graph model `g (inputs) => (outputs) <initializers> { body }` importing the
    default opset `opset` (and `imports`, e.g. '"com.microsoft" : 1')."""
    opsets = f'"" : {opset}' + (f", {imports}" if imports else "")
    constants = f" <{initializers}>" if initializers else ""
    return f"""<ir_version: {ir_version}, opset_import: [{opsets}]>
g ({inputs}) => ({outputs}){constants} {{
  {body}
}}"""


def run_pass(pass_class: type[OptimizationPass], model: ir.Model, options: PassOptions | None = None) -> OptimizationPass:
    """Run one pass once (with shape inference first when it needs shapes); returns the pass instance."""
    if NEEDS_SHAPES in pass_class.preconditions:
        infer_shapes(model)
    instance = pass_class(options)
    instance(model)
    return instance


def ops(model: ir.Model) -> list[str]:
    """Op types of the main graph in order."""
    return [node.op_type for node in model.graph]


def run(model: ir.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of the model in onnxruntime (optimizations off, so what we test is our rewrite)."""
    proto = ir.serde.serialize_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_equivalent(text: str, after: ir.Model, feeds: dict[str, np.ndarray], rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """The rewritten model computes what the model in `text` computes, on `feeds`."""
    expected = run(from_text(text), feeds)
    actual = run(after, feeds)
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def assert_unchanged(text: str, after: ir.Model) -> None:
    """`after` is structurally the model in `text` (same nodes, attributes, constants, names aside)."""
    before = ir.serde.serialize_model(from_text(text))
    now = ir.serde.serialize_model(after)
    for graph in (before.graph, now.graph):
        del graph.value_info[:]
    assert [n.op_type for n in before.graph.node] == [n.op_type for n in now.graph.node]
    assert onnx.printer.to_text(before.graph) == onnx.printer.to_text(now.graph)


def random_feeds(**shapes: tuple[int, ...]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def verify(
    pass_class: type[OptimizationPass],
    before: str,
    expected_ops: list[str] | None,
    feeds: dict[str, np.ndarray] | None,
    *,
    stats: dict[str, int] | None = None,
    options: PassOptions | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> tuple[ir.Model, OptimizationPass]:
    """TVM-style check of a rewrite: run the pass on the model in `before`; the main graph's op
    sequence is then `expected_ops` and the pass's changes `stats` (each when given), and the result
    computes what `before` computes on `feeds` in onnxruntime. Returns the model and the pass."""
    model = from_text(before)
    applied = run_pass(pass_class, model, options)
    if stats is not None:
        assert applied.stats == stats
    if expected_ops is not None:
        assert ops(model) == expected_ops
    if feeds is not None:
        assert_equivalent(before, model, feeds, rtol=rtol, atol=atol)
    return model, applied


def verify_declines(
    pass_class: type[OptimizationPass],
    before: str,
    declined: dict[str, int] | str | None = None,
    *,
    options: PassOptions | None = None,
) -> OptimizationPass:
    """The negative case (`Expected = Before`): the pass changes nothing in the model in `before`
    and counts `declined` (all its declines; a str: one reason among them). Returns the pass."""
    model = from_text(before)
    applied = run_pass(pass_class, model, options)
    assert applied.stats == {}
    if isinstance(declined, str):
        assert declined in applied.declined
    elif declined is not None:
        assert applied.declined == declined
    assert_unchanged(before, model)
    return applied
