"""Small, safe graph edits shared by passes: bypassing a node while keeping the graph's interface."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

__all__ = ["add_initializer", "bypass_value", "can_bypass", "pattern_problem", "owning_graph", "replace_pattern", "replace_value", "replace_with_constant", "unique_initializer_name"]


def owning_graph(value: ir.Value) -> ir.Graph | None:
    """The graph a value is defined in (producer's graph, or the graph it is an input/initializer of)."""
    producer = value.producer()
    if producer is not None:
        return producer.graph
    return value.graph


def bypass_value(old: ir.Value, new: ir.Value) -> bool:
    """Make every consumer of `old` read `new` instead, so `old`'s producer can go.

    When `old` is a graph output, `new` takes its place and its name, type and shape, which keeps
    the interface intact; that is refused (returns False) when `new` is itself a graph input,
    output or initializer, or lives in another graph.
    """
    if not old.is_graph_output():
        if new.producer() is not None:  # the same value: keep what shape inference cannot know (contrib ops)
            if new.type is None:
                new.type = old.type
            if new.shape is None:
                new.shape = old.shape
        old.replace_all_uses_with(new)
        return True
    if not can_bypass(old, new):
        return False
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    name, type_, shape = old.name, old.type, old.shape
    old.name = None
    new.name = name
    if type_ is not None:
        new.type = type_
    new.shape = shape
    return True


def can_bypass(old: ir.Value, new: ir.Value) -> bool:
    """Whether `bypass_value(old, new)` would succeed (checked before anything is changed)."""
    if not old.is_graph_output():
        return True
    producer = new.producer()
    return not (
        owning_graph(old) is None
        or new.is_graph_input()
        or new.is_graph_output()
        or new.is_initializer()
        or producer is None
        or producer.graph is not owning_graph(old)
    )


def unique_initializer_name(graph: ir.Graph, base: str) -> str:
    """`base`, or `base_2`, `base_3`... whichever is not yet an initializer of `graph`."""
    name, n = base, 1
    while name in graph.initializers:
        n += 1
        name = f"{base}_{n}"
    return name


def replace_value(old: ir.Value, new: ir.Value, graph: ir.Graph, anchor: ir.Node) -> None:
    """Like `bypass_value`, but when `new` cannot become a graph output, an Identity is inserted before
    `anchor` to carry it under the output's name, so the replacement always succeeds."""
    if bypass_value(old, new):
        return
    identity = ir.Node("", "Identity", [new], num_outputs=1)
    graph.insert_before(anchor, identity)
    if not bypass_value(old, identity.outputs[0]):
        raise RuntimeError(f"cannot replace graph output {old.name!r}")


def add_initializer(graph: ir.Graph, base: str, array: np.ndarray) -> ir.Value:
    """Register `array` as a new initializer of `graph` under a fresh name derived from `base`."""
    tensor = ir.tensor(array)
    value = ir.Value(
        name=unique_initializer_name(graph, base),
        shape=ir.Shape(array.shape),
        type=ir.TensorType(tensor.dtype),
        const_value=tensor,
    )
    graph.register_initializer(value)
    return value


def replace_with_constant(output: ir.Value, array: np.ndarray, anchor: ir.Node) -> None:
    """Make the readers of `output` (a value produced by `anchor`) read a new initializer holding `array`."""
    base = f"{output.name}_folded" if output.is_graph_output() else (output.name or "folded")
    constant = add_initializer(anchor.graph, base, array)
    replace_value(output, constant, anchor.graph, anchor=anchor)


def pattern_problem(nodes: list[ir.Node], output: ir.Value) -> str | None:
    """Why the matched `nodes` (computing `output`) cannot be replaced by one node, or None: they must
    live in one graph, and no value they compute but `output` may be read outside them or be a graph output."""
    if not nodes:
        return None
    graph = nodes[0].graph
    if any(node.graph is not graph for node in nodes):
        return "pattern spans subgraphs"
    inside = set(map(id, nodes))
    for node in nodes:
        for value in node.outputs:
            if value is output:
                continue
            if value.is_graph_output() or any(id(use.node) not in inside for use in value.uses()):
                return "an intermediate is used elsewhere"
    return None


def replace_pattern(fused: ir.Node | list[ir.Node], after: ir.Node, output: ir.Value, removed: list[ir.Node]) -> None:
    """Insert `fused` (one node, or several in order) after `after`, let the last one produce `output`'s
    readers (and name, if a graph output), then remove the matched nodes, last first."""
    graph = after.graph
    new_nodes = fused if isinstance(fused, list) else [fused]
    anchor = after
    for node in new_nodes:
        graph.insert_after(anchor, node)
        anchor = node
    if not bypass_value(output, new_nodes[-1].outputs[0]):
        for node in reversed(new_nodes):
            graph.remove(node)
        raise RuntimeError(f"{new_nodes[-1].op_type}: could not reroute the output {output.name!r}")
    for node in reversed(removed):
        graph.remove(node, safe=True)
