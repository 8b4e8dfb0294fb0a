"""Initializer deduplication and common subexpression elimination (onnx-ir's passes, counted).

`W1 = W2 (same dtype, shape, bytes)  =>  one initializer`;
`y1 = Op(a, b); y2 = Op(a, b)  =>  y2 reads y1` (skipped in models with random ops).

Deduplication reads one tensor at a time and keeps only digests: onnx-ir's DeduplicateInitializersPass
keys a dict by every initializer's bytes, which held a copy of all the weights (2.1 GiB on a 2.1 GiB
model). Only tensors of the same dtype and shape whose first and last bytes agree are read whole.
"""

from __future__ import annotations

import collections
import hashlib

import onnx_ir as ir
from onnx_ir.passes.common import CommonSubexpressionEliminationPass

from optimizer.pipeline import OptimizationPass

__all__ = ["DeduplicateConstantsPass", "EliminateCommonSubexpressionsPass"]

_RANDOM_OPS = frozenset({"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli"})


class DeduplicateConstantsPass(OptimizationPass, name="deduplicate-initializers", level="O1"):
    """Merge initializers with identical dtype, shape and contents."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        removed = 0
        for graph in model.graphs():
            groups: dict[tuple, list[ir.Value]] = {}
            for value in graph.initializers.values():
                if value.const_value is not None and not value.is_graph_input() and not value.is_graph_output():
                    groups.setdefault((value.const_value.dtype, tuple(value.const_value.shape)), []).append(value)
            for group in groups.values():
                by_probe: dict[bytes, list[ir.Value]] = {}
                for value in group if len(group) > 1 else ():
                    by_probe.setdefault(_probe(value.const_value), []).append(value)
                for candidates in by_probe.values():
                    kept: dict[bytes, ir.Value] = {}
                    for value in candidates if len(candidates) > 1 else ():
                        digest = hashlib.sha256(_bytes(value.const_value)).digest()
                        keep = kept.setdefault(digest, value)
                        if keep is not value and _bytes(keep.const_value) == _bytes(value.const_value):
                            value.replace_all_uses_with(keep)
                            graph.initializers.pop(value.name)
                            removed += 1
        return collections.Counter(initializers=removed)


_PROBE_BYTES = 4096


def _bytes(tensor: ir.TensorProtocol) -> bytes:
    if tensor.dtype.is_string():
        return b"".join(len(s).to_bytes(8, "little") + s for s in tensor.string_data())
    return tensor.tobytes()


def _probe(tensor: ir.TensorProtocol) -> bytes:
    """The first and last bytes: tensors that differ there are not duplicates (the rest is not read)."""
    if tensor.dtype.is_string() or tensor.dtype.bitwidth < 8 or tensor.nbytes <= 2 * _PROBE_BYTES:
        return _bytes(tensor)
    flat = tensor.numpy().reshape(-1)
    count = max(1, _PROBE_BYTES // flat.itemsize)
    return flat[:count].tobytes() + flat[-count:].tobytes()


class EliminateCommonSubexpressionsPass(OptimizationPass, name="eliminate-common-subexpressions", level="O1"):
    """Compute identical nodes (same op, inputs and attributes) once."""

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        if any(n.op_type in _RANDOM_OPS for n in ir.traversal.RecursiveGraphIterator(model.graph)):
            return collections.Counter()  # a random op computed twice is two draws, not one
        before = sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
        CommonSubexpressionEliminationPass()(model)
        after = sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
        return collections.Counter(nodes=before - after)
