"""optimize: a graph-level ONNX model optimizer that proves its output computes the same function."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["optimize", "OptimizationResult", "__version__"]


def __getattr__(name: str):
    # Lazy: `import optimizer` stays cheap (onnx-ir costs about a second to import).
    if name in ("optimize", "OptimizationResult"):
        from optimizer import api

        return getattr(api, name)
    raise AttributeError(name)
