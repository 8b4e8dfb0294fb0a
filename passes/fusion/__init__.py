"""Fusion passes: one family per module (O2 standard ONNX; O3 onnxruntime contrib ops)."""
