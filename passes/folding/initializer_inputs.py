"""Initializer-inputs become constants: graph inputs that also have an initializer (IR < 4 style).

Such an input is an overridable default, so onnxruntime can neither fold nor fuse through it (on a
real face detector that costs 4x). This is the one interface change the default pipeline makes; the
names are reported, and `--keep-initializer-inputs` skips the pass.
"""

from __future__ import annotations

import collections

import onnx_ir as ir

from optimizer.pipeline import OUTPUTS_UNCHANGED, OptimizationPass

__all__ = ["InitializerInputsToConstantsPass"]


# OUTPUTS_UNCHANGED, not INTERFACE_UNCHANGED: the one pass that may drop graph inputs.
class InitializerInputsToConstantsPass(OptimizationPass, name="initializer-inputs-to-constants", level="O1", postconditions={OUTPUTS_UNCHANGED}):
    """Turn graph inputs that have an initializer (old-IR defaults) into constants; names reported."""

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.converted: list[str] = []

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        graph = model.graph
        initializer_inputs = [v for v in graph.inputs if v.is_initializer()]
        for value in initializer_inputs:
            graph.inputs.remove(value)
            self.converted.append(value.name)
        if initializer_inputs and model.ir_version < 4:
            model.ir_version = 4  # IR 3 requires every initializer to be an input
        return collections.Counter(inputs=len(initializer_inputs))
