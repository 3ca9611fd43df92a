"""canonicalize: framework ops -> the crossbar form.

Before: any frontend graph. After: every MatMul with a constant 2-D weight is a Dense op
(y = act(x @ W + b)) with a following constant bias Add and a sole-user activation folded in;
Identity ops are gone; ops whose operands are all constants are folded into constants;
BatchNorm is folded into the Conv or Dense before it (or made a per-channel Mul and Add) and
every Conv is lowered to Im2Col -> Dense -> Transpose -> Reshape (passes/convolution.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, Value
from imcc.compiler.ir.interpreter import EVALUATORS
from imcc.compiler.passes import convolution
from imcc.compiler.passes.manager import Context, Pass, register

_ACTIVATION: dict[type[Op], str] = {ops.Relu: "relu", ops.Sigmoid: "sigmoid", ops.Tanh: "tanh"}


@register
@dataclass(frozen=True, slots=True)
class CanonicalizePass(Pass):
    name = "canonicalize"

    def run(self, graph: Graph, ctx: Context) -> None:
        self._fold_constants(graph)
        for op in graph.walk(ops.Identity):
            graph.replace_uses(op.outputs[0], op.inputs[0])
        graph.remove_dead()
        for op in graph.walk(ops.MatMul):
            weight = graph.constant(op.inputs[1])
            if weight is not None and weight.ndim == 2:
                self._to_dense(graph, op, weight)
        graph.remove_dead()
        convolution.fold_batch_norms(graph)  # into Conv or Dense weights, else Mul + Add
        convolution.lower_convolutions(graph)  # Conv -> Im2Col, Dense, Transpose, Reshape
        for op in graph.walk(ops.Dense):
            self._fuse_activation(graph, op)
        graph.remove_dead()

    @staticmethod
    def _fold_constants(graph: Graph) -> None:
        for op in graph.walk():
            arrays = [graph.constant(v) for v in op.inputs]
            if op.inputs and all(a is not None for a in arrays) and op.kind in EVALUATORS:
                result = EVALUATORS[op.kind](op, [np.asarray(a) for a in arrays])
                folded = graph.add_constant(op.outputs[0].name, result.astype(np.float32))
                graph.replace_uses(op.outputs[0], folded)
        graph.remove_dead()

    @staticmethod
    def _to_dense(graph: Graph, matmul: Op, weight: np.ndarray) -> None:
        x, w = matmul.inputs
        n = weight.shape[1]
        result: Value = matmul.outputs[0]
        bias = np.zeros(n, dtype=np.float64)
        users = graph.users(result)
        # Fold one following `+ b` when b is a constant that broadcasts to a row vector.
        if len(users) == 1 and isinstance(users[0], ops.Add) and result not in graph.outputs:
            add = users[0]
            other = add.inputs[1] if add.inputs[0] is result else add.inputs[0]
            b = graph.constant(other)
            if b is not None and b.size in (1, n) and add.outputs[0].shape == result.shape:
                bias = np.broadcast_to(b.reshape(-1), (n,)).astype(np.float64)
                result = add.outputs[0]
        b_value = graph.add_constant(f"{matmul.name}.bias", bias)
        dense = ops.Dense([x, w, b_value], name=matmul.name, activation="none")
        # Dense takes over the final result (the Add's, when the bias was folded), so the
        # value keeps its name and its users; the MatMul (and Add) are left dead.
        graph.replace_op(matmul, dense, [result])

    @staticmethod
    def _fuse_activation(graph: Graph, dense: Op) -> None:
        result = dense.outputs[0]
        users = graph.users(result)
        if len(users) != 1 or result in graph.outputs or dense.attrs["activation"] != "none":
            return
        activation = users[0]
        if type(activation) in _ACTIVATION:
            # Dense takes over the activation's result and its place in the order.
            dense.attrs["activation"] = _ACTIVATION[type(activation)]
            graph.ops.remove(dense)
            graph.replace_op(activation, dense, activation.outputs)
