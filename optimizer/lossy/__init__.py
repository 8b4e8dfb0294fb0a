"""The lossy stage: quantization, fp16 and weight pruning variants, each held to an error budget and shipped
only when measurably faster. Not pipeline passes: they work on model files and are chosen by measurement.

- `stage`: planning the variants, the search, the speed gate (`run_lossy`).
- `quantization`: int8 (dynamic, static QDQ with calibration) and fp16 conversion through onnxruntime's tools.
- `magnitude`: opt-in magnitude pruning of Conv/Gemm/MatMul weights.
"""

from optimizer.lossy.stage import (
    PRECISION_CHOICES,
    QUANTIZE_CHOICES,
    LossyInputError,
    LossyOptions,
    LossyResult,
    LossyVariant,
    judge_verdict,
    load_calibration_samples,
    plan,
    rank_sensitivity,
    run_lossy,
)

__all__ = ["PRECISION_CHOICES", "QUANTIZE_CHOICES", "LossyOptions", "LossyVariant", "LossyResult", "LossyInputError", "judge_verdict", "load_calibration_samples", "plan", "rank_sensitivity", "run_lossy"]
