"""canonicalize: framework ops -> the crossbar form.

Before: any frontend graph. After: every MatMul with a constant 2-D weight is a Dense op
(y = act(x @ W + b)) with a following constant bias Add and a sole-user activation folded in;
Identity ops are gone; ops whose operands are all constants are folded into constants;
BatchNorm is folded into the Conv or Dense before it (or made a per-channel Mul and Add) and
every Conv is lowered to Im2Col -> Dense -> Transpose -> Reshape (`fold_batch_norms` and
`lower_convolutions` below).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, Value
from imcc.compiler.ir.interpreter import EVALUATORS
from imcc.compiler.passes.manager import Context, Pass, register

_ACTIVATION: dict[type[Op], ops.Activation] = {
    ops.Relu: ops.Activation.RELU,
    ops.Sigmoid: ops.Activation.SIGMOID,
    ops.Tanh: ops.Activation.TANH,
}


@register
@dataclass(frozen=True, slots=True)
class CanonicalizePass(Pass):
    name = "canonicalize"

    def run(self, graph: Graph, ctx: Context) -> None:
        self._fold_constants(graph)
        for identity in graph.walk(ops.Identity):
            graph.replace_uses(identity.outputs[0], identity.inputs[0])
        graph.remove_dead()
        for matmul in graph.walk(ops.MatMul):
            weight = graph.constant(matmul.inputs[1])
            if weight is not None and weight.ndim == 2:
                self._to_dense(graph, matmul, weight)
        graph.remove_dead()
        fold_batch_norms(graph)  # into Conv or Dense weights, else Mul + Add
        lower_convolutions(graph)  # Conv -> Im2Col, Dense, Transpose, Reshape
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
        fused = dense.attrs["activation"] != ops.Activation.NONE
        if len(users) != 1 or result in graph.outputs or fused:
            return
        activation = users[0]
        if type(activation) in _ACTIVATION:
            # Dense takes over the activation's result and its place in the order.
            dense.attrs["activation"] = _ACTIVATION[type(activation)]
            graph.ops.remove(dense)
            graph.replace_op(activation, dense, activation.outputs)


# -- convolutions and batch norms ---------------------------------------------------------


def fold_batch_norms(graph: Graph) -> None:
    for bn in graph.walk(ops.BatchNorm):
        x, scale_value, shift_value = bn.inputs
        scale = np.asarray(graph.constants[scale_value], dtype=np.float64)
        shift = np.asarray(graph.constants[shift_value], dtype=np.float64)
        producer = x.producer
        sole = len(graph.users(x)) == 1 and x not in graph.outputs
        foldable = isinstance(producer, ops.Conv) or (
            isinstance(producer, ops.Dense)
            and not isinstance(producer, ops.QDense)
            and producer.attrs.get("activation", "none") == ops.Activation.NONE
            and len(x.shape) == 2  # channel axis 1 is the Dense's output axis
        )
        if sole and foldable:
            assert producer is not None
            w = np.asarray(graph.constants[producer.inputs[1]], dtype=np.float64)
            b = np.asarray(graph.constants[producer.inputs[2]], dtype=np.float64)
            if isinstance(producer, ops.Conv):  # output channels on axis 0 of the kernel
                w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
            else:
                w = w * scale
            producer.inputs[1] = graph.add_constant(f"{producer.name}.bn_weight", w)
            producer.inputs[2] = graph.add_constant(f"{producer.name}.bn_bias", b * scale + shift)
            graph.replace_uses(bn.outputs[0], x)
            continue
        shape = (1, -1, *([1] * (len(x.shape) - 2)))
        mul = ops.Mul([x, graph.add_constant(f"{bn.name}.scale", scale.reshape(shape))], bn.name)
        scaled = graph.build(mul, f"{bn.outputs[0].name}.scaled")
        graph.ops.insert(graph.ops.index(bn), graph.ops.pop())
        add = ops.Add(
            [scaled, graph.add_constant(f"{bn.name}.shift", shift.reshape(shape))], bn.name
        )
        graph.replace_op(bn, add)
    graph.remove_dead()


def lower_convolutions(graph: Graph) -> None:
    for conv in graph.walk(ops.Conv):
        x, w_value, b_value = conv.inputs
        w = np.asarray(graph.constants[w_value], dtype=np.float64)
        group = int(conv.attrs.get("group", 1))
        out = w.shape[0]
        k = int(np.prod(w.shape[1:]))
        weight = np.zeros((k * group, out))
        for g in range(group):  # block-diagonal: group g reads its own channels only
            rows = slice(g * out // group, (g + 1) * out // group)
            weight[g * k : (g + 1) * k, rows] = w[rows].reshape(-1, k).T
        result = conv.outputs[0]
        activation = "none"
        users = graph.users(result)
        if len(users) == 1 and type(users[0]) in _ACTIVATION and result not in graph.outputs:
            activation = _ACTIVATION[type(users[0])]
            graph.replace_uses(users[0].outputs[0], result)
            graph.ops.remove(users[0])
        window = {key: conv.attrs[key] for key in ("kernel", "strides", "pads", "dilations")}
        index = graph.ops.index(conv)
        built: list[Op] = []
        cols = _build(graph, built, ops.Im2Col([x], conv.name, **window), f"{result.name}.im2col")
        dense = ops.Dense(
            [
                cols,
                graph.add_constant(f"{conv.name}.weight", weight),
                graph.add_constant(f"{conv.name}.bias", graph.constants[b_value]),
            ],
            conv.name,
            activation=activation,
        )
        pixels = _build(graph, built, dense, f"{result.name}.pixels")  # (N, P, O): row = pixel
        transpose = ops.Transpose([pixels], conv.name, perm=(0, 2, 1))
        channels = _build(graph, built, transpose, f"{result.name}.channels")
        reshape = ops.Reshape([channels], conv.name, shape=result.shape)
        graph.ops[index:index] = built
        graph.replace_op(conv, reshape)
    graph.remove_dead()


def _build(graph: Graph, built: list[Op], op: Op, name: str) -> Value:
    """Create `op`'s result but collect the op in `built` (to be placed by the caller)."""
    value = graph.build(op, name)
    built.append(graph.ops.pop())
    return value
