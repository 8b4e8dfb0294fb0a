"""The pass registry: registry name -> pass class, and the named levels O1/O2/O3.

O1 is cleanup and folding; O2 adds standard-ONNX fusions; O3 adds onnxruntime-specific fusions.
A level includes every pass of the levels below it, in the order listed here.
"""

from __future__ import annotations

from optimizer.pipeline import OptimizationPass
from passes.cleanup.dead_code import EliminateDeadCodePass
from passes.cleanup.deduplication import DeduplicateConstantsPass, EliminateCommonSubexpressionsPass
from passes.cleanup.noop import EliminateNoOpsPass
from passes.folding.constant_folding import FoldConstantsPass
from passes.folding.constant_if import InlineConstantIfPass
from passes.folding.initializer_inputs import InitializerInputsToConstantsPass
from passes.folding.shape_folding import FoldShapesPass
from passes.fusion.attention import FuseAttentionPass
from passes.fusion.bias_gelu import FuseBiasGeluPass
from passes.fusion.conv_affine import FuseConvAffinePass
from passes.fusion.conv_bn import FuseConvBatchNormPass, FuseGemmBatchNormPass
from passes.fusion.gelu import FuseGeluAnyOpsetPass, FuseGeluPass
from passes.fusion.gemm import FuseMatMulAddPass
from passes.fusion.hard_activations import FuseHardActivationsPass
from passes.fusion.layer_norm import FuseLayerNormAnyOpsetPass, FuseLayerNormPass
from passes.fusion.pad import FusePadPass
from passes.fusion.reshape_chains import FuseReshapeChainsPass
from passes.fusion.rms_norm import FuseRMSNormPass
from passes.fusion.skip_layer_norm import FuseSkipLayerNormPass
from passes.fusion.transpose import FuseTransposesPass
from passes.pruning.zero_channels import PruneZeroChannelsPass

__all__ = ["REGISTRY", "LEVELS", "passes_for_level", "get_pass_class"]

# Pipeline order: one round runs these in turn; the pipeline repeats rounds to a fixed point.
_ORDERED: list[type[OptimizationPass]] = [
    InitializerInputsToConstantsPass,
    InlineConstantIfPass,
    FoldShapesPass,
    FoldConstantsPass,
    EliminateNoOpsPass,
    FuseReshapeChainsPass,
    FusePadPass,
    FuseConvBatchNormPass,
    FuseConvAffinePass,
    PruneZeroChannelsPass,
    FuseLayerNormPass,
    FuseLayerNormAnyOpsetPass,
    FuseRMSNormPass,
    FuseGeluPass,
    FuseGeluAnyOpsetPass,
    FuseHardActivationsPass,
    FuseGemmBatchNormPass,
    FuseMatMulAddPass,
    FuseTransposesPass,
    FuseAttentionPass,
    FuseSkipLayerNormPass,
    FuseBiasGeluPass,
    EliminateCommonSubexpressionsPass,
    DeduplicateConstantsPass,
    EliminateDeadCodePass,
]

REGISTRY: dict[str, type[OptimizationPass]] = {cls.name: cls for cls in _ORDERED}
LEVELS = ("O1", "O2", "O3")


def get_pass_class(name: str) -> type[OptimizationPass]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown pass {name!r}; run 'optimize passes' to list them") from None


def passes_for_level(level: str) -> list[str]:
    """Names of the passes a level runs, in pipeline order."""
    if level not in LEVELS:
        raise KeyError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
    rank = LEVELS.index(level)
    return [cls.name for cls in _ORDERED if LEVELS.index(cls.level) <= rank]
