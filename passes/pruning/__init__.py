"""Pruning: removing what a model does not need.

- `PruneZeroChannelsPass` (lossless, O2): output channels whose weights and bias are all zero.
- `prune_outputs`: keep only some graph outputs and drop what only the others needed.
"""

from passes.pruning.outputs import prune_outputs
from passes.pruning.zero_channels import PruneZeroChannelsPass

__all__ = ["PruneZeroChannelsPass", "prune_outputs"]

# Magnitude pruning is lossy and opt-in: it lives with the lossy stage (optimizer.lossy.magnitude).
