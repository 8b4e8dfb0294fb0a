"""Lossy model transforms done by onnxruntime's own tools: int8 quantization and fp16 conversion.

These work on model files (onnxruntime.quantization reads and writes files), not on the in-memory IR,
and they are not pipeline passes: `optimizer.lossy` decides which to try, holds each result to the
user's error budget and keeps it only when it is measurably faster.
"""

from optimizer.lossy.quantization.calibration import load_calibration
from optimizer.lossy.quantization.fp16 import convert_fp16
from optimizer.lossy.quantization.int8 import quantize_dynamic_int8, quantize_static_int8

__all__ = ["load_calibration", "convert_fp16", "quantize_dynamic_int8", "quantize_static_int8"]
