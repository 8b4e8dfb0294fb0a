"""int8 quantization through onnxruntime.quantization: dynamic (weights int8, activations quantized at run
time) and static (QDQ or QOperator, activations calibrated on samples)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["DYNAMIC_OP_TYPES", "quantize_dynamic_int8", "quantize_static_int8"]

DYNAMIC_OP_TYPES = ("MatMul", "Attention", "Gather", "EmbedLayerNormalization", "LSTM", "Transpose")
"""What dynamic quantization touches by default. Not Conv: ConvInteger made CNNs 3-14x slower here."""

@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[list[str]]:
    """onnxruntime.quantization warns through the root logger; collect those lines instead of printing them."""
    notes: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage().strip())

    root = logging.getLogger()
    handler = _Collect(level=logging.WARNING)
    saved_handlers, saved_level, saved_propagate = root.handlers[:], root.level, root.propagate
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    try:
        yield notes
    finally:
        root.handlers, root.level, root.propagate = saved_handlers, saved_level, saved_propagate


def quantize_dynamic_int8(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    op_types: Sequence[str] | None = None,
    per_channel: bool = False,
    exclude: Sequence[str] = (),
    external_data: bool = False,
) -> list[str]:
    """int8 weights, activations quantized per run; returns onnxruntime's warnings."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger() as notes:
        quantize_dynamic(
            Path(source),
            Path(target),
            op_types_to_quantize=list(op_types or DYNAMIC_OP_TYPES),
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
            use_external_data_format=external_data,
        )
    return [note for note in notes if "pre-processing" not in note]


def quantize_static_int8(
    source: str | os.PathLike,
    target: str | os.PathLike,
    samples: Sequence[Mapping[str, np.ndarray]],
    *,
    quant_format: str = "qdq",
    per_channel: bool = True,
    op_types: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    external_data: bool = False,
) -> list[str]:
    """int8 weights and activations with ranges calibrated (MinMax) on `samples`; returns onnxruntime's warnings."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from optimizer.lossy.quantization.calibration import SampleReader

    if not samples:
        raise ValueError("static quantization needs calibration samples")
    if quant_format not in ("qdq", "qoperator"):
        raise ValueError(f"unknown quantization format {quant_format!r}; choose qdq or qoperator")
    with _quiet_root_logger() as notes:
        quantize_static(
            Path(source),
            Path(target),
            SampleReader(samples),
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=list(op_types) if op_types else None,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
            use_external_data_format=external_data,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return [note for note in notes if "pre-processing" not in note]
