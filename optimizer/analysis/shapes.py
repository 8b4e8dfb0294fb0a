"""Static shapes for the cost model: dynamic input dims bound to numbers, then inferred everywhere.

`bind_inputs()` gives every graph input static dims: those given by name, else defaults (a batch-like
leading dim -> 1, any other dynamic dim -> 128; dims sharing a symbol share a value).
`infer_static_shapes()` runs onnx's shape inference and, where shapes stay unknown, onnxruntime's
symbolic shape inference (best-effort). `known_dims()` reads a value's dims when all are known.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import onnx_ir as ir

__all__ = ["bind_inputs", "infer_static_shapes", "known_dims"]

logger = logging.getLogger(__name__)

_DEFAULT_BATCH = 1
_DEFAULT_DIM = 128
_BATCH_WORDS = frozenset({"batch", "n", "b", "bs", "batch_size", "unk__0"})


def known_dims(value: ir.Value | None) -> tuple[int, ...] | None:
    """The value's dims when all are known non-negative integers."""
    if value is None or value.shape is None:
        return None
    dims = tuple(value.shape)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        return None
    return dims


def _is_batch_like(position: int, dim) -> bool:
    """A leading dim named like a batch (or unnamed)."""
    if position != 0:
        return False
    name = getattr(dim, "value", dim)
    return name is None or str(name).lower() in _BATCH_WORDS or "batch" in str(name).lower()


def bind_inputs(graph: ir.Graph, input_shapes: Mapping[str, Sequence[int]]) -> None:
    """Give every non-initializer graph input static dims: the given ones, else the defaults."""
    inputs = [v for v in graph.inputs if not v.is_initializer()]
    unknown = sorted(set(input_shapes) - {v.name for v in inputs})
    if unknown:
        raise ValueError(f"input_shapes names no graph input: {', '.join(unknown)}")
    symbols: dict[str, int] = {}
    for value in inputs:  # given shapes first: they name the symbols other inputs share
        if value.name not in input_shapes:
            continue
        dims = [int(d) for d in input_shapes[value.name]]
        if any(d < 0 for d in dims):
            raise ValueError(f"input_shapes[{value.name!r}]: dims must be >= 0, got {dims}")
        if value.shape is not None:
            if len(value.shape) != len(dims):
                logger.warning("input %s: declared rank %d, given %s", value.name, len(value.shape), dims)
            for declared, dim in zip(value.shape, dims):
                name = getattr(declared, "value", None)
                if isinstance(name, str):
                    symbols.setdefault(name, dim)
        value.shape = ir.Shape(dims)
    for value in inputs:
        if value.name in input_shapes or value.shape is None:
            continue
        dims = []
        for position, dim in enumerate(value.shape):
            if isinstance(dim, int) and dim >= 0:
                dims.append(dim)
                continue
            name = getattr(dim, "value", None)
            if isinstance(name, str) and name in symbols:
                dims.append(symbols[name])
                continue
            bound = _DEFAULT_BATCH if _is_batch_like(position, dim) else _DEFAULT_DIM
            if isinstance(name, str):
                symbols[name] = bound
            dims.append(bound)
        value.shape = ir.Shape(dims)


def _missing_shapes(graph: ir.Graph) -> int:
    """How many node outputs of the graph (subgraphs included) lack a static shape."""
    return sum(
        1
        for node in ir.traversal.RecursiveGraphIterator(graph)
        for value in node.outputs
        if known_dims(value) is None and (value.type is None or isinstance(value.type, ir.TensorType))
    )


def _infer_symbolic_shapes(model: ir.Model) -> None:
    """Fill shapes onnx's inference left symbolic with onnxruntime's symbolic shape inference, which
    also evaluates the shape arithmetic exporters emit (Expand targets, computed pads) and knows
    com.microsoft ops. Best-effort: any failure leaves the shapes as they were."""
    try:
        from onnx_ir.passes.common import _c_api_utils
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        def infer(proto):
            # The steps of SymbolicShapeInference.infer_shapes(), without its failure path: when any
            # shape stays unknown (a custom op) it writes a file into the working directory and
            # raises. Here whatever it did infer is kept.
            inference = SymbolicShapeInference(2**31 - 1, True, False, 0)
            inference._preprocess(proto)
            while inference.run_:
                inference._infer_impl()
            inference._update_output_from_vi()
            return inference.out_mp_

        inferred = _c_api_utils.call_onnx_api(infer, model)
        found = ir.serde.deserialize_model(inferred)
    except Exception as error:  # noqa: BLE001 - a fallback, never fatal
        logger.info("symbolic shape inference failed: %s", error)
        return
    for graph, other_graph in zip(model.graphs(), found.graphs()):
        known = ir.convenience.create_value_mapping(other_graph)
        for name, value in ir.convenience.create_value_mapping(graph).items():
            other = known.get(name)
            dims = known_dims(other)
            if dims is None or known_dims(value) is not None:
                continue
            if value.shape is not None and len(value.shape) != len(dims):
                continue  # disagreement on the rank: trust onnx's inference
            value.shape = ir.Shape(dims)
            if value.dtype is None and other.dtype is not None:
                value.dtype = other.dtype



def infer_static_shapes(model: ir.Model) -> None:
    """Infer the model's shapes in place: onnx's inference, then the symbolic fallback where shapes are missing."""
    from optimizer.graph.shapes import infer_shapes  # imports onnx: only when analysing

    infer_shapes(model)
    if _missing_shapes(model.graph):
        _infer_symbolic_shapes(model)
