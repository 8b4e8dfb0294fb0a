"""Shape and type inference for the passes that need static shapes (onnx's inference, via onnx-ir)."""

from __future__ import annotations

import logging

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

__all__ = ["infer_shapes"]

logger = logging.getLogger(__name__)


def infer_shapes(model: ir.Model) -> bool:
    """Annotate values with inferred types and shapes in place; a failure leaves the model as it was."""
    try:
        return ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model).modified
    except Exception as error:  # noqa: BLE001 - inference is best-effort
        logger.info("shape inference failed: %s", error)
        return False
