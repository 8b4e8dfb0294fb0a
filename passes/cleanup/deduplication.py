"""Initializer deduplication and common subexpression elimination (onnx-ir's passes, counted).

`W1 = W2 (same dtype, shape, bytes)  =>  one initializer`;
`y1 = Op(a, b); y2 = Op(a, b)  =>  y2 reads y1` (skipped in models with random ops).
"""

from __future__ import annotations

import collections

import onnx_ir as ir
from onnx_ir.passes.common import CommonSubexpressionEliminationPass, DeduplicateInitializersPass

from optimizer.pipeline import OptimizationPass

__all__ = ["DeduplicateConstantsPass", "EliminateCommonSubexpressionsPass"]

_RANDOM_OPS = frozenset({"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial", "Bernoulli"})


class DeduplicateConstantsPass(OptimizationPass):
    name = "deduplicate-initializers"
    level = "O1"
    description = "Merge initializers with identical dtype, shape and contents."

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        before = sum(len(g.initializers) for g in model.graphs())
        DeduplicateInitializersPass(size_limit=1 << 40)(model)
        after = sum(len(g.initializers) for g in model.graphs())
        return collections.Counter(initializers=before - after)


class EliminateCommonSubexpressionsPass(OptimizationPass):
    name = "eliminate-common-subexpressions"
    level = "O1"
    description = "Compute identical nodes (same op, inputs and attributes) once."

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        if any(n.op_type in _RANDOM_OPS for n in ir.traversal.RecursiveGraphIterator(model.graph)):
            return collections.Counter()  # a random op computed twice is two draws, not one
        before = sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
        CommonSubexpressionEliminationPass()(model)
        after = sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
        return collections.Counter(nodes=before - after)
