"""Rule-based rewriting: a rule matches from an anchor node, declines with a reason, or rewrites.

A `Rule` names the op type it starts from (`anchor`), implements `match(node)` returning either a
match object or a `Declined(reason)`, and `rewrite(match)` that edits the graph in place. A
`RewritePass` applies its rules to every node (subgraphs included), counting rewrites per rule and
declines per reason, so the report can say why a pattern was left alone.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, ClassVar

import onnx_ir as ir

from optimizer.pipeline import OptimizationPass

__all__ = ["Declined", "Rule", "RewritePass"]


@dataclasses.dataclass(frozen=True)
class Declined:
    """Why a rule left a candidate alone."""

    reason: str


class Rule:
    """One rewrite: `match` inspects the anchor node, `rewrite` applies the match."""

    name: ClassVar[str]
    anchor: ClassVar[str]
    domain: ClassVar[str] = ""
    introduces: ClassVar[dict[str, int]] = {}
    """Opset imports the rewrite needs (e.g. {"com.microsoft": 1}); added to the model when it fires."""

    def match(self, node: ir.Node, model: ir.Model) -> Any | Declined:
        raise NotImplementedError

    def rewrite(self, match: Any) -> None:
        raise NotImplementedError


class RewritePass(OptimizationPass):
    """Applies `rules` to every node whose op type is a rule's anchor."""

    rules: ClassVar[tuple[type[Rule], ...]] = ()

    def apply(self, model: ir.Model) -> collections.Counter[str]:
        counts: collections.Counter[str] = collections.Counter()
        rules = [rule() for rule in self.rules]
        for node in list(ir.traversal.RecursiveGraphIterator(model.graph)):
            for rule in rules:
                if node.graph is None:  # removed by an earlier rewrite
                    break
                if node.op_type != rule.anchor or node.domain not in (rule.domain, "ai.onnx" if rule.domain == "" else rule.domain):
                    continue
                found = rule.match(node, model)
                if isinstance(found, Declined):
                    self.declined[f"{rule.name}: {found.reason}"] += 1
                    continue
                rule.rewrite(found)
                counts[rule.name] += 1
                for domain, version in rule.introduces.items():
                    model.opset_imports.setdefault(domain, version)
        return counts
