"""canonicalize: framework ops -> the crossbar form.

Before: any frontend graph. After: every MatMul with a constant 2-D weight is a Dense op
(y = act(x @ W + b)) with a following constant bias Add and a sole-user activation folded in;
Identity ops are gone; ops whose operands are all constants are folded into constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, Value
from imcc.compiler.ir.interpreter import EVALUATORS
from imcc.compiler.passes.manager import Context, Pass, register

_ACTIVATION = {ops.Relu: "relu", ops.Sigmoid: "sigmoid", ops.Tanh: "tanh"}


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
        for op in graph.walk(ops.Dense):
            self._fuse_activation(graph, op)
        graph.remove_dead()

    @staticmethod
    def _fold_constants(graph: Graph) -> None:
        for op in graph.walk():
            arrays = [graph.constant(v) for v in op.inputs]
            if op.inputs and all(a is not None for a in arrays) and op.kind in EVALUATORS:
                result = EVALUATORS[op.kind](op, [np.asarray(a) for a in arrays])  # type: ignore[misc]
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
        _insert_before(graph, matmul, dense, result.name)
        graph.replace_uses(result, dense.outputs[0])

    @staticmethod
    def _fuse_activation(graph: Graph, dense: Op) -> None:
        result = dense.outputs[0]
        users = graph.users(result)
        if len(users) != 1 or result in graph.outputs or dense.attrs["activation"] != "none":
            return
        kind = type(users[0])
        if kind in _ACTIVATION:
            dense.attrs["activation"] = _ACTIVATION[kind]
            graph.replace_uses(users[0].outputs[0], result)
            result.name = users[0].outputs[0].name


def _insert_before(graph: Graph, anchor: Op, op: Op, result_name: str) -> None:
    """Create `op`'s results and put it just before `anchor` in the op list."""
    graph.add_op(op, [result_name])
    graph.ops.remove(op)
    graph.ops.insert(graph.ops.index(anchor), op)
