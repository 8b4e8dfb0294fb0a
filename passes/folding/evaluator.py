"""Evaluate one node on constant inputs: onnxruntime first, onnx's reference evaluator as fallback."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

__all__ = ["evaluate_node"]

logger = logging.getLogger(__name__)

_SESSION_OPTIONS = None


def _session_options():
    global _SESSION_OPTIONS
    if _SESSION_OPTIONS is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 4
        _SESSION_OPTIONS = options
    return _SESSION_OPTIONS


def _single_node_model(node: ir.Node, arrays: list[np.ndarray | None], opset_imports: dict[str, int]) -> tuple[bytes, dict[str, np.ndarray], list[str]]:
    inputs, feeds = [], {}
    node_inputs: list[ir.Value | None] = []
    for i, array in enumerate(arrays):
        if array is None:
            node_inputs.append(None)
            continue
        name = f"input_{i}"
        value = ir.Value(name=name, type=ir.TensorType(ir.DataType.from_numpy(array.dtype)), shape=ir.Shape(array.shape))
        inputs.append(value)
        node_inputs.append(value)
        feeds[name] = array
    attributes = [ir.Attr(a.name, a.type, a.value) for a in node.attributes.values()]
    clone = ir.Node(node.domain, node.op_type, node_inputs, attributes, num_outputs=len(node.outputs))
    output_names = []
    for i, (value, original) in enumerate(zip(clone.outputs, node.outputs)):
        value.name = f"output_{i}"
        if original.type is not None:
            value.type = original.type
        output_names.append(value.name)
    graph = ir.Graph(inputs, list(clone.outputs), nodes=[clone], opset_imports=dict(opset_imports), name="fold")
    model = ir.Model(graph, ir_version=8)
    return ir.serde.serialize_model(model).SerializeToString(), feeds, output_names


def evaluate_node(node: ir.Node, arrays: list[np.ndarray | None], opset_imports: dict[str, int]) -> list[np.ndarray] | None:
    """Outputs of `node` applied to `arrays`, or None when neither evaluator can compute them."""
    try:
        payload, feeds, names = _single_node_model(node, arrays, opset_imports)
    except Exception as error:  # noqa: BLE001
        logger.debug("cannot build a model for %s: %s", node.op_type, error)
        return None
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(payload, _session_options(), providers=["CPUExecutionProvider"])
        results = session.run(names, feeds)
    except Exception as error:  # noqa: BLE001 - fall back to the reference evaluator
        logger.debug("onnxruntime could not evaluate %s (%s); trying the reference evaluator", node.op_type, error)
        try:
            from onnx.reference import ReferenceEvaluator

            results = ReferenceEvaluator(payload).run(names, feeds)
        except Exception as error2:  # noqa: BLE001
            logger.debug("reference evaluator could not evaluate %s: %s", node.op_type, error2)
            return None
    if not all(isinstance(r, np.ndarray) for r in results):
        return None
    return [np.asarray(r) for r in results]
