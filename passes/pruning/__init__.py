"""Pruning: removing what a model does not need.

- `PruneZeroChannelsPass` (lossless, O2): output channels whose weights and bias are all zero.
- `prune_outputs`: keep only some graph outputs and drop what only the others needed.
- `prune_weights_by_magnitude` (lossy, opt-in): zero the smallest weights of Conv/Gemm/MatMul.
"""

from passes.pruning.magnitude import compressed_weight_bytes, prune_weights_by_magnitude
from passes.pruning.outputs import prune_outputs
from passes.pruning.zero_channels import PruneZeroChannelsPass

__all__ = ["PruneZeroChannelsPass", "compressed_weight_bytes", "prune_outputs", "prune_weights_by_magnitude"]
