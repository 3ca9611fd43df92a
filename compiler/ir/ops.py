"""The op set of the graph IR, one class per op, each with its own type rules.

Frontends produce the framework-level ops (MatMul, Add, Relu, ...); `canonicalize` rewrites
them into Dense (y = x @ W + b, then an activation) wherever a constant weight allows; `quantize`
turns Dense into QDense, which carries the integer weights that go onto crossbars.
The registry OPS maps `kind` to class, for printing, parsing and error messages.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import numpy as np

from imcc.compiler.ir.core import Graph, Op, Produced, TensorType
from imcc.compiler.ir.crossbar import Slicing, Tile
from imcc.compiler.ir.windows import Window, window_index
from imcc.isa.numerics import qmax

OPS: dict[str, type[Op]] = {}


class Activation(enum.StrEnum):
    """The activation a Dense or QDense applies to its result (attribute `activation`)."""

    NONE = "none"
    RELU = "relu"
    SIGMOID = "sigmoid"
    TANH = "tanh"


class ReduceMode(enum.StrEnum):
    """What a Reduce computes over its axes (attribute `mode`)."""

    SUM = "sum"
    MEAN = "mean"
    MAX = "max"


class PoolMode(enum.StrEnum):
    """MaxPool or AveragePool (Pool's attribute `mode`)."""

    MAX = "max"
    AVG = "avg"


ACTIVATIONS = tuple(Activation)


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


@register
class Erf(Unary):
    kind = "Erf"


@register
class Sqrt(Unary):
    kind = "Sqrt"


@register
class Log(Unary):
    kind = "Log"


class Binary(Op):
    """Elementwise op with numpy broadcasting; `function` is what it computes (the IR
    interpreter applies it to the operands)."""

    arity: ClassVar[tuple[int, int]] = (2, 2)
    function: ClassVar[np.ufunc]

    def infer(self) -> list[TensorType]:
        a, b = self.inputs
        return [TensorType(broadcast(a.shape, b.shape, self), a.type.dtype)]


@register
class Add(Binary):
    kind = "Add"
    function = np.add


@register
class Sub(Binary):
    kind = "Sub"
    function = np.subtract


@register
class Mul(Binary):
    kind = "Mul"
    function = np.multiply


@register
class Div(Binary):
    kind = "Div"
    function = np.divide


@register
class Min(Binary):
    kind = "Min"
    function = np.minimum


@register
class MatMul(Op):
    """y = x @ w with numpy matmul semantics for operands of rank >= 2 (leading axes
    broadcast). A constant 2-D w is the crossbar form that `canonicalize` makes a Dense; any
    other product (attention's two activations) runs on the vector unit."""

    kind = "MatMul"
    arity: ClassVar[tuple[int, int]] = (2, 2)

    def infer(self) -> list[TensorType]:
        x, w = self.inputs
        if len(w.shape) < 2 or not x.shape or x.shape[-1] != w.shape[-2]:
            raise self.error(f"cannot multiply {x.shape} by {w.shape}")
        if len(w.shape) == 2:
            return [TensorType((*x.shape[:-1], w.shape[1]), x.type.dtype)]
        if len(x.shape) < 2:
            raise self.error(f"cannot multiply {x.shape} by {w.shape}")
        lead = broadcast(x.shape[:-2], w.shape[:-2], self)
        return [TensorType((*lead, x.shape[-2], w.shape[-1]), x.type.dtype)]


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


REDUCTIONS = tuple(ReduceMode)


@register
class Reduce(Op):
    """Sum, mean or max (`mode`) over `axes` (non-negative, sorted), which stay as size-1 axes
    when `keepdims`. An empty `axes` reduces nothing: the op passes its input through."""

    kind = "Reduce"

    def infer(self) -> list[TensorType]:
        x = self.inputs[0]
        axes = set(self.attrs["axes"])
        if not all(0 <= a < len(x.shape) for a in axes):
            raise self.error(f"axes {self.attrs['axes']} are out of range for rank {len(x.shape)}")
        keep = self.attrs.get("keepdims", 1) or not axes
        shape = [1 if a in axes else d for a, d in enumerate(x.shape) if keep or a not in axes]
        return [TensorType(tuple(shape), x.type.dtype)]

    def check(self, graph: Graph) -> None:
        if self.attrs.get("mode") not in REDUCTIONS:
            raise self.error(f"unknown reduction {self.attrs.get('mode')!r}")


@register
class LayerNorm(Op):
    """y = (x - mean) / sqrt(var + epsilon) * scale + bias, mean and (biased) variance over
    the axes from `axis` (non-negative) on. Operands x, scale, bias; scale and bias broadcast
    to the normalised shape x.shape[axis:]."""

    kind = "LayerNorm"
    arity: ClassVar[tuple[int, int]] = (3, 3)

    def infer(self) -> list[TensorType]:
        x, scale, bias = self.inputs
        normalised = x.shape[self.attrs["axis"] :]
        for operand in (scale, bias):
            if broadcast(normalised, operand.shape, self) != normalised:
                raise self.error(f"{operand.shape} does not broadcast to {normalised}")
        return [x.type]

    def check(self, graph: Graph) -> None:
        rank = len(self.inputs[0].shape)
        if not 0 <= self.attrs["axis"] < rank:
            raise self.error(f"axis {self.attrs['axis']} is out of range for rank {rank}")


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
    Attributes: weight_bits, input_bits, input_signed, input_scale (None = set at run time
    from an abs-max), scale_over ("row": the abs-max of each input vector; "map": of the whole
    input of the Im2Col that makes x, so all windows of a convolution share one scale, as
    accelerators quantise a layer's activations), activation.
    y = act((x_int @ w_int) * s_x * s_w + b).
    """

    kind = "QDense"
    arity: ClassVar[tuple[int, int]] = (4, 4)
    # set by the crossbar passes, in pipeline order
    slicing: Produced[Slicing] = Produced("bitslice")
    tiles: Produced[tuple[Tile, ...]] = Produced("tile")
    # (core, array) of each tile; with schedule = balanced, `copies` holds further placements
    placement: Produced[tuple[tuple[int, int], ...]] = Produced("place")
    copies: Produced[tuple[tuple[tuple[int, int], ...], ...]] = Produced("place", ())
    # per tile, the full-scale range of each column's ADC (adc_range column or slice)
    # (None: every ADC spans the target's full scale)
    adc_ranges: Produced[tuple[tuple[float, ...], ...] | None] = Produced("adc-range", None)

    def check(self, graph: Graph) -> None:
        _, w, scale, b = self.inputs
        w_int = graph.constant(w)
        if w_int is None or graph.constant(scale) is None or graph.constant(b) is None:
            raise self.error("weights, scales and bias of a QDense op must be constants")
        bits = self.attrs["weight_bits"]
        limit = qmax(bits, signed=True)
        if w_int.size and int(np.abs(w_int).max()) > limit:
            raise self.error(f"integer weights exceed the {bits}-bit range +-{limit}")
        n = w.shape[1]
        if scale.shape != (n,) or b.shape != (n,):
            raise self.error(f"scale {scale.shape} and bias {b.shape} must both be ({n},)")
        if self.attrs.get("activation", "none") not in ACTIVATIONS:
            raise self.error(f"unknown activation {self.attrs.get('activation')!r}")
        if self.attrs.get("scale_over", "row") == "map" and not isinstance(
            self.inputs[0].producer, Im2Col
        ):
            raise self.error("scale_over 'map' needs an input made by an Im2Col")


def _window(op: Op, x_shape: tuple[int, ...]) -> Window:
    """The op's window over x (N, C, *spatial), checked."""
    if len(x_shape) < 3:
        raise op.error(f"{op.kind} needs an input (N, C, spatial...), not {x_shape}")
    window = Window.of(op.attrs, len(x_shape) - 2)
    problem = window.check(x_shape[2:])
    if problem:
        raise op.error(problem)
    return window


@register
class Conv(Op):
    """y = conv(x, w) + b over NC(spatial) inputs: operands x, w (O, C/group, *kernel, const),
    b (O, const). Attributes: kernel, strides, pads (begins, ends), dilations, group.
    `canonicalize` lowers it to Im2Col -> Dense -> Transpose -> Reshape (passes/canonicalize.py).
    """

    kind = "Conv"
    arity: ClassVar[tuple[int, int]] = (3, 3)

    def infer(self) -> list[TensorType]:
        x, w = self.inputs[:2]
        window = _window(self, x.shape)
        group = int(self.attrs.get("group", 1))
        channels = x.shape[1]
        if len(w.shape) != len(x.shape) or w.shape[2:] != window.kernel:
            raise self.error(f"weight {w.shape} does not match kernel {window.kernel}")
        if group < 1 or channels % group or w.shape[0] % group or w.shape[1] * group != channels:
            raise self.error(
                f"weight {w.shape} with group {group} does not fit {channels} channels"
            )
        return [TensorType((x.shape[0], w.shape[0], *window.output(x.shape[2:])), x.type.dtype)]

    def check(self, graph: Graph) -> None:
        _, w, b = self.inputs
        if graph.constant(w) is None or graph.constant(b) is None:
            raise self.error("weight and bias of a Conv op must be constants")
        if b.shape != (w.shape[0],):
            raise self.error(f"bias shape {b.shape} does not match {w.shape[0]} output channels")


@register
class Im2Col(Op):
    """x (N, C, *spatial) -> (N, P, C * K): row p holds the window of output position p, channel
    by channel, K kernel offsets each, zeros in the padding. Attributes as Conv's."""

    kind = "Im2Col"

    def infer(self) -> list[TensorType]:
        x = self.inputs[0]
        window = _window(self, x.shape)
        positions = int(np.prod(window.output(x.shape[2:]), dtype=np.int64))
        k = x.shape[1] * int(np.prod(window.kernel, dtype=np.int64))
        return [TensorType((x.shape[0], positions, k), x.type.dtype)]


@register
class Pool(Op):
    """MaxPool (mode "max") or AveragePool (mode "avg") over x (N, C, *spatial). Padding never
    wins a max; an average divides by the window's inputs, or with count_include_pad by its
    positions inside input and pads. Attributes: Conv's, plus ceil_mode, count_include_pad."""

    kind = "Pool"

    def infer(self) -> list[TensorType]:
        x = self.inputs[0]
        window = _window(self, x.shape)
        return [TensorType((*x.shape[:2], *window.output(x.shape[2:])), x.type.dtype)]

    def check(self, graph: Graph) -> None:
        if self.attrs.get("mode") not in tuple(PoolMode):
            raise self.error(f"unknown pooling mode {self.attrs.get('mode')!r}")
        x = self.inputs[0]
        index, _ = window_index(_window(self, x.shape), x.shape[2:])
        if index.size and not (index >= 0).any(axis=1).all():
            raise self.error("a pooling window lies entirely in the padding")


@register
class Transpose(Op):
    """Permute the axes: result axis i is input axis perm[i]."""

    kind = "Transpose"

    def infer(self) -> list[TensorType]:
        x = self.inputs[0]
        perm = tuple(self.attrs["perm"])
        if sorted(perm) != list(range(len(x.shape))):
            raise self.error(f"perm {perm} is not a permutation of {len(x.shape)} axes")
        return [TensorType(tuple(x.shape[a] for a in perm), x.type.dtype)]


@register
class Select(Op):
    """A data movement fixed at compile time: out.flat[i] = x.flat[index.flat[i]], or `fill`
    where index.flat[i] < 0. attrs: index (an int64 table of the result's shape, the one
    array-valued attribute), fill (float, default 0). Slice, Pad (every mode), Gather, Split,
    Expand, Tile and DepthToSpace on activations all import as one Select each."""

    kind = "Select"

    def infer(self) -> list[TensorType]:
        index = np.asarray(self.attrs["index"])
        return [TensorType(tuple(int(d) for d in index.shape), self.inputs[0].type.dtype)]

    def check(self, graph: Graph) -> None:
        index = np.asarray(self.attrs["index"])
        if index.dtype.kind != "i":
            raise self.error(f"index table must hold integers, not {index.dtype}")
        if index.size and int(index.max()) >= self.inputs[0].type.size:
            raise self.error(
                f"index {int(index.max())} is outside the {self.inputs[0].type.size} elements"
            )


@register
class Concat(Op):
    """Inputs joined along `axis` (all other axes equal)."""

    kind = "Concat"
    arity: ClassVar[tuple[int, int]] = (1, 1 << 16)

    def infer(self) -> list[TensorType]:
        first = self.inputs[0].shape
        axis = self.attrs["axis"]
        if not 0 <= axis < len(first):
            raise self.error(f"axis {axis} is out of range for rank {len(first)}")
        for value in self.inputs[1:]:
            shape = value.shape
            if len(shape) != len(first) or any(
                a != b for i, (a, b) in enumerate(zip(shape, first, strict=True)) if i != axis
            ):
                raise self.error(f"cannot join {value.name!r} {shape} to {first} along {axis}")
        size = sum(v.shape[axis] for v in self.inputs)
        return [TensorType((*first[:axis], size, *first[axis + 1 :]), self.inputs[0].type.dtype)]


@register
class BatchNorm(Op):
    """Inference batch normalisation as y = x * scale + shift per channel (axis 1); operands
    x, scale (C, const), shift (C, const). `canonicalize` folds it into a preceding Conv or
    Dense, or makes it a per-channel Mul and Add."""

    kind = "BatchNorm"
    arity: ClassVar[tuple[int, int]] = (3, 3)

    def check(self, graph: Graph) -> None:
        x, scale, shift = self.inputs
        if len(x.shape) < 2:
            raise self.error(f"BatchNorm needs a channel axis (axis 1); input has shape {x.shape}")
        if graph.constant(scale) is None or graph.constant(shift) is None:
            raise self.error("scale and shift of a BatchNorm op must be constants")
        if scale.shape != (x.shape[1],) or shift.shape != (x.shape[1],):
            raise self.error(f"scale and shift must be ({x.shape[1]},), not {scale.shape}")


def make(kind: str, *args: Any, **kwargs: Any) -> Op:
    return OPS[kind](*args, **kwargs)
