"""MatMul + Add of a constant bias becomes Gemm, for 2-D inputs.

`y = Add(MatMul(a[M,K], B[K,N]), c)` with B and c constants, c of shape [N], [1,N] or [M,N]
  =>  `y = Gemm(a, B, c)`.
"""

from __future__ import annotations


import onnx_ir as ir

from optimizer.pipeline import Decline, NEEDS_SHAPES
from optimizer.rewriter import Replacement, RewritePass, Rule
from optimizer.graph.matching import is_op, single_use
from optimizer.graph.values import constant_array

__all__ = ["FuseMatMulAddPass"]

_FLOATS = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16)


class _MatMulAdd(Rule):
    name = "matmul+add"
    anchors = ("Add",)

    def check(self, node: ir.Node, model: ir.Model) -> Replacement:
        matmul, bias = None, None
        for index in (0, 1):
            producer = node.inputs[index].producer() if node.inputs[index] is not None else None
            if is_op(producer, "MatMul"):
                matmul, bias = producer, node.inputs[1 - index]
                break
        if matmul is None:
            raise Decline("no MatMul operand")
        product = matmul.outputs[0]
        if not single_use(product):
            raise Decline("MatMul output is also used elsewhere")
        a, weight = matmul.inputs
        if a.shape is None or len(a.shape) != 2:
            raise Decline("MatMul input is not 2-D")
        weight_array, bias_array = constant_array(weight), constant_array(bias)
        if weight_array is None or weight_array.ndim != 2:
            raise Decline("MatMul weight is not a 2-D constant")
        if bias_array is None:
            raise Decline("bias is not a constant")
        if a.dtype not in _FLOATS or weight.dtype != a.dtype or bias.dtype != a.dtype:
            raise Decline("not floating point of one type")
        n = weight_array.shape[1]
        m = a.shape[0]
        if bias_array.shape not in ((n,), (1, n)) and not (isinstance(m, int) and bias_array.shape == (m, n)):
            raise Decline("bias shape does not broadcast as Gemm's C")
        gemm = ir.Node("", "Gemm", [a, weight, bias], num_outputs=1)
        return Replacement.fuse(gemm, node, node.outputs[0], [matmul, node])


class FuseMatMulAddPass(RewritePass, name="fuse-matmul-add", level="O2", preconditions={NEEDS_SHAPES}):
    """Turn 2-D MatMul followed by Add of a constant bias into Gemm."""

    rules = (_MatMulAdd,)
