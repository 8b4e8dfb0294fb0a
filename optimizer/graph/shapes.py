"""Shape and type inference for the passes that need static shapes (onnx's inference, via onnx-ir).

onnx-ir's own ShapeInferencePass merges results through `Value.dtype`, which turns sequence and
optional values into tensors (onnxruntime then rejects the model); this merge sets whole types
instead, and only where inference knows more.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import _c_api_utils

from optimizer.graph.matching import is_op
from optimizer.graph.values import constant_array

__all__ = ["infer_shapes"]

logger = logging.getLogger(__name__)


DATA_PROP_MAX_ELEMENTS = 1 << 16
"""onnx's data propagation holds a shape entry (about 140 bytes) per element of every 1-D value an Add or
Mul reads: 1.4 GB for a 10-million-element bias. Models with a longer known 1-D value are inferred without it."""


def _infer_with_data(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)


def _infer_without_data(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=False)


def _has_long_1d_value(model: ir.Model) -> bool:
    for graph in model.graphs():
        for value in (*graph.inputs, *graph.initializers.values(), *(o for n in graph for o in n.outputs)):
            shape = value.shape
            if shape is not None and len(shape) == 1 and isinstance(shape[0], int) and shape[0] > DATA_PROP_MAX_ELEMENTS:
                return True
    return False


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
    infer = _infer_without_data if _has_long_1d_value(model) else _infer_with_data
    try:
        modified = _merge(model, _c_api_utils.call_onnx_api(infer, model))
        if _resolve_reshapes(model.graph):  # then propagate what the resolved shapes tell downstream
            _forget_placeholders(model.graph)
            _merge(model, _c_api_utils.call_onnx_api(infer, model))
            modified = True
        return modified
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


def _shape_dims(value: ir.Value | None) -> list | None:
    """The dims a 1-D int64 shape tensor holds, as ints, symbolic dims or None (unknown), when it is
    a constant or a Concat of constants and `Unsqueeze(Gather(Shape(t), i))` / `Gather(Shape(t), [i])`
    pieces: the form exporters build Reshape targets in for dynamic axes. None when not of that form."""
    array = constant_array(value)
    if array is not None:
        return [int(v) for v in array.reshape(-1)] if array.ndim <= 1 and array.dtype.kind == "i" else None
    node = value.producer() if value is not None else None
    if not is_op(node, "Concat"):
        return None
    dims: list = []
    for piece in node.inputs:
        array = constant_array(piece)
        if array is not None and array.ndim == 1 and array.dtype.kind == "i":
            dims.extend(int(v) for v in array)
            continue
        producer = piece.producer() if piece is not None else None
        if producer is not None and producer.op_type == "Unsqueeze":
            producer = producer.inputs[0].producer()
        if producer is None or producer.op_type != "Gather":
            return None
        index = constant_array(producer.inputs[1])
        source = producer.inputs[0].producer()
        if index is None or index.size != 1 or source is None or source.op_type != "Shape" or len(source.attributes):
            return None
        shape = source.inputs[0].shape
        position = int(index.reshape(-1)[0])
        dims.append(shape[position] if shape is not None and -len(shape) <= position < len(shape) else None)
    return dims


def _resolve_reshapes(graph: ir.Graph) -> bool:
    """Give Reshape outputs that onnx's inference left without a shape the shape their target spells out."""
    resolved = False
    for node in graph:
        if not is_op(node, "Reshape") or len(node.inputs) < 2:
            continue
        output, source = node.outputs[0], node.inputs[0]
        if output.shape is not None and not any(_unknown(d) for d in output.shape):
            continue
        dims = _shape_dims(node.inputs[1])
        allowzero = node.attributes.get("allowzero")
        if dims is None or (allowzero is not None and allowzero.value):
            continue
        for i, dim in enumerate(dims):
            if dim == 0:
                dims[i] = source.shape[i] if source.shape is not None and i < len(source.shape) else None
        if sum(1 for d in dims if d == -1) > 1:
            continue
        if -1 in dims:
            known = [d for d in dims if d != -1]
            total = source.shape.numel() if source.shape is not None and source.shape.is_static() else None
            if total is not None and all(isinstance(d, int) and d > 0 for d in known):
                dims[dims.index(-1)] = total // max(1, int(np.prod(known)))
            else:
                dims[dims.index(-1)] = None
        if output.shape is not None:
            if len(output.shape) != len(dims):
                continue
            learned = any(_unknown(known) and not _unknown(d) for d, known in zip(dims, output.shape))
            dims = [d if _unknown(known) else known for d, known in zip(dims, output.shape)]
        else:
            learned = any(not _unknown(d) for d in dims)
        if not learned:
            continue  # nothing new: no second inference for it
        output.shape = ir.Shape(dims)
        resolved = True
    return resolved


def _forget_placeholders(graph: ir.Graph) -> None:
    """Drop inner shapes holding `unk__N` dims, so a new inference can name them (onnx keeps old names)."""
    for node in graph:
        for output in node.outputs:
            if output.shape is not None and not output.is_graph_output() and any(_unknown(d) for d in output.shape):
                output.shape = None


def _unknown(dim) -> bool:
    """A dim onnx's inference could not name: None, or the `unk__N` placeholders it invents."""
    if isinstance(dim, int):
        return False
    value = getattr(dim, "value", dim)
    return value is None or (isinstance(value, str) and value.startswith("unk__"))
