"""ONNX op -> graph IR converters: one `convert_<op>` per op type and opset version.

Registered with `@converter` in registry.CONVERTERS; the importer calls them in graph order
with a NodeContext. Each lowers one node onto the IR op set (compiler/ir/ops.py) with ONNX
semantics. Nodes whose operands are all constants run through the same converters on a scratch
graph and are folded, so a converter only has to describe the computation once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from math import prod

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Op, Value

from .registry import NodeContext, Result, converter

log = logging.getLogger(__name__)


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


@converter("Erf")
def convert_erf(ctx: NodeContext) -> list[Result]:
    return _unary(ctx, ops.Erf)


@converter("Log")
def convert_log(ctx: NodeContext) -> list[Result]:
    return _unary(ctx, ops.Log)


@converter("Sqrt")
def convert_sqrt(ctx: NodeContext) -> list[Result]:
    return _unary(ctx, ops.Sqrt)


@converter("Exp")
def convert_exp(ctx: NodeContext) -> list[Result]:
    return _unary(ctx, ops.Exp)


@converter("Gelu", since=20)
def convert_gelu(ctx: NodeContext) -> list[Result]:
    """approximate="none": 0.5 x (1 + erf(x / sqrt 2)); "tanh":
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))); elementwise Mul/Add on the SIMD unit."""
    approximate = ctx.attr("approximate", "none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate not in ("none", "tanh"):
        raise ctx.error(f"Gelu approximate={approximate!r} is unknown; expected 'none' or 'tanh'")
    x = ctx.value(0)

    def scalar(name: str, value: float) -> Value:
        return ctx.add_constant(name, np.asarray(value, dtype=x.type.dtype))

    if approximate == "none":
        inner = ctx.emit(ops.Mul, [x, scalar("gelu.rsqrt2", 1 / np.sqrt(2.0))], hint="scaled")
        curve = ctx.emit(ops.Erf, [inner], hint="erf")
    else:
        cube = ctx.emit(ops.Mul, [ctx.emit(ops.Mul, [x, x], hint="square"), x], hint="cube")
        cubic = ctx.emit(ops.Mul, [cube, scalar("gelu.cubic", 0.044715)], hint="cubic")
        inner = ctx.emit(ops.Add, [x, cubic], hint="inner")
        scaled = ctx.emit(ops.Mul, [inner, scalar("gelu.scale", np.sqrt(2 / np.pi))], hint="arg")
        curve = ctx.emit(ops.Tanh, [scaled], hint="tanh")
    one_plus = ctx.emit(ops.Add, [curve, scalar("gelu.one", 1.0)], hint="one_plus")
    half_x = ctx.emit(ops.Mul, [x, scalar("gelu.half", 0.5)], hint="half")
    return [ctx.emit(ops.Mul, [half_x, one_plus], output=0)]


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


def _variadic_sum(ctx: NodeContext) -> Value:
    """Sum of all operands (numpy broadcasting), as a chain of Adds in operand order."""
    operands = [ctx.value(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    if not operands:
        raise ctx.error(f"{ctx.op_type} needs at least one input")
    _check_batch_broadcast(ctx, operands)
    total = operands[0]
    for i, value in enumerate(operands[1:], start=1):
        last = i == len(operands) - 1 and ctx.op_type == "Sum"
        total = ctx.emit(ops.Add, [total, value], output=0 if last else None, hint="sum")
    if len(operands) == 1 and ctx.op_type == "Sum":
        total = ctx.emit(ops.Identity, [total], output=0)
    return total


@converter("Sum", since=8)
def convert_sum(ctx: NodeContext) -> list[Result]:
    return [_variadic_sum(ctx)]


@converter("Min", since=8)
def convert_min(ctx: NodeContext) -> list[Result]:
    """The smallest operand elementwise (numpy broadcasting), as a chain of Mins; NaN wins,
    as in onnxruntime (np.minimum)."""
    operands = [ctx.value(i) for i in range(ctx.num_inputs) if ctx.has_input(i)]
    if not operands:
        raise ctx.error("Min needs at least one input")
    _check_batch_broadcast(ctx, operands)
    if len(operands) == 1:
        return [ctx.emit(ops.Identity, operands, output=0)]
    result = operands[0]
    for i, value in enumerate(operands[1:], start=1):
        last = i == len(operands) - 1
        result = ctx.emit(ops.Min, [result, value], output=0 if last else None, hint="min")
    return [result]


@converter("Mean", since=8)
def convert_mean(ctx: NodeContext) -> list[Result]:
    count = sum(1 for i in range(ctx.num_inputs) if ctx.has_input(i))
    total = _variadic_sum(ctx)
    scale = ctx.add_constant(f"{ctx.node.output[0]}.count", np.array(1.0 / max(count, 1)))
    return [ctx.emit(ops.Mul, [total, scale], output=0)]


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
    """numpy matmul. A constant 2-D (or 1-D) right operand is the crossbar weight; a product
    of two activations (attention) runs on the vector unit, both operands of rank >= 2."""
    a_array, b_array = ctx.constant(0), ctx.constant(1)
    if a_array is not None and b_array is not None:
        # Folding: numpy's matmul is the definition, for every rank.
        return [np.matmul(a_array, b_array)]
    a = ctx.value(0)
    if ctx.batch_axis and len(a.shape) < 2:
        raise ctx.error(
            f"MatMul of {a.name!r} of shape {a.shape} would sum over its batch axis (axis 0)"
        )
    if b_array is None or b_array.ndim > 2:
        return [_activation_matmul(ctx, a, ctx.value(1))]
    if b_array.ndim == 2:
        return [ctx.emit(ops.MatMul, [a, ctx.value(1)], output=0)]
    # A 1-D right operand is a (K, 1) column whose axis numpy drops again after the product.
    column = ctx.add_constant(f"{ctx.input_name(1)}.column", b_array.reshape(-1, 1))
    y = ctx.emit(ops.MatMul, [a, column], hint="matmul")
    return [ctx.emit(ops.Reshape, [y], output=0, shape=y.shape[:-1])]


def _activation_matmul(ctx: NodeContext, a: Value, b: Value) -> Value:
    """A product the vector unit computes (compiler/codegen/matmul.py); operands of rank >= 2 and,
    with a batch axis, of equal rank so that both keep it first."""
    if len(a.shape) < 2 or len(b.shape) < 2:
        raise ctx.error(
            f"MatMul of {a.name!r} {a.shape} by {b.name!r} {b.shape}: a product of run-time "
            "operands needs both of rank >= 2 (1-D operands are not supported yet)"
        )
    if ctx.batch_axis and ctx.graph.constant(b) is None and len(b.shape) == 2:
        raise ctx.error(
            f"MatMul of {a.name!r} {a.shape} by {b.name!r} {b.shape} would sum over the batch "
            f"axis (axis 0) of {b.name!r}"
        )
    if ctx.batch_axis and len(a.shape) != len(b.shape):
        raise ctx.error(
            f"MatMul of {a.name!r} {a.shape} by {b.name!r} {b.shape} would broadcast one "
            "operand's batch axis (axis 0) against another axis"
        )
    for operand in (a, b):
        if ctx.batch_axis and ctx.graph.constant(operand) is not None and operand.shape[0] != 1:
            raise ctx.error(
                f"MatMul by the constant {operand.name!r} of shape {operand.shape} would spread "
                "it across the batch axis (axis 0); its leading axis must be 1"
            )
    return ctx.emit(ops.MatMul, [a, b], output=0)


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


# -- reductions -----------------------------------------------------------------------------


def _reduce(ctx: NodeContext, mode: str, axes_input: bool) -> list[Result]:
    """Reduce over `axes` (an attribute before opset 13/18, then an optional constant input);
    keepdims defaults to 1; no axes means all of them unless noop_with_empty_axes."""
    x = ctx.value(0)
    rank = len(x.shape)
    if axes_input:
        if ctx.has_input(1):
            array = ctx.constant(1)
            if array is None:
                raise ctx.error(
                    f"{ctx.op_type}'s axes ({ctx.input_name(1)!r}) are computed at run time; "
                    "only constant axes are supported"
                )
            axes = [int(a) for a in np.asarray(array).reshape(-1)]
        else:
            axes = []
    else:
        axes = [int(a) for a in ctx.attr("axes", None) or []]
    if not axes and int(ctx.attr("noop_with_empty_axes", 0)):
        return [ctx.emit(ops.Identity, [x], output=0)]
    normalised = sorted({_axis(ctx, a, rank) for a in axes} if axes else range(rank))
    if ctx.batch_axis and 0 in normalised:
        raise ctx.error(f"{ctx.op_type} over axis 0 would reduce across the batch axis")
    keepdims = int(ctx.attr("keepdims", 1))
    return [
        ctx.emit(ops.Reduce, [x], output=0, mode=mode, axes=tuple(normalised), keepdims=keepdims)
    ]


@converter("ReduceSum", since=1)
def convert_reduce_sum_1(ctx: NodeContext) -> list[Result]:
    return _reduce(ctx, "sum", axes_input=False)


@converter("ReduceSum", since=13)
def convert_reduce_sum_13(ctx: NodeContext) -> list[Result]:
    return _reduce(ctx, "sum", axes_input=True)


@converter("ReduceMean", since=1)
def convert_reduce_mean_1(ctx: NodeContext) -> list[Result]:
    return _reduce(ctx, "mean", axes_input=False)


@converter("ReduceMean", since=18)
def convert_reduce_mean_18(ctx: NodeContext) -> list[Result]:
    return _reduce(ctx, "mean", axes_input=True)


@converter("ReduceMax", since=1)
def convert_reduce_max_1(ctx: NodeContext) -> list[Result]:
    return _reduce(ctx, "max", axes_input=False)


@converter("ReduceMax", since=18)
def convert_reduce_max_18(ctx: NodeContext) -> list[Result]:
    return _reduce(ctx, "max", axes_input=True)


# -- normalisation --------------------------------------------------------------------------


@converter("LayerNormalization", since=17)
def convert_layer_normalization(ctx: NodeContext) -> list[Result]:
    """Normalise over the axes from `axis` (default -1) on, with `epsilon` (default 1e-5),
    then scale and (optional) bias. The statistics are computed in float64 whatever
    stash_type says. The optional Mean and InvStdDev outputs, when used, are computed again
    by their own Reduce/Sub/Mul/Sqrt ops (they cost their own SIMD work)."""
    x = ctx.value(0)
    rank = len(x.shape)
    axis = _axis(ctx, int(ctx.attr("axis", -1)), rank)
    if ctx.batch_axis and axis == 0:
        raise ctx.error("LayerNormalization at axis 0 would normalise across the batch axis")
    scale = ctx.value(1)
    if ctx.has_input(2):
        bias = ctx.value(2)
    else:
        bias = ctx.add_constant("bias", np.zeros((), dtype=x.type.dtype))
    for operand in (scale, bias):
        if ctx.batch_axis and ctx.graph.constant(operand) is None:
            raise ctx.error(
                f"LayerNormalization's {operand.name!r} is computed at run time; with a batch "
                "axis only constant scale and bias are supported"
            )
    epsilon = float(ctx.attr("epsilon", 1e-5))
    results: list[Result] = [
        ctx.emit(ops.LayerNorm, [x, scale, bias], output=0, axis=axis, epsilon=epsilon)
    ]
    if not (ctx.output_used(1) or ctx.output_used(2)):
        return results
    axes = tuple(range(axis, rank))
    mean = ctx.emit(ops.Reduce, [x], output=1, mode="mean", axes=axes, keepdims=1)
    results.append(mean)
    if ctx.output_used(2):
        centred = ctx.emit(ops.Sub, [x, mean], hint="centred")
        squares = ctx.emit(ops.Mul, [centred, centred], hint="squares")
        var = ctx.emit(ops.Reduce, [squares], hint="var", mode="mean", axes=axes, keepdims=1)
        eps = ctx.add_constant("epsilon", np.asarray(epsilon, dtype=x.type.dtype))
        std = ctx.emit(ops.Sqrt, [ctx.emit(ops.Add, [var, eps], hint="var_eps")], hint="std")
        one = ctx.add_constant("one", np.ones(std.shape, dtype=x.type.dtype))
        results.append(ctx.emit(ops.Div, [one, std], output=2))
    return results


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
    """ONNX Reshape rules: 0 copies the input dim (unless allowzero), one -1 is inferred.

    With a fixed batch N, a target that starts with N keeps the batch axis: row-major, the
    result's row i is then the input's sample i."""
    x = ctx.value(0)
    if ctx.fixed_batch is not None and list(spec[:1]) == [ctx.fixed_batch]:
        spec = [x.shape[0], *spec[1:]]
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
    dims = [int(d) for d in spec]
    allowzero = bool(ctx.attr("allowzero", 0))
    if ctx.batch_sized(1) and dims[:1] == [1] and not allowzero:
        dims[0] = 0  # the batch entry of a folded Shape: copy the batch axis, whatever N is
    return _reshape(ctx, dims, allowzero=allowzero)


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


# -- argmax, casts and clipping (what skl2onnx puts around its ONNX-ML ops) -----------------


@converter("ArgMax")
def convert_argmax(ctx: NodeContext) -> list[Result]:
    """Index (int64) of the first maximum along `axis` (default 0), kept as size 1 when
    `keepdims` (default 1). select_last_index=1 (opset 12 on) is not supported."""
    x = ctx.value(0)
    rank = len(x.shape)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), rank)
    if ctx.batch_axis and axis == 0:
        raise ctx.error("ArgMax at axis 0 would compare samples across the batch axis")
    if int(ctx.attr("select_last_index", 0)):
        raise ctx.error(
            "ArgMax with select_last_index=1 (the last of equal maxima) is not supported; "
            "the IR's ArgMax gives the first"
        )
    keepdims = int(ctx.attr("keepdims", 1))
    last = -1 if axis == rank - 1 else axis  # the IR's form of the last axis, as for Softmax
    return [ctx.emit(ops.ArgMax, [x], output=0, axis=last, keepdims=keepdims)]


@converter("Cast")
def convert_cast(ctx: NodeContext) -> list[Result]:
    """Between float types, or between integer types: the value passes through (the SIMD unit
    computes in float64 and the binary stores float32 or int64 outputs). Integers to floats go
    through an exact product with 1.0, which gives the result its float type. Floats to
    integers (which truncate), and bool or string types, are not supported."""
    to = ctx.attr("to")
    try:
        code = TensorProto.DataType.Value(to.upper()) if isinstance(to, str) else int(to)
        target = np.dtype(helper.tensor_dtype_to_np_dtype(code))
    except (KeyError, ValueError, TypeError):
        raise ctx.error(f"Cast to {to!r} is not supported") from None
    if target.kind not in "iuf":
        raise ctx.error(f"Cast to {target} is not supported; only numeric types are")
    array = ctx.constant(0)
    if array is not None:
        if array.dtype.kind not in "iufb":
            raise ctx.error(f"Cast of a constant of type {array.dtype} is not supported")
        return [array.astype(target)]
    x = ctx.value(0)
    source = np.dtype(x.type.dtype)
    if source.kind == "f" and target.kind != "f":
        raise ctx.error(
            f"Cast from {source} to {target} truncates towards zero, which the IR has no op for"
        )
    if source.kind != "f" and target.kind == "f":
        one = ctx.add_constant(f"{ctx.input_name(0)}.one", np.ones((), dtype=target))
        return [ctx.emit(ops.Mul, [one, x], output=0)]
    return [ctx.emit(ops.Identity, [x], output=0)]


def _clip_bound(ctx: NodeContext, index: int, attr: str, default: float) -> float | None:
    """A Clip bound: input `index` (opset 11 on) or attribute `attr` (opsets 6-10); None when
    absent or infinite (no bound)."""
    if ctx.opset >= 11:
        if not ctx.has_input(index):
            return None
        array = ctx.constant(index)
        if array is None:
            raise ctx.error(
                f"the {attr} bound of Clip ({ctx.input_name(index)!r}) is computed at run time; "
                "only constant bounds are supported"
            )
        if array.size != 1:
            raise ctx.error(f"the {attr} bound of Clip must be a scalar, not {array.shape}")
        value = float(array.reshape(()))
    else:
        value = float(ctx.attr(attr, default))
    return None if abs(value) >= float(np.finfo(np.float32).max) else value


def _clip(ctx: NodeContext) -> list[Result]:
    low = _clip_bound(ctx, 1, "min", -float(np.finfo(np.float32).max))
    high = _clip_bound(ctx, 2, "max", float(np.finfo(np.float32).max))
    array = ctx.constant(0)
    if array is not None:
        lo = -np.inf if low is None else low
        hi = np.inf if high is None else high
        return [np.minimum(np.maximum(array, lo), hi).astype(array.dtype)]
    x = ctx.value(0)
    dtype = np.dtype(x.type.dtype)
    if low is not None and high is not None and low > high:
        raise ctx.error(
            f"Clip with min {low} > max {high} (every value becomes max) is not supported"
        )

    def scalar(hint: str, value: float) -> Value:
        return ctx.add_constant(f"{ctx.node.output[0]}.{hint}", np.asarray(value, dtype=dtype))

    # No min/max op in the IR; relu is a SIMD op:
    # clip(x, lo, hi) = lo + relu(x - lo) - relu(x - hi);  max(x, lo) = lo + relu(x - lo);
    # min(x, hi) = hi - relu(hi - x).
    if low is None and high is None:
        return [ctx.emit(ops.Identity, [x], output=0)]
    if high is None:
        assert low is not None
        above = ctx.emit(ops.Relu, [ctx.emit(ops.Sub, [x, scalar("min", low)])], hint="above")
        return [ctx.emit(ops.Add, [above, scalar("min", low)], output=0)]
    if low is None:
        below = ctx.emit(ops.Relu, [ctx.emit(ops.Sub, [scalar("max", high), x])], hint="below")
        return [ctx.emit(ops.Sub, [scalar("max", high), below], output=0)]
    above = ctx.emit(ops.Relu, [ctx.emit(ops.Sub, [x, scalar("min", low)])], hint="above")
    over = ctx.emit(ops.Relu, [ctx.emit(ops.Sub, [x, scalar("max", high)])], hint="over")
    span = ctx.emit(ops.Sub, [above, over], hint="span")
    return [ctx.emit(ops.Add, [span, scalar("min", low)], output=0)]


@converter("Clip", since=6)
def convert_clip_6(ctx: NodeContext) -> list[Result]:
    """Opsets 6-10: bounds are the `min` and `max` attributes."""
    return _clip(ctx)


@converter("Clip", since=11)
def convert_clip_11(ctx: NodeContext) -> list[Result]:
    """Opset 11 on: bounds are the optional inputs 1 and 2 (constants here)."""
    return _clip(ctx)


# -- ONNX-ML (domain ai.onnx.ml): linear models, scalers, as skl2onnx exports them ----------

ML_DOMAIN = "ai.onnx.ml"


def _float_list(ctx: NodeContext, name: str) -> np.ndarray | None:
    return np.asarray(ctx.attr(name), dtype=np.float32) if ctx.has_attr(name) else None


def _post_transform(ctx: NodeContext, supported: Sequence[str]) -> str:
    post = str(ctx.attr("post_transform", "NONE"))
    if post not in supported:
        raise ctx.error(
            f"post_transform {post!r} of {ctx.op_type} is not supported; supported: "
            f"{', '.join(supported)}"
        )
    return post


def _linear_weights(
    ctx: NodeContext, x: Value, rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) with W of shape (features, rows) from `coefficients` (rows x features, row-major)
    and `intercepts` (rows values, zeros when absent)."""
    features = x.shape[-1]
    coefficients = _float_list(ctx, "coefficients")
    if coefficients is None or coefficients.size == 0:
        raise ctx.error(f"{ctx.op_type} needs the 'coefficients' attribute")
    if coefficients.size % features or (rows is not None and coefficients.size != rows * features):
        expected = f"{rows} x {features}" if rows is not None else f"a multiple of {features}"
        raise ctx.error(
            f"{coefficients.size} coefficients do not fit {expected} (the input has "
            f"{features} features)"
        )
    w = coefficients.reshape(-1, features).T
    intercepts = _float_list(ctx, "intercepts")
    if intercepts is None or intercepts.size == 0:
        intercepts = np.zeros(w.shape[1], dtype=np.float32)
    if intercepts.size != w.shape[1]:
        raise ctx.error(f"{intercepts.size} intercepts for {w.shape[1]} rows of coefficients")
    return np.ascontiguousarray(w), intercepts


