"""float16 conversion through onnxruntime's converter: inputs and outputs keep their types, ops that
overflow or lose range in float16 stay float32."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["FP16_BLOCKED_OPS", "convert_fp16"]

FP16_BLOCKED_OPS = (
    "Pow", "Exp", "Log", "Softmax", "LogSoftmax", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp",
    "ReduceProd", "LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "RMSNormalization", "CumSum", "Range", "Einsum",
)
"""Kept float32 on top of the converter's own list: sums of squares and exponentials overflow at 65504."""


def convert_fp16(source: str | os.PathLike, target: str | os.PathLike, *, exclude: Sequence[str] = (), external_data: bool = False) -> list[str]:
    """Write a float16 copy of `source` to `target`; `exclude` names nodes to keep float32. Returns notes.

    `source` is a file this tool wrote (the lossless model); the converter works on protobuf.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    from optimizer.lossy.quantization.int8 import _quiet_root_logger

    model = onnx.load(Path(source))
    with _quiet_root_logger() as notes:
        converted = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_BLOCKED_OPS)),
            node_block_list=list(exclude),
            disable_shape_infer=external_data,
        )
    onnx.save(converted, Path(target), save_as_external_data=external_data)
    return notes
