"""ONNX converters of the CNN op set: Conv, BatchNormalization, MaxPool, AveragePool,
GlobalAveragePool, LeakyRelu, LRN, and the layout ops Transpose, Squeeze and Unsqueeze.

Registered like converters.py (the importer imports this module). Window ops become the IR's
Conv and Pool with explicit pads (auto_pad resolved here, by ONNX's rules); `canonicalize`
takes them to crossbars and SIMD code (compiler/passes/canonicalize.py, then
compiler/codegen/convolution.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Value

from .registry import NodeContext, Result, converter


def _ints(ctx: NodeContext, name: str, count: int, default: int) -> tuple[int, ...]:
    values = ctx.attr(name)
    if values is None or len(values) == 0:
        return (default,) * count
    if len(values) != count:
        raise ctx.error(f"{name} {list(values)} needs {count} values")
    return tuple(int(v) for v in values)


def _window(ctx: NodeContext, x: Value, kernel: Sequence[int]) -> dict[str, Any]:
    """kernel, strides, dilations and explicit pads (auto_pad resolved) of a window op."""
    spatial = x.shape[2:]
    rank = len(spatial)
    if len(kernel) != rank:
        raise ctx.error(
            f"kernel {list(kernel)} does not match the {rank} spatial axes of {x.shape}"
        )
    strides = _ints(ctx, "strides", rank, 1)
    dilations = _ints(ctx, "dilations", rank, 1)
    auto_pad = str(ctx.attr("auto_pad", "NOTSET"))
    if auto_pad in ("NOTSET", ""):
        pads = _ints(ctx, "pads", 2 * rank, 0)
    elif auto_pad == "VALID":
        pads = (0,) * (2 * rank)
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for n, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        pads = (*begins, *ends)
    else:
        raise ctx.error(f"unknown auto_pad {auto_pad!r}")
    return {"kernel": tuple(int(k) for k in kernel), "strides": strides, "pads": pads,
            "dilations": dilations}  # fmt: skip


def _spatial_input(ctx: NodeContext) -> Value:
    x = ctx.value(0)
    if len(x.shape) < 3:
        raise ctx.error(f"{ctx.op_type} needs an input (N, C, spatial...), not {x.shape}")
    if len(x.shape) > 4:
        raise ctx.error(
            f"{ctx.op_type} over {len(x.shape) - 2} spatial axes is not supported yet (1-D and "
            "2-D are)"
        )
    return x


@converter("Conv")
def convert_conv(ctx: NodeContext) -> list[Result]:
    """Y = conv(X, W) + B (cross-correlation, NCHW), onto the IR's Conv."""
    x = _spatial_input(ctx)
    w = ctx.weight(1, "the kernel W")
    if w.ndim != len(x.shape):
        raise ctx.error(f"kernel W of shape {w.shape} does not match the input {x.shape}")
    shape = ctx.attr("kernel_shape")
    if shape is not None and tuple(shape) != w.shape[2:]:
        raise ctx.error(f"kernel_shape {list(shape)} does not match W of shape {w.shape}")
    bias = ctx.weight(2, "the bias B") if ctx.has_input(2) else np.zeros(w.shape[0], w.dtype)
    window = _window(ctx, x, w.shape[2:])
    weight = ctx.value(1)
    b = ctx.value(2) if ctx.has_input(2) else ctx.add_constant(f"{ctx.node.output[0]}.bias", bias)
    group = int(ctx.attr("group", 1))
    return [ctx.emit(ops.Conv, [x, weight, b], output=0, group=group, **window)]