def _dense(
    ctx: NodeContext,
    x: Value,
    w: np.ndarray,
    b: np.ndarray,
    *,
    output: int | None = None,
    hint: str = "",
) -> Value:
    base = ctx.node.output[0] if ctx.node.output else ctx.loc.node
    weight = ctx.add_constant(f"{base}.{hint or 'dense'}.weight", np.ascontiguousarray(w))
    bias = ctx.add_constant(f"{base}.{hint or 'dense'}.bias", np.ascontiguousarray(b))
    return ctx.emit(ops.Dense, [x, weight, bias], output=output, hint=hint, activation="none")


def _set_classes(ctx: NodeContext, labels: Sequence[int | str]) -> None:
    """Record the class labels in the graph's metadata (as the scikit-learn frontend does)."""
    text = json.dumps(list(labels))
    previous = ctx.graph.meta.get("classes")
    if previous is not None and previous != text:
        raise ctx.error(f"class labels {text} differ from those of another node ({previous})")
    ctx.graph.meta["classes"] = text


def _affine(labels: Sequence[int | str]) -> tuple[int, int] | None:
    """(first, step) when labels[i] == first + step * i for integer labels the SIMD unit's
    float64 arithmetic holds exactly; None otherwise (strings, other integers)."""
    if not labels or not all(isinstance(v, int) for v in labels):
        return None
    values = np.asarray(labels, dtype=np.int64)
    step = int(values[1] - values[0]) if values.size > 1 else 1
    exact = np.abs(values).max() < 2**53
    if exact and step != 0 and np.array_equal(values, values[0] + step * np.arange(values.size)):
        return int(values[0]), step
    return None


