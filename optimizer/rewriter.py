"""Rule-based rewriting: a rule declares a pattern, checks a candidate, and describes its replacement.

A `Rule` names the op types it starts from (`anchors`, in one `domain`) and implements
`check(node, model)`, which either raises `Decline("reason")` or returns a `Replacement`: the new
nodes and initializers, the edits of kept nodes, which old values the new ones stand for, and which
matched nodes go. The rule never edits the graph itself; `apply_replacement` is the one place that
does, keeping the graph interface (a replaced graph output keeps its name, type and shape). A
`RewritePass` applies its rules to every node of the main graph, its subgraphs and the model's
functions, counting rewrites per rule and declines per reason, so the report says why a pattern
was left alone.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from optimizer.graph.editing import bypass_value, unique_initializer_name
from optimizer.graph.matching import is_default_domain
from optimizer.pipeline import Decline, OptimizationPass

__all__ = ["Replacement", "Rule", "RewritePass", "apply_replacement"]


@dataclasses.dataclass
class Replacement:
    """What a rule's match becomes; built by `check`, applied by `apply_replacement`.

    Applied in this order: initializers are registered (unique names derived from their bases, in
    the order they were made), kept nodes' inputs and attributes are edited (in the order given),
    `nodes` are inserted after `after` (the anchor when None), each rerouted old value's readers
    read its new value, the `removed` nodes go (last first), then the `removed_if_unused` nodes
    whose outputs nobody reads any more.
    """

    removed: list[ir.Node] = dataclasses.field(default_factory=list)
    """Matched nodes that go, producers first."""
    nodes: list[ir.Node] = dataclasses.field(default_factory=list)
    """New nodes, in order."""
    after: ir.Node | None = None
    """Where the new nodes go (right after this node); the anchor when None."""
    reroutes: list[tuple[ir.Value, ir.Value]] = dataclasses.field(default_factory=list)
    """(old value, new value): the old value's readers (and graph-output name) move to the new one."""
    removed_if_unused: list[ir.Node] = dataclasses.field(default_factory=list)
    """Nodes that go only when the rewrite left their outputs unread (producers first)."""
    initializers: list[tuple[str, ir.Value]] = dataclasses.field(default_factory=list)
    """(base name, value) of the new constants, made by `initializer`."""
    edits: list[tuple[ir.Node, int | str, ir.Value | ir.Attr | None]] = dataclasses.field(default_factory=list)
    """(kept node, input index, new input) or (kept node, attribute name, new attribute or None to drop)."""

    @classmethod
    def fuse(cls, nodes: ir.Node | list[ir.Node], after: ir.Node, output: ir.Value, removed: list[ir.Node]) -> Replacement:
        """The matched `removed` nodes (computing `output`) become `nodes`, inserted after `after`,
        whose last one's output stands for `output`."""
        replacement = cls(removed=list(removed), after=after)
        replacement.insert(nodes, output)
        return replacement

    def insert(self, nodes: ir.Node | list[ir.Node], output: ir.Value) -> None:
        """Add new `nodes` (in order); the last one's output stands for the old `output`."""
        nodes = nodes if isinstance(nodes, list) else [nodes]
        self.nodes.extend(nodes)
        self.reroute(output, nodes[-1].outputs[0])

    def initializer(self, base: str, array: np.ndarray) -> ir.Value:
        """A new constant holding `array`, named after `base` (made unique when applied)."""
        tensor = ir.tensor(array)
        value = ir.Value(name=base, shape=ir.Shape(array.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
        self.initializers.append((base, value))
        return value

    def set_input(self, node: ir.Node, index: int, value: ir.Value | None) -> None:
        """Make kept `node` read `value` as input `index` (growing its inputs when needed)."""
        self.edits.append((node, index, value))

    def set_attribute(self, node: ir.Node, name: str, attribute: ir.Attr | None) -> None:
        """Set (or, with None, drop) attribute `name` of kept `node`."""
        self.edits.append((node, name, attribute))

    def reroute(self, old: ir.Value, new: ir.Value) -> None:
        """Readers of `old` read `new` instead; a graph output `old` passes its name to `new`."""
        self.reroutes.append((old, new))


class Rule:
    """One rewrite: the pattern (`anchors` in `domain`) and `check`, which returns a `Replacement`."""

    name: ClassVar[str]
    anchors: ClassVar[tuple[str, ...]]
    domain: ClassVar[str] = ""
    introduces: ClassVar[dict[str, int]] = {}
    """Opset imports the replacement needs (e.g. {"com.microsoft": 1}); added when it fires."""

    def matches(self, node: ir.Node) -> bool:
        """Whether `node` is one of the rule's anchors."""
        if node.op_type not in self.anchors:
            return False
        return is_default_domain(node) if self.domain == "" else node.domain == self.domain

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        """The replacement of the pattern anchored at `node`; raises `Decline` to leave it alone."""
        raise NotImplementedError


def _materialize(graph: ir.Graph, replacement: Replacement, in_function: bool) -> None:
    """Give the replacement's constants unique names: initializers of `graph`, or, in a function
    (which has no initializers), Constant nodes at the start of its graph."""
    if not in_function:
        for base, value in replacement.initializers:
            value.name = unique_initializer_name(graph, base)
            graph.register_initializer(value)
        return
    taken = {v.name for node in ir.traversal.RecursiveGraphIterator(graph) for v in (*node.inputs, *node.outputs) if v is not None}
    taken.update(v.name for v in graph.inputs)
    for base, value in replacement.initializers:
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        value.name = name
        taken.add(name)
        constant = ir.Node("", "Constant", [], [ir.AttrTensor("value", value.const_value)], outputs=[value])
        first = next(iter(graph), None)
        if first is None:
            graph.append(constant)
        else:
            graph.insert_before(first, constant)


def _edit(node: ir.Node, key: int | str, new: ir.Value | ir.Attr | None) -> None:
    """Set input `key` (an index) or attribute `key` (a name; dropped when `new` is None) of `node`."""
    if isinstance(key, int):
        if len(node.inputs) <= key:
            node.resize_inputs(key + 1)
        node.replace_input_with(key, new)
    elif new is None:
        node.attributes.pop(key, None)
    else:
        node.attributes[key] = new


def apply_replacement(anchor: ir.Node, replacement: Replacement, *, in_function: bool = False) -> None:
    """Apply `replacement` of the pattern anchored at `anchor` to its graph (see `Replacement`)."""
    graph = anchor.graph
    _materialize(graph, replacement, in_function)
    for node, key, new in replacement.edits:
        _edit(node, key, new)
    position = replacement.after or anchor
    for node in replacement.nodes:
        graph.insert_after(position, node)
        position = node
    for old, new in replacement.reroutes:
        if not bypass_value(old, new):
            for node in reversed(replacement.nodes):
                graph.remove(node)
            raise RuntimeError(f"could not reroute {old.name!r} to {new.name!r}")
    for node in reversed(replacement.removed):
        graph.remove(node, safe=True)
    for node in reversed(replacement.removed_if_unused):
        if not any(out.uses() or out.is_graph_output() for out in node.outputs):
            graph.remove(node, safe=True)


class RewritePass(OptimizationPass):
    """Applies `rules` to every node (main graph, subgraphs, functions) that is a rule's anchor."""

    rules: ClassVar[tuple[type[Rule], ...]] = ()

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        rules = [rule() for rule in self.rules]
        for node, function in list(_nodes_of(model)):
            for rule in rules:
                if node.graph is None:  # removed by an earlier rewrite
                    break
                if not rule.matches(node):
                    continue
                try:
                    replacement = rule.check(node, model)
                except Decline as decline:
                    self.decline(f"{rule.name}: {decline.reason}")
                    continue
                apply_replacement(node, replacement, in_function=function is not None)
                counts[rule.name] += 1
                for domain, version in rule.introduces.items():
                    model.opset_imports.setdefault(domain, version)
                    if function is not None:
                        function.opset_imports.setdefault(domain, version)
        return counts


def _nodes_of(model: ir.Model) -> Iterator[tuple[ir.Node, ir.Function | None]]:
    """Every node of the main graph and its subgraphs, then of each function, with its function."""
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        yield node, None
    for function in model.functions.values():
        for node in ir.traversal.RecursiveGraphIterator(function):
            yield node, function
