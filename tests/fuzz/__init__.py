"""Property-based fuzzing of the optimization pipeline (issue #6).

`graphs.models()` is a hypothesis strategy that builds random valid float32 ONNX models with static
shapes; `check.assert_optimizes_equivalently()` is the property: optimizing at O2 and O3 raises
nothing, drops no pass, keeps the model valid, and computes the same outputs in onnxruntime.
"""
