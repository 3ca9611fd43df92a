"""The op set of the graph IR, one class per op, each with its own type rules.

Frontends produce the framework-level ops (MatMul, Add, Relu, ...); `canonicalize` rewrites
them into Dense (y = x @ W + b, then an activation) wherever a constant weight allows; `quantize`
turns Dense into QDense, which carries the integer weights that go onto crossbars.
The registry OPS maps `kind` to class, for printing, parsing and error messages.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from imcc.compiler.ir.core import Graph, Op, TensorType

OPS: dict[str, type[Op]] = {}

ACTIVATIONS = ("none", "relu", "sigmoid", "tanh")


def register(cls: type[Op]) -> type[Op]:
    OPS[cls.kind] = cls
    return cls


def broadcast(a: tuple[int, ...], b: tuple[int, ...], op: Op) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a, b))
    except ValueError:
        raise op.error(f"shapes {a} and {b} do not broadcast") from None


class Unary(Op):
    """Elementwise op with one operand; same type out."""


@register
class Identity(Unary):
    kind = "Identity"


@register
class Relu(Unary):
    kind = "Relu"


@register
class Sigmoid(Unary):
    kind = "Sigmoid"


@register
class Tanh(Unary):
    kind = "Tanh"


@register
class Exp(Unary):
    kind = "Exp"


class Binary(Op):
    """Elementwise op with numpy broadcasting."""

    arity: ClassVar[tuple[int, int]] = (2, 2)

    def infer(self) -> list[TensorType]:
        a, b = self.inputs
        return [TensorType(broadcast(a.shape, b.shape, self), a.type.dtype)]


@register
class Add(Binary):
    kind = "Add"


@register
class Sub(Binary):
    kind = "Sub"


@register
class Mul(Binary):
    kind = "Mul"


@register
class Div(Binary):
    kind = "Div"


@register
class MatMul(Op):
    """y = x @ w with numpy matmul semantics (w 2-D here: the crossbar form)."""

    kind = "MatMul"
    arity: ClassVar[tuple[int, int]] = (2, 2)

    def infer(self) -> list[TensorType]:
        x, w = self.inputs
        if len(w.shape) != 2 or not x.shape or x.shape[-1] != w.shape[0]:
            raise self.error(f"cannot multiply {x.shape} by {w.shape}")
        return [TensorType((*x.shape[:-1], w.shape[1]), x.type.dtype)]


@register
class Softmax(Op):
    kind = "Softmax"

    def check(self, graph: Graph) -> None:
        rank = len(self.inputs[0].shape)
        if not -rank <= self.attrs.get("axis", -1) < rank:
            raise self.error(f"axis {self.attrs.get('axis')} is out of range for rank {rank}")


@register
class ArgMax(Op):
    """Index of the first maximum along `axis` (kept as a size-1 axis when `keepdims`)."""

    kind = "ArgMax"

    def infer(self) -> list[TensorType]:
        shape = list(self.inputs[0].shape)
        axis = self.attrs.get("axis", -1) % len(shape)
        if self.attrs.get("keepdims", 1):
            shape[axis] = 1
        else:
            del shape[axis]
        return [TensorType(tuple(shape), "int64")]

    def check(self, graph: Graph) -> None:
        rank = len(self.inputs[0].shape)
        if not -rank <= self.attrs.get("axis", -1) < rank:
            raise self.error(f"axis {self.attrs.get('axis')} is out of range for rank {rank}")


@register
class Reshape(Op):
    """Reinterpret the same elements in a new shape (`shape` attribute, concrete)."""

    kind = "Reshape"

    def infer(self) -> list[TensorType]:
        shape = tuple(self.attrs["shape"])
        if int(np.prod(shape, dtype=np.int64)) != self.inputs[0].type.size:
            raise self.error(f"cannot reshape {self.inputs[0].shape} to {shape}")
        return [TensorType(shape, self.inputs[0].type.dtype)]


@register
class Dense(Op):
    """y = act(x @ w + b): the crossbar form. Operands x, w (K x N const), b (N const)."""

    kind = "Dense"
    arity: ClassVar[tuple[int, int]] = (3, 3)

    def infer(self) -> list[TensorType]:
        x, w = self.inputs[:2]
        if len(w.shape) != 2 or not x.shape or x.shape[-1] != w.shape[0]:
            raise self.error(f"cannot multiply {x.shape} by {w.shape}")
        return [TensorType((*x.shape[:-1], w.shape[1]), x.type.dtype)]

    def check(self, graph: Graph) -> None:
        _, w, b = self.inputs
        if graph.constant(w) is None or graph.constant(b) is None:
            raise self.error("weight and bias of a Dense op must be constants")
        if b.shape != (w.shape[1],):
            raise self.error(f"bias shape {b.shape} does not match {w.shape[1]} outputs")
        if self.attrs.get("activation", "none") not in ACTIVATIONS:
            raise self.error(f"unknown activation {self.attrs.get('activation')!r}")


@register
class QDense(Dense):
    """Dense with quantised operands, ready for crossbars.

    Operands: x, w_int (K x N signed integers, `weight_bits` wide), w_scale (N), b (N).
    Attributes: weight_bits, input_bits, input_signed, input_scale (None = set per input
    vector at run time from its abs-max), activation. y = act((x_int @ w_int) * s_x * s_w + b).
    """

    kind = "QDense"
    arity: ClassVar[tuple[int, int]] = (4, 4)

    def check(self, graph: Graph) -> None:
        _, w, scale, b = self.inputs
        w_int = graph.constant(w)
        if w_int is None or graph.constant(scale) is None or graph.constant(b) is None:
            raise self.error("weights, scales and bias of a QDense op must be constants")
        bits = self.attrs["weight_bits"]
        limit = (1 << (bits - 1)) - 1
        if w_int.size and int(np.abs(w_int).max()) > limit:
            raise self.error(f"integer weights exceed the {bits}-bit range +-{limit}")
        n = w.shape[1]
        if scale.shape != (n,) or b.shape != (n,):
            raise self.error(f"scale {scale.shape} and bias {b.shape} must both be ({n},)")
        if self.attrs.get("activation", "none") not in ACTIVATIONS:
            raise self.error(f"unknown activation {self.attrs.get('activation')!r}")


def make(kind: str, *args: Any, **kwargs: Any) -> Op:
    return OPS[kind](*args, **kwargs)