def _labels_of(ctx: NodeContext, index: Value, labels: Sequence[int | str], output: int) -> Value:
    """labels[index]: computed exactly for affine integer labels (0..K-1 among them).

    Other labels (strings, or integers in no arithmetic progression) would need a gather the IR
    has no op for; the output is then the int64 index into graph.meta["classes"], the contract
    of the scikit-learn frontend, where a caller maps it back.
    """
    _set_classes(ctx, labels)
    affine = _affine(labels)
    if affine is None:
        log.info(
            "%s: output %r holds the index into graph.meta['classes'], not the label itself",
            ctx.loc,
            ctx.node.output[output],
        )
        return ctx.emit(ops.Identity, [index], output=output)
    first, step = affine
    value = index
    if step != 1:
        factor = ctx.add_constant(f"{ctx.node.output[output]}.step", np.asarray(step))
        value = ctx.emit(ops.Mul, [value, factor], hint="step")
    if first != 0:
        offset = ctx.add_constant(f"{ctx.node.output[output]}.first", np.asarray(first))
        value = ctx.emit(ops.Add, [value, offset], hint="first")
    return ctx.emit(ops.Identity, [value], output=output)


def _class_labels(ctx: NodeContext) -> list[int | str]:
    ints = ctx.attr("classlabels_ints") or []
    strings = ctx.attr("classlabels_strings") or []
    if bool(ints) == bool(strings):
        raise ctx.error(
            f"{ctx.op_type} needs exactly one of classlabels_ints and classlabels_strings"
        )
    if strings:
        return [str(s) for s in strings]
    return [int(v) for v in ints]


