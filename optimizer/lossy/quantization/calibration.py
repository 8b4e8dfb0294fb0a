"""Calibration samples for static quantization: one .npz file, or a folder of .npz files (one sample each)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

__all__ = ["CalibrationError", "load_calibration", "input_dtypes", "SampleReader"]

MAX_SAMPLES = 1000


class CalibrationError(ValueError):
    """The calibration data cannot be used; the message is one line for the user."""


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as error:  # noqa: BLE001 - zip/format errors of many kinds
        raise CalibrationError(f"{path}: not a readable .npz file ({error})") from None


def input_dtypes(model) -> dict[str, np.dtype]:
    """The dtypes of an `onnx_ir.Model`'s real inputs (not initializer-backed ones): what each sample must hold."""
    graph = model.graph
    return {v.name: v.dtype.numpy() for v in graph.inputs if v.name not in graph.initializers and v.dtype is not None}


def load_calibration(path: str | os.PathLike, inputs: Mapping[str, np.dtype]) -> list[dict[str, np.ndarray]]:
    """Samples (arrays keyed by input name) checked against the model's inputs and dtypes."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".npz" and p.is_file())
        if not files:
            raise CalibrationError(f"{path}: the folder holds no .npz files")
        if len(files) > MAX_SAMPLES:
            raise CalibrationError(f"{path}: {len(files)} samples; at most {MAX_SAMPLES} are used for calibration")
    elif path.is_file():
        files = [path]
    else:
        raise CalibrationError(f"{path}: no such file or folder")
    samples = []
    for file in files:
        sample = _read_npz(file)
        missing = sorted(set(inputs) - set(sample))
        if missing:
            raise CalibrationError(f"{file}: lacks arrays for the model inputs {', '.join(missing)}")
        for name, dtype in inputs.items():
            if sample[name].dtype != dtype:
                raise CalibrationError(f"{file}: '{name}' is {sample[name].dtype}, the model expects {dtype}")
        samples.append({name: sample[name] for name in inputs})
    return samples


class SampleReader(CalibrationDataReader):
    """onnxruntime's CalibrationDataReader over a list of samples."""

    def __init__(self, samples: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._samples = list(samples)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._samples):
            return None
        self._next += 1
        return dict(self._samples[self._next - 1])

    def __len__(self) -> int:
        return len(self._samples)

    def rewind(self) -> None:
        self._next = 0

    def set_range(self, start_index: int, end_index: int) -> None:  # onnxruntime's batched calibration
        self._samples = self._samples[start_index:end_index]
        self._next = 0
