"""The one error of partitioning: a model, manifest or request that cannot be partitioned or run."""

from optimizer.errors import UserError

__all__ = ["PartitionError"]


class PartitionError(UserError):
    """A model, manifest or request that cannot be partitioned or run; the message is one line."""