@converter("LinearClassifier", domain=ML_DOMAIN)
def convert_linear_classifier(ctx: NodeContext) -> list[Result]:
    """scores = X @ coefficients.T + intercepts (one row of coefficients per score column),
    then post_transform; label = the class of the first largest raw score.

    With one score column s and two labels, the label is classlabels[1] when s > 0, and the
    scores are, as onnxruntime gives them, [1 - s, s] (NONE) or [sigmoid(-s), sigmoid(s)]
    (LOGISTIC). The label is the argmax of [-s, s], which is exactly that rule (see the
    scikit-learn frontend's _signed_pair). SOFTMAX_ZERO (which skips zero scores) needs a
    select and PROBIT an inverse erf, which the IR has neither of; `multi_class` changes
    nothing (onnxruntime ignores it too).
    """
    x = ctx.features(0)
    labels = _class_labels(ctx)
    post = _post_transform(ctx, ("NONE", "LOGISTIC", "SOFTMAX"))
    w, b = _linear_weights(ctx, x)
    rows = w.shape[1]
    if rows == 1:
        if len(labels) != 2:
            raise ctx.error(f"one row of coefficients for {len(labels)} class labels; expected 2")
        if post == "SOFTMAX":
            raise ctx.error(
                "SOFTMAX over a single score column is ambiguous (onnxruntime gives [1 - s, s], "
                "the ONNX reference softmax([-s, s])) and not supported"
            )
        pair = _dense(ctx, x, np.hstack([-w, w]), np.concatenate([-b, b]), hint="signed")
        if post == "LOGISTIC":
            scores = ctx.emit(ops.Sigmoid, [pair], output=1)
        else:
            scores = _dense(ctx, x, np.hstack([-w, w]), np.concatenate([1 - b, b]), output=1)
        index = ctx.emit(ops.ArgMax, [pair], hint="index", axis=-1, keepdims=0)
        return [_labels_of(ctx, index, labels, 0), scores]
    if len(labels) != rows:
        raise ctx.error(f"{rows} rows of coefficients for {len(labels)} class labels")
    raw = _dense(ctx, x, w, b, output=1 if post == "NONE" else None, hint="scores")
    index = ctx.emit(ops.ArgMax, [raw], hint="index", axis=-1, keepdims=0)
    if post == "LOGISTIC":
        scores = ctx.emit(ops.Sigmoid, [raw], output=1)
    elif post == "SOFTMAX":
        scores = ctx.emit(ops.Softmax, [raw], output=1, axis=-1)
    else:
        scores = raw
    return [_labels_of(ctx, index, labels, 0), scores]


