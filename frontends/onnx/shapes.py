"""ONNX converters of shape arithmetic and data movement: Shape, Size, ConstantOfShape, Range,
Gather, Concat, Slice, Pad, Split, Expand and Tile.

Registered like converters.py (the importer imports this module). Shapes are static, so shape
arithmetic folds at import: Shape of an activation is its per-sample shape (a symbolic batch
axis counts 1, as everywhere in the IR; a fixed batch its own N), and the Gather / Concat /
Unsqueeze chains that exporters build from it become constants. With a symbolic batch, the
importer remembers which constants came from such a Shape (`NodeContext.batch_sized`): a
Reshape whose target starts with that 1 copies the batch axis, as `x.view(x.size(0), -1)`
means; with a fixed batch, a target that starts with N does.

Every movement op here is defined once, by a numpy function of an array (`move` below): on a
constant it runs on the data; on an activation it runs on the table of element indices, and
the table it returns becomes the IR's Select (fill marks the padding). The same function also
proves that the op keeps samples apart: run on the indices of two samples it must give each
sample's table, offset by one sample; otherwise it moves data across the batch axis and is
refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from onnx import numpy_helper

from imcc.compiler.ir import ops

from .registry import NodeContext, Result, converter

Move = Callable[[np.ndarray], np.ndarray]


def _shape(ctx: NodeContext, index: int) -> tuple[int, ...]:
    array = ctx.constant(index)
    return tuple(array.shape) if array is not None else ctx.value(index).shape


def _model_shape(ctx: NodeContext, index: int) -> tuple[int, ...]:
    """The operand's shape as the model sees it: with a fixed batch N, an activation's batch
    axis counts N (the IR's 1 stands for it), so shape arithmetic gives the model's numbers."""
    shape = _shape(ctx, index)
    if ctx.fixed_batch is not None and ctx.constant(index) is None and shape:
        return (ctx.fixed_batch, *shape[1:])
    return shape


def _ints(ctx: NodeContext, index: int, what: str) -> list[int] | None:
    """A constant integer operand as a list; None if absent; an error if computed at run time."""
    if not ctx.has_input(index):
        return None
    array = ctx.constant(index)
    if array is None:
        raise ctx.error(
            f"the {what} of {ctx.op_type} ({ctx.input_name(index)!r}) are computed at run time; "
            "imcc needs them constant at compile time"
        )
    return [int(v) for v in np.asarray(array).reshape(-1)]


def move(ctx: NodeContext, index: int, fn: Move, *, fill: float = 0.0, output: int = 0) -> Result:
    """fn applied to operand `index`: to its data if constant, else as a Select of its
    elements. Index tables mark padding with -1, which fn must keep for padded positions."""
    array = ctx.constant(index)
    if array is not None:
        return np.asarray(fn(array))
    x = ctx.value(index)
    size = x.type.size
    table = np.asarray(fn(np.arange(size, dtype=np.int64).reshape(x.shape)))
    if ctx.batch_axis:
        pair = np.arange(2 * size, dtype=np.int64).reshape(2, *x.shape[1:])
        both = np.asarray(fn(pair))
        per_sample = np.where(table >= 0, table + size, -1)
        if both.shape[:1] != (2,) or not (
            np.array_equal(both[:1], table) and np.array_equal(both[1:], per_sample)
        ):
            raise ctx.error(
                f"{ctx.op_type} moves data across the batch axis (axis 0); imcc runs one sample "
                "at a time"
            )
    if table.size == size and np.array_equal(table.reshape(-1), np.arange(size)):
        if table.shape == x.shape:
            return ctx.emit(ops.Identity, [x], output=output)
        return ctx.emit(ops.Reshape, [x], output=output, shape=table.shape)
    return ctx.emit(ops.Select, [x], output=output, index=table, fill=float(fill))


# -- shapes -----------------------------------------------------------------------------------


@converter("Shape")
def convert_shape(ctx: NodeContext) -> list[Result]:
    shape = _model_shape(ctx, 0)
    start, end = int(ctx.attr("start", 0)), ctx.attr("end")
    return [np.array(shape[start : None if end is None else int(end)], dtype=np.int64)]


@converter("Size")
def convert_size(ctx: NodeContext) -> list[Result]:
    return [np.array(int(np.prod(_model_shape(ctx, 0), dtype=np.int64)), dtype=np.int64)]


@converter("ConstantOfShape", since=9)
def convert_constant_of_shape(ctx: NodeContext) -> list[Result]:
    shape = _ints(ctx, 0, "shape") or []
    if any(d < 0 for d in shape):
        raise ctx.error(f"shape {shape} has a negative dimension")
    value = ctx.attr("value")
    fill = numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1)
    return [np.full(shape, fill[0], dtype=fill.dtype)]


@converter("Range", since=11)
def convert_range(ctx: NodeContext) -> list[Result]:
    arrays = [ctx.constant(i) for i in range(3)]
    if any(a is None for a in arrays):
        raise ctx.error("Range with bounds computed at run time is not supported")
    start, limit, delta = (np.asarray(a).reshape(()) for a in arrays if a is not None)
    if delta == 0:
        raise ctx.error("Range with delta 0 never ends")
    count = max(int(np.ceil((limit - start) / delta)), 0)
    return [(start + np.arange(count) * delta).astype(start.dtype)]


# -- movement ---------------------------------------------------------------------------------


def _axis(ctx: NodeContext, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


@converter("Gather")
def convert_gather(ctx: NodeContext) -> list[Result]:
    shape = _shape(ctx, 0)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), len(shape))
    indices = ctx.constant(1)
    if indices is None:
        raise ctx.error("Gather with indices computed at run time is not supported")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < -shape[axis] or indices.max() >= shape[axis]):
        raise ctx.error(f"indices out of range for axis {axis} of size {shape[axis]}")
    normal = np.where(indices < 0, indices + shape[axis], indices)
    return [move(ctx, 0, lambda a: np.take(a, normal, axis=axis))]


@converter("Concat", since=4)
def convert_concat(ctx: NodeContext) -> list[Result]:
    present = [i for i in range(ctx.num_inputs) if ctx.has_input(i)]
    shapes = [_shape(ctx, i) for i in present]
    axis = _axis(ctx, int(ctx.attr("axis")), len(shapes[0]))
    arrays = [ctx.constant(i) for i in present]
    if all(a is not None for a in arrays):
        return [np.concatenate([a for a in arrays if a is not None], axis=axis)]
    if ctx.batch_axis and axis == 0:
        raise ctx.error("Concat along axis 0 would join samples (the batch axis)")
    inputs = [ctx.value(i) for i, s in zip(present, shapes, strict=True) if s[axis] > 0]
    if len(inputs) == 1:
        return [ctx.emit(ops.Identity, inputs, output=0)]
    return [ctx.emit(ops.Concat, inputs, output=0, axis=axis)]


Ints = list[int]


def _slice_spec(ctx: NodeContext) -> tuple[Ints, Ints, Ints | None, Ints | None]:
    if ctx.opset < 10:
        starts, ends, axes = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes")
        return list(starts), list(ends), None if axes is None else list(axes), None
    starts, ends = _ints(ctx, 1, "starts"), _ints(ctx, 2, "ends")
    assert starts is not None and ends is not None
    return starts, ends, _ints(ctx, 3, "axes"), _ints(ctx, 4, "steps")


@converter("Slice")
def convert_slice(ctx: NodeContext) -> list[Result]:
    shape = _shape(ctx, 0)
    rank = len(shape)
    starts, ends, axes, steps = _slice_spec(ctx)
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.error("starts, ends, axes and steps of Slice differ in length")
    if 0 in steps:
        raise ctx.error("a Slice step is 0")
    index: list[slice] = [slice(None)] * rank
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[_axis(ctx, axis, rank)] = slice(start, end, step)
    return [move(ctx, 0, lambda a: a[tuple(index)])]


@converter("Pad", since=2)
def convert_pad(ctx: NodeContext) -> list[Result]:
    shape = _shape(ctx, 0)
    rank = len(shape)
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads, value, axes = list(ctx.attr("pads")), float(ctx.attr("value", 0.0)), None
    else:
        pads = _ints(ctx, 1, "pads") or []
        constant = ctx.constant(2) if ctx.has_input(2) else None
        if ctx.has_input(2) and constant is None:
            raise ctx.error("Pad with a constant_value computed at run time is not supported")
        value = float(np.asarray(constant).reshape(-1)[0]) if constant is not None else 0.0
        axes = _ints(ctx, 3, "axes")
    axes = [_axis(ctx, a, rank) for a in (axes if axes is not None else range(rank))]
    if len(pads) != 2 * len(axes):
        raise ctx.error(f"Pad has {len(pads)} pads for {len(axes)} axes")
    before, after = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        before[axis], after[axis] = pads[i], pads[i + len(axes)]
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.error(f"Pad mode {mode!r} is not one of constant, edge, reflect, wrap")
    for axis in range(rank):
        kept = shape[axis] + min(before[axis], 0) + min(after[axis], 0)
        if mode == "reflect" and max(before[axis], after[axis]) > 0 and kept < 2:
            raise ctx.error(f"reflect padding of axis {axis} needs at least 2 elements")
        if mode in ("edge", "wrap") and max(before[axis], after[axis]) > 0 and kept < 1:
            raise ctx.error(f"{mode} padding of an empty axis {axis}")

    def crop(a: np.ndarray) -> np.ndarray:  # negative pads remove elements
        return a[tuple(slice(-min(b, 0), a.shape[i] + min(e, 0))
                       for i, (b, e) in enumerate(zip(before, after, strict=True)))]  # fmt: skip

    widths = [(max(b, 0), max(e, 0)) for b, e in zip(before, after, strict=True)]

    def pad(a: np.ndarray) -> np.ndarray:  # on index tables, -1 marks the constant padding
        if mode == "constant":
            return np.pad(crop(a), widths, mode="constant", constant_values=-1)
        return np.pad(crop(a), widths, mode=mode)

    array = ctx.constant(0)
    if array is not None:
        if mode == "constant":  # data: pad with the value itself, in the data's dtype
            return [np.pad(crop(array), widths, constant_values=np.asarray(value, array.dtype))]
        return [np.pad(crop(array), widths, mode=mode)]
    return [move(ctx, 0, pad, fill=value)]


@converter("Split", since=2)
def convert_split(ctx: NodeContext) -> list[Result]:
    shape = _shape(ctx, 0)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), len(shape))
    outputs = len(ctx.node.output)
    if ctx.opset < 13:
        sizes = ctx.attr("split")
        sizes = list(sizes) if sizes else None
    else:
        sizes = _ints(ctx, 1, "split sizes")
    if sizes is None:
        parts = int(ctx.attr("num_outputs", outputs))
        step = -(-shape[axis] // parts)
        sizes = [min(step, shape[axis] - i * step) for i in range(parts)]
    if sum(sizes) != shape[axis] or any(s < 0 for s in sizes):
        raise ctx.error(f"split sizes {sizes} do not add up to axis {axis}'s {shape[axis]}")
    bounds = np.cumsum([0, *sizes])
    results: list[Result] = []
    for i in range(len(sizes)):
        part = [slice(None)] * len(shape)
        part[axis] = slice(int(bounds[i]), int(bounds[i + 1]))
        results.append(move(ctx, 0, _indexer(tuple(part)), output=i))
    return results


def _indexer(key: tuple[slice, ...]) -> Move:
    return lambda a: a[key]


def _expanded(ctx: NodeContext, shape: Sequence[int], target: Sequence[int]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(tuple(shape), tuple(target)))
    except ValueError:
        raise ctx.error(f"cannot expand shape {tuple(shape)} to {tuple(target)}") from None


@converter("Expand", since=8)
def convert_expand(ctx: NodeContext) -> list[Result]:
    shape = _shape(ctx, 0)
    target = _ints(ctx, 1, "shape") or []
    _expanded(ctx, shape, target)
    return [move(ctx, 0, lambda a: np.broadcast_to(a, _expanded(ctx, a.shape, target)).copy())]


@converter("Tile", since=6)
def convert_tile(ctx: NodeContext) -> list[Result]:
    shape = _shape(ctx, 0)
    repeats = _ints(ctx, 1, "repeats") or []
    if len(repeats) != len(shape) or any(r < 0 for r in repeats):
        raise ctx.error(f"repeats {repeats} do not fit rank {len(shape)}")
    return [move(ctx, 0, lambda a: np.tile(a, repeats))]
