"""Shape and type inference for the passes that need static shapes (onnx's inference, via onnx-ir).

onnx-ir's own ShapeInferencePass merges results through `Value.dtype`, which turns sequence and
optional values into tensors (onnxruntime then rejects the model); this merge sets whole types
instead, and only where inference knows more.
"""

from __future__ import annotations

import logging

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import _c_api_utils

__all__ = ["infer_shapes"]

logger = logging.getLogger(__name__)


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)


def _merge(model: ir.Model, inferred_proto: onnx.ModelProto) -> bool:
    inferred = ir.serde.deserialize_model(inferred_proto)
    modified = False
    for graph, inferred_graph in zip(model.graphs(), inferred.graphs()):
        known = ir.convenience.create_value_mapping(inferred_graph)
        for name, value in ir.convenience.create_value_mapping(graph).items():
            other = known.get(name)
            if other is None or other.type is None:
                continue
            if value.type is None:
                value.type = other.type
                modified = True
            elif type(value.type) is not type(other.type):
                continue  # disagreement on the kind of value: trust the model
            elif isinstance(value.type, ir.TensorType) and value.dtype != other.dtype and value.dtype == ir.DataType.UNDEFINED:
                value.type = other.type
                modified = True
            if isinstance(value.type, ir.TensorType) and other.shape is not None and value.shape != other.shape:
                value.shape = other.shape
                modified = True
    return modified


def infer_shapes(model: ir.Model) -> bool:
    """Annotate values with inferred types and shapes in place; a failure leaves the model as it was."""
    order = list(model.graph.initializers.values())
    try:
        return _merge(model, _c_api_utils.call_onnx_api(_infer, model))
    except Exception as error:  # noqa: BLE001 - inference is best-effort
        logger.info("shape inference failed: %s", error)
        return False
    finally:
        _restore_order(model.graph, order)


def _restore_order(graph: ir.Graph, order: list[ir.Value]) -> None:
    """onnx-ir's C-API helper re-adds large initializers at the end; put them back where they were."""
    if list(graph.initializers.values()) == order:
        return
    for value in order:
        graph.initializers.pop(value.name, None)
    for value in order:
        graph.initializers[value.name] = value
