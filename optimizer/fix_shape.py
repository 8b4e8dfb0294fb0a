"""`--fix-shape NAME=D1,D2,...`: static dims written into a model's inputs (onnxsim's `--overwrite-input-shape`).

A fixed input declares its dims as numbers; graph outputs whose dims use the same dim names follow,
and the shapes inferred for intermediate values are dropped, so that shape folding sees the static
dims and folds the shape arithmetic built on them. The fixed model is checked against the original
in onnxruntime on the same inputs (of the fixed shapes) before anything else runs on it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx_ir as ir

from optimizer.errors import UserError

__all__ = ["FixShapeError", "parse_fixed_shapes", "fix_input_shapes", "write_fixed_model"]


class FixShapeError(UserError):
    """A `--fix-shape` that names no input, has the wrong rank, contradicts a static dim, or that the model refuses."""


def parse_fixed_shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """`["x=1,3,224,224"]` -> {"x": (1, 3, 224, 224)}; positive integer dims only."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition("=")
        parts = [d.strip() for d in dims.split(",")]
        if not sep or not name or not all(part.isdigit() and int(part) > 0 for part in parts):
            raise FixShapeError(f"--fix-shape {spec!r}: expected NAME=D1,D2,... with positive integer dims, e.g. input=1,3,224,224")
        shapes[name] = tuple(int(part) for part in parts)
    return shapes


def _check(value: ir.Value, dims: tuple[int, ...]) -> dict[str, int]:
    """The dim names the fixed dims bind (FixShapeError for a wrong rank or a contradicted static dim)."""
    if value.shape is None:
        return {}
    declared = list(value.shape)
    if len(declared) != len(dims):
        raise FixShapeError(f"--fix-shape {value.name}: {len(dims)} dims, but the model declares rank {len(declared)} ({_text(declared)})")
    bound = {}
    for position, (old, new) in enumerate(zip(declared, dims)):
        if isinstance(old, int) and old != new:
            raise FixShapeError(f"--fix-shape {value.name}: dim {position} is {old} in the model, not {new} ({_text(declared)})")
        name = getattr(old, "value", None)
        if isinstance(name, str) and name:
            if bound.get(name, new) != new:
                raise FixShapeError(f"--fix-shape {value.name}: dim '{name}' given as both {bound[name]} and {new}")
            bound[name] = new
    return bound


def _text(dims) -> str:
    return "[" + ", ".join(str(getattr(d, "value", d) if not isinstance(d, int) else d) or "?" for d in dims) + "]"


def fix_input_shapes(model: ir.Model, shapes: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """Write `shapes` into the named graph inputs, in place; the old shape of each, as text."""
    inputs = {value.name: value for value in model.graph.inputs if not value.is_initializer()}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise FixShapeError(f"--fix-shape names no graph input: {', '.join(unknown)} (inputs: {', '.join(inputs) or 'none'})")
    bound: dict[str, int] = {}
    old = {}
    for name, dims in shapes.items():
        value = inputs[name]
        for symbol, size in _check(value, tuple(dims)).items():
            if bound.setdefault(symbol, size) != size:
                raise FixShapeError(f"--fix-shape: dim '{symbol}' is {bound[symbol]} in one input and {size} in another")
        old[name] = _text(value.shape) if value.shape is not None else "unknown"
        value.shape = ir.Shape(list(dims))
    for value in model.graph.outputs:
        if value.shape is not None:
            value.shape = ir.Shape([bound.get(getattr(d, "value", None), d) if not isinstance(d, int) else d for d in value.shape])
    outputs = {id(value) for value in model.graph.outputs}
    for node in model.graph:
        for value in node.outputs:
            if id(value) not in outputs:
                value.shape = None  # inferred under the dynamic dims: shape folding infers them again
    return old


def write_fixed_model(path: str | os.PathLike, shapes: Mapping[str, Sequence[int]], folder: str | os.PathLike) -> tuple[Path, list[str]]:
    """The model at `path` with `shapes` fixed, written into `folder` under the same name and checked
    against the original on generated inputs of those shapes (FixShapeError when it differs or fails);
    its path and one line per fixed input ("x [batch, 3] -> [2, 3]")."""
    from optimizer import io
    from optimizer.verify import Verifier, feeds_for

    path = Path(path)
    model = io.load(path)
    old = fix_input_shapes(model, shapes)
    fixed = Path(folder) / path.name
    io.save(model, fixed)
    feeds, _ = feeds_for(path, io.load(path, validate=False), None, {name: tuple(dims) for name, dims in shapes.items()}, 1)
    check = Verifier(path, io.load(path, validate=False), inputs=feeds).check(fixed)
    if not check.passed:
        raise FixShapeError(f"--fix-shape: the model with fixed shapes does not compute what the original does ({check.reason})")
    return fixed, [f"{name} {old[name]} -> {_text(dims)}" for name, dims in shapes.items()]