@converter("LinearRegressor", domain=ML_DOMAIN)
def convert_linear_regressor(ctx: NodeContext) -> list[Result]:
    """Y = X @ coefficients.T + intercepts, `targets` columns. Only post_transform NONE:
    onnxruntime ignores the others for one target and applies them for several."""
    x = ctx.features(0)
    _post_transform(ctx, ("NONE",))
    w, b = _linear_weights(ctx, x, int(ctx.attr("targets", 1)))
    return [_dense(ctx, x, w, b, output=0)]


@converter("Scaler", domain=ML_DOMAIN)
def convert_scaler(ctx: NodeContext) -> list[Result]:
    """Y = (X - offset) * scale per feature (one value broadcasts to every feature), as SIMD
    arithmetic in front of the crossbars (see the scikit-learn frontend for why not folded)."""
    x = ctx.features(0)
    features = x.shape[-1]
    y = x
    for attr, neutral, op_class in (("offset", 0.0, ops.Sub), ("scale", 1.0, ops.Mul)):
        values = _float_list(ctx, attr)
        if values is None or np.all(values == neutral):
            continue
        if values.size not in (1, features):
            raise ctx.error(f"{values.size} {attr} values for {features} features")
        constant = ctx.add_constant(f"{ctx.node.output[0]}.{attr}", values.reshape(-1))
        y = ctx.emit(op_class, [y, constant], hint=attr)
    return [ctx.emit(ops.Identity, [y], output=0)]