@converter("BatchNormalization", since=7)
def convert_batch_normalization(ctx: NodeContext) -> list[Result]:
    """Inference: y = (x - mean) / sqrt(var + epsilon) * scale + B per channel (axis 1), as
    the IR's BatchNorm with scale and shift computed here (in float64)."""
    if int(ctx.attr("training_mode", 0)) or any(ctx.output_used(i) for i in (1, 2, 3, 4)):
        raise ctx.error("BatchNormalization in training mode is not supported (inference only)")
    if ctx.opset < 9 and int(ctx.attr("spatial", 1)) != 1:
        raise ctx.error("BatchNormalization with spatial=0 is not supported")
    x = ctx.value(0)
    scale, bias, mean, var = (
        ctx.weight(i, name).astype(np.float64).reshape(-1)
        for i, name in ((1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var"))
    )
    epsilon = float(np.float32(ctx.attr("epsilon", 1e-5)))
    if len(x.shape) < 2 or any(a.size != x.shape[1] for a in (scale, bias, mean, var)):
        raise ctx.error(f"BatchNormalization parameters do not match the channels of {x.shape}")
    factor = scale / np.sqrt(var + epsilon)
    base = ctx.node.output[0]
    return [
        ctx.emit(
            ops.BatchNorm,
            [
                x,
                ctx.add_constant(f"{base}.scale", factor),
                ctx.add_constant(f"{base}.shift", bias - mean * factor),
            ],
            output=0,
        )
    ]


def _pool(ctx: NodeContext, mode: str) -> list[Result]:
    x = _spatial_input(ctx)
    if ctx.output_used(1):
        raise ctx.error("the Indices output of MaxPool is not supported")
    if int(ctx.attr("storage_order", 0)):
        raise ctx.error("MaxPool with storage_order=1 is not supported")
    kernel = ctx.attr("kernel_shape")
    if not kernel:
        raise ctx.error(f"{ctx.op_type} needs kernel_shape")
    window = _window(ctx, x, [int(k) for k in kernel])
    return [
        ctx.emit(
            ops.Pool,
            [x],
            output=0,
            mode=mode,
            ceil_mode=int(ctx.attr("ceil_mode", 0)),
            count_include_pad=int(ctx.attr("count_include_pad", 0)),
            **window,
        )
    ]


@converter("MaxPool")
def convert_max_pool(ctx: NodeContext) -> list[Result]:
    return _pool(ctx, "max")


@converter("AveragePool")
def convert_average_pool(ctx: NodeContext) -> list[Result]:
    return _pool(ctx, "avg")


@converter("GlobalAveragePool")
def convert_global_average_pool(ctx: NodeContext) -> list[Result]:
    x = _spatial_input(ctx)
    rank = len(x.shape) - 2
    return [
        ctx.emit(ops.Pool, [x], output=0, mode="avg", kernel=tuple(x.shape[2:]),
                 strides=(1,) * rank, pads=(0,) * (2 * rank), dilations=(1,) * rank)
    ]  # fmt: skip


@converter("LeakyRelu")
def convert_leaky_relu(ctx: NodeContext) -> list[Result]:
    """y = x for x > 0, alpha * x otherwise, as relu(x) + alpha * (x - relu(x)): both terms
    are exact where the other is zero."""
    x = ctx.value(0)
    alpha = ctx.add_constant(
        f"{ctx.node.output[0]}.alpha", np.asarray(ctx.attr("alpha", 0.01), dtype=x.type.dtype)
    )
    positive = ctx.emit(ops.Relu, [x], hint="positive")
    negative = ctx.emit(ops.Sub, [x, positive], hint="negative")
    scaled = ctx.emit(ops.Mul, [negative, alpha], hint="scaled")
    return [ctx.emit(ops.Add, [positive, scaled], output=0)]


@converter("Transpose")
def convert_transpose(ctx: NodeContext) -> list[Result]:
    """Axes permuted by `perm` (default: reversed); the batch axis must stay first."""
    array = ctx.constant(0)
    rank = array.ndim if array is not None else len(ctx.value(0).shape)
    perm = [int(p) for p in (ctx.attr("perm") or range(rank - 1, -1, -1))]
    if sorted(perm) != list(range(rank)):
        raise ctx.error(f"perm {perm} is not a permutation of {rank} axes")
    if array is not None:
        return [np.transpose(array, perm)]
    if ctx.batch_axis and perm[0] != 0:
        raise ctx.error(f"Transpose with perm {perm} would move the batch axis (axis 0)")
    x = ctx.value(0)
    if perm == list(range(rank)):
        return [ctx.emit(ops.Identity, [x], output=0)]
    return [ctx.emit(ops.Transpose, [x], output=0, perm=tuple(perm))]


def _axes(ctx: NodeContext) -> list[int] | None:
    """The `axes` of Squeeze / Unsqueeze: attribute before opset 13, constant input 1 after."""
    if ctx.opset < 13:
        axes = ctx.attr("axes")
        return None if axes is None else [int(a) for a in axes]
    if not ctx.has_input(1):
        return None
    array = ctx.constant(1)
    if array is None:
        raise ctx.error(f"the axes of {ctx.op_type} are computed at run time; only constants are")
    return [int(a) for a in array.reshape(-1)]


def _reshaped(ctx: NodeContext, shape: Sequence[int]) -> list[Result]:
    array = ctx.constant(0)
    if array is not None:
        return [array.reshape(shape)]
    if ctx.batch_axis and (not shape or shape[0] != 1):
        raise ctx.error(f"{ctx.op_type} to shape {tuple(shape)} would move the batch axis")
    return [ctx.emit(ops.Reshape, [ctx.value(0)], output=0, shape=tuple(shape))]


def _shape_of(ctx: NodeContext) -> tuple[int, ...]:
    array = ctx.constant(0)
    return tuple(array.shape) if array is not None else ctx.value(0).shape


@converter("Squeeze")
def convert_squeeze(ctx: NodeContext) -> list[Result]:
    shape = _shape_of(ctx)
    axes = _axes(ctx)
    rank = len(shape)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    if any(not -rank <= a < rank for a in axes):
        raise ctx.error(f"axes {axes} are out of range for rank {rank}")
    axes = [a % rank for a in axes]
    if any(shape[a] != 1 for a in axes):
        raise ctx.error(f"Squeeze of axes {axes} of shape {shape}: only size-1 axes can go")
    if ctx.batch_axis and 0 in axes and ctx.constant(0) is None:
        raise ctx.error("Squeeze of axis 0 would remove the batch axis")
    return _reshaped(ctx, [d for i, d in enumerate(shape) if i not in axes])


@converter("Unsqueeze")
def convert_unsqueeze(ctx: NodeContext) -> list[Result]:
    shape = _shape_of(ctx)
    axes = _axes(ctx)
    if not axes:
        raise ctx.error("Unsqueeze needs axes")
    rank = len(shape) + len(axes)
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise ctx.error(f"axes {axes} are out of range or repeated for rank {rank}")
    inserted = {a % rank for a in axes}
    if ctx.batch_axis and 0 in inserted and ctx.constant(0) is None:
        raise ctx.error("Unsqueeze at axis 0 would move the batch axis")
    rest = iter(shape)
    return _reshaped(ctx, [1 if i in inserted else next(rest) for i in range(rank)])


@converter("LRN")
def convert_lrn(ctx: NodeContext) -> list[Result]:
    """Local response normalisation across channels (ONNX, AlexNet):
    y = x / (bias + alpha / size * sum of x^2 over the channel window) ^ beta, the window
    [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)] clipped to the channels. On the
    SIMD unit: the squares, `size` shifted copies of them added (Selects: the shift moves
    whole channel planes, zeros past the edges), then exp(beta * ln(.)) for the power."""
    x = _spatial_input(ctx)
    size = int(ctx.attr("size", 0))
    if size < 1:
        raise ctx.error(f"LRN needs a positive size, not {size}")
    alpha, beta = float(ctx.attr("alpha", 1e-4)), float(ctx.attr("beta", 0.75))
    bias = float(ctx.attr("bias", 1.0))
    squares = ctx.emit(ops.Mul, [x, x], hint="squares")
    channels = x.shape[1]
    index = np.arange(x.type.size, dtype=np.int64).reshape(x.shape)
    plane = int(np.prod(x.shape[2:], dtype=np.int64))
    lo = (size - 1) // 2
    total: Value | None = None
    for j in range(size):
        shift = j - lo  # channel c reads channel c + shift
        source = np.arange(channels) + shift
        valid = (source >= 0) & (source < channels)
        if not valid.any():
            continue
        mask = valid.reshape(1, -1, *([1] * (len(x.shape) - 2)))
        table = np.where(mask, index + shift * plane, -1)
        term = ctx.emit(ops.Select, [squares], hint="window", index=table, fill=0.0)
        total = term if total is None else ctx.emit(ops.Add, [total, term], hint="window_sum")
    assert total is not None  # j = lo always reads the channel itself
    scaled = ctx.emit(ops.Mul, [total, ctx.add_constant("lrn_scale", np.array(alpha / size))])
    base = ctx.emit(ops.Add, [scaled, ctx.add_constant("lrn_bias", np.array(bias))])
    logs = ctx.emit(ops.Log, [base], hint="log")
    scaled_logs = ctx.emit(ops.Mul, [logs, ctx.add_constant("lrn_beta", np.array(beta))])
    power = ctx.emit(ops.Exp, [scaled_logs], hint="power")
    return [ctx.emit(ops.Div, [x, power], output=0)]
