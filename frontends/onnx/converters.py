"""ONNX op -> graph IR converters: one `convert_<op>` per op type and opset version.

Registered with `@converter` in registry.CONVERTERS; the importer calls them in graph order
with a NodeContext. Each lowers one node onto the IR op set (compiler/ir/ops.py) with ONNX
semantics. Nodes whose operands are all constants run through the same converters on a scratch
graph and are folded, so a converter only has to describe the computation once.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import numpy as np
from onnx import numpy_helper

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Op, Value

from .registry import NodeContext, Result, converter


def _axis(ctx: NodeContext, axis: int, rank: int, *, inclusive: bool = False) -> int:
    """Normalise a possibly negative axis; `inclusive` allows `rank` itself (Flatten)."""
    high = rank if inclusive else rank - 1
    if not -rank <= axis <= high:
        raise ctx.error(f"axis {axis} is out of range for an input of rank {rank}")
    return axis + rank if axis < 0 else axis


# -- elementwise ----------------------------------------------------------------------------


def _unary(ctx: NodeContext, op_class: type[Op]) -> list[Result]:
    return [ctx.emit(op_class, [ctx.value(0)], output=0)]


@converter("Relu")
def convert_relu(ctx: NodeContext) -> list[Result]:
    return _unary(ctx, ops.Relu)


@converter("Sigmoid")
def convert_sigmoid(ctx: NodeContext) -> list[Result]:
    return _unary(ctx, ops.Sigmoid)


@converter("Tanh")
def convert_tanh(ctx: NodeContext) -> list[Result]:
    return _unary(ctx, ops.Tanh)


@converter("Identity")
def convert_identity(ctx: NodeContext) -> list[Result]:
    return _unary(ctx, ops.Identity)


@converter("Dropout")
def convert_dropout(ctx: NodeContext) -> list[Result]:
    """Inference-mode Dropout passes its input through; training mode and the mask are errors."""
    if ctx.output_used(1):
        raise ctx.error(
            f"the mask output {ctx.node.output[1]!r} of Dropout is not supported: imcc imports "
            "models for inference, where Dropout only passes its input through"
        )
    if ctx.opset >= 12 and ctx.has_input(2):
        mode = ctx.constant(2)
        if mode is None:
            raise ctx.error(
                f"Dropout's training_mode ({ctx.input_name(2)!r}) is computed at run time; "
                "only inference (training_mode false) is supported"
            )
        if np.any(mode):
            raise ctx.error("Dropout in training mode is not supported: imcc imports for inference")
    return _unary(ctx, ops.Identity)


def _check_batch_broadcast(ctx: NodeContext, operands: Sequence[Value]) -> None:
    """With a batch axis, broadcasting must keep it first and of size 1 per sample.

    A constant with its own leading axis > 1, or an activation of lower rank than the result,
    would line the batch axis up against another axis once the batch is larger than 1.
    """
    shapes = [v.shape for v in operands]
    try:
        result = tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ctx.error(
            f"{ctx.op_type} operand shapes {' and '.join(map(str, shapes))} do not broadcast"
        ) from None
    if not ctx.batch_axis:
        return
    for value in operands:
        if ctx.graph.constant(value) is None and len(value.shape) < len(result):
            raise ctx.error(
                f"{ctx.op_type} broadcasts {value.name!r} of shape {value.shape} to rank "
                f"{len(result)}, which would move its batch axis off axis 0"
            )
    if result[0] != 1:
        raise ctx.error(
            f"{ctx.op_type} broadcasts shapes {' and '.join(map(str, shapes))} to {result}: "
            "a constant would spread across the batch axis (axis 0)"
        )


def _binary(ctx: NodeContext, op_class: type[Op]) -> list[Result]:
    a, b = ctx.value(0), ctx.value(1)
    _check_batch_broadcast(ctx, [a, b])
    return [ctx.emit(op_class, [a, b], output=0)]


# Opsets 1-6 broadcast with `broadcast`/`axis` attributes rather than numpy rules.
@converter("Add", since=7)
def convert_add(ctx: NodeContext) -> list[Result]:
    return _binary(ctx, ops.Add)


@converter("Sub", since=7)
def convert_sub(ctx: NodeContext) -> list[Result]:
    return _binary(ctx, ops.Sub)


@converter("Mul", since=7)
def convert_mul(ctx: NodeContext) -> list[Result]:
    return _binary(ctx, ops.Mul)


@converter("Div", since=7)
def convert_div(ctx: NodeContext) -> list[Result]:
    return _binary(ctx, ops.Div)


# -- matrix products ------------------------------------------------------------------------


@converter("Gemm")
def convert_gemm(ctx: NodeContext) -> list[Result]:
    """Y = alpha * A' @ B' + beta * C  ->  MatMul(A, alpha * B') [+ Add(beta * C)].

    alpha and the transpose of B are folded into the constant weight, so the IR sees the
    crossbar form x @ W (+ b) that `canonicalize` turns into Dense.
    """
    alpha = float(ctx.attr("alpha", 1.0))
    beta = float(ctx.attr("beta", 1.0))
    if int(ctx.attr("transA", 0)):
        a_array = ctx.constant(0)
        if a_array is None:
            raise ctx.error(
                f"transA=1 is supported only when A is a constant; A ({ctx.input_name(0)!r}) "
                "is computed at run time and transposing it would move its batch axis"
            )
        a = ctx.add_constant(f"{ctx.input_name(0)}.T", np.ascontiguousarray(a_array.T))
    else:
        a = ctx.value(0)
    b_array = ctx.weight(1, "operand B")
    if b_array.ndim != 2:
        raise ctx.error(f"operand B of Gemm must be 2-D, not of shape {b_array.shape}")
    trans_b = bool(int(ctx.attr("transB", 0)))
    if trans_b or alpha != 1.0:
        w = b_array.T if trans_b else b_array
        if alpha != 1.0:
            w = w * np.asarray(alpha, dtype=b_array.dtype)
        weight = ctx.add_constant(f"{ctx.input_name(1)}.weight", np.ascontiguousarray(w))
    else:
        weight = ctx.value(1)
    if not ctx.has_input(2):
        return [ctx.emit(ops.MatMul, [a, weight], output=0)]
    y = ctx.emit(ops.MatMul, [a, weight], hint="matmul")
    c_array = ctx.constant(2)
    if c_array is not None and beta != 1.0:
        bias = ctx.add_constant(
            f"{ctx.input_name(2)}.scaled", np.asarray(c_array * beta, dtype=c_array.dtype)
        )
    else:
        bias = ctx.value(2)
        if beta != 1.0:
            scale = ctx.add_constant("beta", np.asarray(beta, dtype=bias.type.dtype))
            bias = ctx.emit(ops.Mul, [bias, scale], hint="beta")
    _check_batch_broadcast(ctx, [y, bias])
    return [ctx.emit(ops.Add, [y, bias], output=0)]


@converter("MatMul")
def convert_matmul(ctx: NodeContext) -> list[Result]:
    """numpy matmul with a constant right operand (the crossbar weight)."""
    a_array, b_array = ctx.constant(0), ctx.constant(1)
    if a_array is not None and b_array is not None:
        # Folding: numpy's matmul is the definition, for every rank.
        return [np.matmul(a_array, b_array)]
    b = ctx.weight(1, "operand B")
    if b.ndim not in (1, 2):
        raise ctx.error(
            f"MatMul with a {b.ndim}-D weight of shape {b.shape} is not supported yet; "
            "the weight must be 2-D (K x N)"
        )
    a = ctx.value(0)
    if ctx.batch_axis and len(a.shape) < 2:
        raise ctx.error(
            f"MatMul of {a.name!r} of shape {a.shape} would sum over its batch axis (axis 0)"
        )
    if b.ndim == 2:
        return [ctx.emit(ops.MatMul, [a, ctx.value(1)], output=0)]
    # A 1-D right operand is a (K, 1) column whose axis numpy drops again after the product.
    column = ctx.add_constant(f"{ctx.input_name(1)}.column", b.reshape(-1, 1))
    y = ctx.emit(ops.MatMul, [a, column], hint="matmul")
    return [ctx.emit(ops.Reshape, [y], output=0, shape=y.shape[:-1])]


# -- softmax --------------------------------------------------------------------------------


def _softmax_axis_attr(axis: int, rank: int) -> int:
    """The IR form of a softmax axis: -1 for the last axis, else the non-negative index."""
    return -1 if axis == rank - 1 else axis


@converter("Softmax", since=1)
def convert_softmax_1(ctx: NodeContext) -> list[Result]:
    """Opsets 1-12: x is coerced to 2-D at `axis` (default 1) and normalised over dim 1,
    i.e. over all axes from `axis` on, flattened together.

    Flattening only the trailing axes gives the same softmax and keeps the leading (batch)
    axes in place: Reshape (.., prod(shape[axis:])) -> Softmax(-1) -> Reshape back.
    """
    x = ctx.value(0)
    rank = len(x.shape)
    axis = _axis(ctx, int(ctx.attr("axis", 1)), rank)
    if ctx.batch_axis and axis == 0:
        raise ctx.error(
            "Softmax at axis 0 (opset < 13: over all axes from 0 on) would normalise across "
            "the batch axis"
        )
    if axis == rank - 1:
        return [ctx.emit(ops.Softmax, [x], output=0, axis=-1)]
    flat = ctx.emit(ops.Reshape, [x], hint="flat", shape=(*x.shape[:axis], prod(x.shape[axis:])))
    y = ctx.emit(ops.Softmax, [flat], hint="softmax", axis=-1)
    return [ctx.emit(ops.Reshape, [y], output=0, shape=x.shape)]


@converter("Softmax", since=13)
def convert_softmax_13(ctx: NodeContext) -> list[Result]:
    """Opset 13 on: softmax along the single axis `axis` (default -1)."""
    x = ctx.value(0)
    rank = len(x.shape)
    axis = _axis(ctx, int(ctx.attr("axis", -1)), rank)
    if ctx.batch_axis and axis == 0:
        raise ctx.error("Softmax at axis 0 would normalise across the batch axis")
    return [ctx.emit(ops.Softmax, [x], output=0, axis=_softmax_axis_attr(axis, rank))]


# -- shape ops ------------------------------------------------------------------------------


@converter("Flatten")
def convert_flatten(ctx: NodeContext) -> list[Result]:
    """(d0..dn) -> (prod(d[:axis]), prod(d[axis:])), as a Reshape."""
    x = ctx.value(0)
    axis = _axis(ctx, int(ctx.attr("axis", 1)), len(x.shape), inclusive=True)
    outer, inner = prod(x.shape[:axis]), prod(x.shape[axis:])
    if ctx.batch_axis and axis == 0:
        raise ctx.error("Flatten at axis 0 would fold the batch axis into the features")
    if ctx.batch_axis and outer != 1:
        raise ctx.error(
            f"Flatten at axis {axis} would fold axes 1..{axis - 1} of shape {x.shape} into the "
            "batch axis"
        )
    return [ctx.emit(ops.Reshape, [x], output=0, shape=(outer, inner))]


def _reshape(ctx: NodeContext, spec: Sequence[int], allowzero: bool) -> list[Result]:
    """ONNX Reshape rules: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    x = ctx.value(0)
    shape: list[int] = []
    inferred: int | None = None
    for index, dim in enumerate(spec):
        if dim == -1:
            if inferred is not None:
                raise ctx.error(f"target shape {list(spec)} has more than one -1")
            inferred = index
            shape.append(1)
        elif dim == 0 and not allowzero:
            if index >= len(x.shape):
                raise ctx.error(
                    f"target shape {list(spec)} copies dimension {index} (0), but the input "
                    f"has shape {x.shape}"
                )
            shape.append(x.shape[index])
        elif dim < -1:
            raise ctx.error(f"target shape {list(spec)} has a negative dimension {dim}")
        else:
            shape.append(dim)
    size = prod(x.shape)
    if inferred is not None:
        known = prod(shape)
        if allowzero and 0 in spec:
            raise ctx.error(f"target shape {list(spec)} has both 0 (with allowzero=1) and -1")
        if known == 0 or size % known:
            raise ctx.error(f"cannot reshape {x.shape} to {list(spec)}")
        shape[inferred] = size // known
    if prod(shape) != size:
        raise ctx.error(f"cannot reshape {x.shape} ({size} elements) to {list(spec)}")
    if ctx.batch_axis:
        if not shape or shape[0] != 1:
            raise ctx.error(
                f"Reshape of {x.shape} to {list(spec)} gives {tuple(shape)}, which no longer "
                "has the batch axis first"
            )
        if ctx.batch_symbolic and spec[0] not in (0, -1) and inferred is not None:
            raise ctx.error(
                f"Reshape to {list(spec)} would fold the batch axis into dimension {inferred} "
                "(-1); write 0 or -1 for the leading dimension"
            )
    return [ctx.emit(ops.Reshape, [x], output=0, shape=tuple(shape))]


@converter("Reshape", since=1)
def convert_reshape_1(ctx: NodeContext) -> list[Result]:
    """Opsets 1-4: the target shape is the `shape` attribute."""
    spec = ctx.attr("shape")
    if spec is None:
        raise ctx.error("Reshape needs a 'shape' attribute")
    return _reshape(ctx, [int(d) for d in spec], allowzero=False)


@converter("Reshape", since=5)
def convert_reshape_5(ctx: NodeContext) -> list[Result]:
    """Opset 5 on: the target shape is input 1 (a constant here); `allowzero` from opset 14."""
    spec = ctx.constant(1)
    if spec is None:
        raise ctx.error(
            f"the target shape of Reshape ({ctx.input_name(1)!r}) is computed at run time; "
            "only constant shapes are supported"
        )
    if spec.ndim != 1 or not np.issubdtype(spec.dtype, np.integer):
        raise ctx.error(f"the target shape of Reshape must be a 1-D int64 tensor, not {spec!r}")
    return _reshape(ctx, [int(d) for d in spec], allowzero=bool(ctx.attr("allowzero", 0)))


# -- constants ------------------------------------------------------------------------------

_CONSTANT_ATTRS = (
    "value",
    "value_float",
    "value_floats",
    "value_int",
    "value_ints",
    "value_string",
    "value_strings",
    "sparse_value",
)


@converter("Constant")
def convert_constant(ctx: NodeContext) -> list[Result]:
    given = [name for name in _CONSTANT_ATTRS if ctx.has_attr(name)]
    if len(given) != 1:
        raise ctx.error(f"Constant needs exactly one value attribute, has {given or 'none'}")
    name = given[0]
    if name == "sparse_value":
        raise ctx.error("sparse constants (sparse_value) are not supported")
    if name in ("value_string", "value_strings"):
        raise ctx.error(f"string constants ({name}) are not supported")
    value = ctx.attr(name)
    if name == "value":
        try:
            return [numpy_helper.to_array(value)]
        except (ValueError, TypeError) as exc:
            raise ctx.error(f"cannot read the tensor of this Constant: {exc}") from None
    dtype = np.float32 if name.startswith("value_float") else np.int64
    return [np.asarray(value, dtype=dtype)]