@converter("Normalizer", domain=ML_DOMAIN)
def convert_normalizer(ctx: NodeContext) -> list[Result]:
    """Only L1 of a softmax output, which sums to 1 already (skl2onnx puts it after a
    multinomial LogisticRegression): it passes through. Other norms, or inputs, need a row
    reduction the IR has no op for yet."""
    norm = str(ctx.attr("norm", "MAX"))
    array = ctx.constant(0)
    if array is not None and array.ndim == 2:
        reduce = {
            "MAX": lambda a: np.abs(a).max(axis=1, keepdims=True),
            "L1": lambda a: np.abs(a).sum(axis=1, keepdims=True),
            "L2": lambda a: np.sqrt(np.square(a).sum(axis=1, keepdims=True)),
        }
        if norm in reduce:
            return [(array / np.maximum(reduce[norm](array), 1e-30)).astype(np.float32)]
    x = ctx.value(0)
    source = x.producer
    while isinstance(source, ops.Identity):
        source = source.inputs[0].producer
    if norm == "L1" and isinstance(source, ops.Softmax):
        return [ctx.emit(ops.Identity, [x], output=0)]
    raise ctx.error(
        f"Normalizer with norm {norm!r} of {x.name!r} is not supported: it needs a row "
        "reduction, which the IR has no op for yet (only L1 of a softmax output, already "
        "normalised, is)"
    )


