"""Topological orders of a DAG given as predecessor lists (vertices are 0..n-1).

`topological_order()` is Kahn's algorithm that always takes the lowest-numbered ready vertex, so a
graph whose vertices are already in a topological order keeps it. `order_by_depth()` reorders such an
order by depth (the longest path, in edges, from a vertex without predecessors), ties by number: the
breadth-first waves of Kahn's algorithm. Vertices on a cycle, and those after one, are left out of
both; callers decide whether that is an error (`unordered()` lists them).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

__all__ = ["order_by_depth", "topological_order", "unordered"]


def topological_order(preds: Sequence[Sequence[int]]) -> list[int]:
    """Kahn's algorithm, the lowest-numbered ready vertex first; `preds[v]` lists v's distinct predecessors."""
    waiting = [len(p) for p in preds]
    users: list[list[int]] = [[] for _ in preds]
    for v, before in enumerate(preds):
        for u in before:
            users[u].append(v)
    ready = [v for v, count in enumerate(waiting) if not count]
    heapq.heapify(ready)
    order = []
    while ready:
        v = heapq.heappop(ready)
        order.append(v)
        for w in users[v]:
            waiting[w] -= 1
            if not waiting[w]:
                heapq.heappush(ready, w)
    return order


def order_by_depth(order: Sequence[int], preds: Sequence[Sequence[int]]) -> list[int]:
    """The vertices of the topological `order` sorted by depth from the sources, ties by number."""
    depth: dict[int, int] = {}
    for v in order:
        depth[v] = 1 + max((depth[u] for u in preds[v]), default=-1)
    return sorted(order, key=lambda v: (depth[v], v))


def unordered(order: Sequence[int], size: int) -> list[int]:
    """The vertices a topological order of `size` vertices left out (on or after a cycle), by number."""
    placed = set(order)
    return [v for v in range(size) if v not in placed]
