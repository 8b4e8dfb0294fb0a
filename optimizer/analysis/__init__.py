"""Graph analysis: the cost model (FLOPs and bytes per node) and the parallelism of the work.

- `shapes`: dynamic input dims bound to numbers, static shapes inferred for the cost model;
- `cost`: per-op FLOP and byte formulas, `NodeCost`;
- `structure`: the dependency DAG, work/span, post-dominators, fork-join regions, the speedup bound;
- `graph_analysis`: `analyze()`, which combines them into a `GraphAnalysis`.
"""

from optimizer.analysis.cost import NodeCost
from optimizer.analysis.graph_analysis import GraphAnalysis, analyze, inter_op_speedup_of
from optimizer.analysis.structure import OUTPUTS_JOIN, Region

__all__ = ["NodeCost", "Region", "GraphAnalysis", "analyze", "inter_op_speedup_of", "OUTPUTS_JOIN"]
