"""Cut a model into sub-models ("parts") that run one after another or side by side, with a manifest.

Strategies (`optimizer.partition.plan`):

- `pipeline`: the main graph's nodes in topological order, cut into contiguous stages balanced by cost
  (the analysis' FLOPs per node, node counts when some costs are unknown): the heaviest stage as light
  as possible, then the least sum of squared stage costs (the most even split). Schedule: one stage per step.
- `branches`: the costliest fork-join region of the analysis; its branches are grouped into `parts`
  groups balanced by FLOPs (longest first, onto the lightest group). Schedule: head (what the branches
  need, omitted when empty), the groups side by side, tail (everything else, omitted when empty).

Constant nodes are not placed: every part gets a copy of those it reads, and of the initializers it
uses. Subgraph nodes (If/Loop/Scan) are placed whole; outer-scope values their bodies read are inputs
of the part when another part produces them. Parts keep the source's opset imports, IR version and
functions; their inputs and outputs carry the types shape inference gives.

Modules: `source` (the indexed source graph), `plan` (where to cut), `extract` (the part models),
`manifest` (schema, load/validate, writing with rollback), `partitioner` (`partition()`, which chains
them), `run` (`run_partitioned()`: the parts in onnxruntime, checked against the whole model and timed).
"""

from optimizer.partition.errors import PartitionError
from optimizer.partition.manifest import MANIFEST_NAME, SCHEMA_VERSION, STRATEGIES, Manifest, Part
from optimizer.partition.partitioner import partition
from optimizer.partition.run import RunReport, run_partitioned

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "Manifest",
    "Part",
    "PartitionError",
    "RunReport",
    "partition",
    "run_partitioned",
]