@converter("ArrayFeatureExtractor", domain=ML_DOMAIN)
def convert_array_feature_extractor(ctx: NodeContext) -> list[Result]:
    """Y = X[..., indices] (a 1-D X gives shape (1, number of indices), as in onnxruntime).

    Two forms occur in exported models: class labels looked up by a computed argmax
    (skl2onnx's MLPClassifier), done as in LinearClassifier; and constant columns of a
    computed X (a binary LinearSVC's positive score), done by selecting the same columns of
    the linear layer that computes X, so they are bit for bit its columns.
    """
    data, indices = ctx.constant(0), ctx.constant(1)
    if indices is not None:
        if indices.dtype.kind not in "iu":
            raise ctx.error(f"ArrayFeatureExtractor indices must be integers, not {indices.dtype}")
        flat = indices.reshape(-1).astype(np.int64)
        width = data.shape[-1] if data is not None else ctx.value(0).shape[-1]
        if flat.size == 0 or flat.min() < -width or flat.max() >= width:
            raise ctx.error(f"indices {flat.tolist()} are out of range for {width} columns")
        flat = flat % width
        if data is not None:  # folding
            taken = np.take(data, flat, axis=-1)
            return [taken.reshape(1, -1) if data.ndim == 1 else taken]
        return [_select_columns(ctx, ctx.value(0), flat)]
    if data is None:
        raise ctx.error(
            f"ArrayFeatureExtractor of {ctx.input_name(0)!r} at indices computed at run time "
            "needs a gather, which the IR has no op for"
        )
    index = ctx.value(1)
    if np.dtype(index.type.dtype).kind not in "iu":
        raise ctx.error(f"ArrayFeatureExtractor indices must be integers, not {index.type.dtype}")
    if data.ndim != 1:
        raise ctx.error(
            f"looking up computed indices in a constant of shape {data.shape} is not "
            "supported; only 1-D tables (class labels) are"
        )
    labels: list[int | str]
    if data.dtype.kind in "iu":
        labels = [int(v) for v in data]
    elif data.dtype.kind in "OSU":
        try:
            labels = [v.decode() if isinstance(v, bytes) else str(v) for v in data]
        except UnicodeDecodeError:
            raise ctx.error(
                f"the labels of {ctx.input_name(0)!r} are not UTF-8 text; ONNX strings are UTF-8"
            ) from None
    else:
        raise ctx.error(f"looking up computed indices in a {data.dtype} table is not supported")
    shape = (1, index.type.size)
    if index.shape != shape:
        index = ctx.emit(ops.Reshape, [index], hint="row", shape=shape)
    return [_labels_of(ctx, index, labels, 0)]


def _select_columns(ctx: NodeContext, x: Value, columns: np.ndarray) -> Value:
    """x[..., columns] for x computed by a Dense op: the same Dense with only those columns
    (its activation is elementwise, so it commutes with the selection)."""
    dense = x.producer
    if not isinstance(dense, ops.Dense) or isinstance(dense, ops.QDense):
        what = f"by {dense.kind}" if dense is not None else "as a graph input"
        raise ctx.error(
            f"ArrayFeatureExtractor selects columns of {x.name!r}, computed {what}; only "
            "columns of a linear model's scores can be selected (the IR has no gather op)"
        )
    source, w_value, b_value = dense.inputs
    w, b = ctx.graph.constant(w_value), ctx.graph.constant(b_value)
    assert w is not None and b is not None, "a Dense op has constant weights (verified)"
    base = ctx.node.output[0]
    weight = ctx.add_constant(f"{base}.weight", np.ascontiguousarray(w[:, columns]))
    bias = ctx.add_constant(f"{base}.bias", np.ascontiguousarray(b[columns]))
    return ctx.emit(
        ops.Dense,
        [source, weight, bias],
        output=0,
        activation=dense.attrs.get("activation", "none"),
    )
