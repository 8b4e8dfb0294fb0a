"""Graph preparation for dynamic int8: onnxruntime's dynamic quantizer has MatMul but no Gemm.

`Gemm(a, B, C)` with transA 0, alpha 1, beta 1 and a constant B becomes `Add(MatMul(a, B'), C)` (B'
= B, or B transposed once for transB), the form it can quantize; onnxruntime fuses the bias back at
session time. The MatMul keeps the Gemm's name (so `--exclude-nodes` and the sensitivity ranking name
it as the user sees it) and the Add produces the Gemm's output under its name.
"""

from __future__ import annotations

import onnx_ir as ir

from optimizer.graph.editing import add_initializer, replace_pattern

__all__ = ["gemm_to_matmul_add"]


def _attribute(node: ir.Node, name: str, default):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def gemm_to_matmul_add(model: ir.Model) -> int:
    """Rewrite the main graph's eligible Gemms in place; returns how many."""
    graph = model.graph
    count = 0
    for node in list(graph):
        if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
            continue
        if _attribute(node, "transA", 0) or _attribute(node, "alpha", 1.0) != 1.0 or _attribute(node, "beta", 1.0) != 1.0:
            continue
        a, b = node.inputs[0], node.inputs[1]
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if a is None or b is None or b.const_value is None:
            continue
        weight = b
        if _attribute(node, "transB", 0):
            weight = add_initializer(graph, f"{b.name}_transposed", b.const_value.numpy().T.copy())
        matmul = ir.Node("", "MatMul", [a, weight], num_outputs=1, name=node.name)
        new_nodes = [matmul]
        if bias is not None:
            new_nodes.append(ir.Node("", "Add", [matmul.outputs[0], bias], num_outputs=1, name=f"{node.name}_bias" if node.name else None))
        output = node.outputs[0]
        new_nodes[-1].outputs[0].type, new_nodes[-1].outputs[0].shape = output.type, output.shape
        if bias is not None:
            matmul.outputs[0].type = output.type
        replace_pattern(new_nodes, node, output, [node])
        count += 1
    return count
