"""Convolutions onto crossbars, BatchNorm folding, and the data movement of windows and pools.

Called from `canonicalize` (before: frontend ops; after: no Conv or BatchNorm op is left):
- `fold_batch_norms`: a BatchNorm whose input is a Conv or an activation-free Dense that
  nobody else uses scales that op's weight columns and bias (w' = w * scale, b' = b * scale +
  shift); any other BatchNorm becomes a per-channel Mul and Add on the SIMD unit.
- `lower_convolutions`: Conv -> Im2Col -> Dense -> Transpose -> Reshape. The Dense weight is
  the kernel unrolled to (C * K) x O, K = prod(kernel); a following sole-user activation is
  fused into the Dense. Groups become one block-diagonal weight (zeros between the groups'
  blocks) rather than one Dense per group: every output pixel is then one MVM pass over one
  window row and the layer needs no concatenation, at the price of `group` times the cells
  (for a depthwise layer with many channels, separate Dense ops would fit fewer arrays; a
  later change can choose by cell count).

Called from `emit` (the ops stay in the IR until then, so the interpreter checks them):
- Im2Col is an im2col done with `simd.copy`, streamed: when its only user is a QDense (a
  lowered Conv), that QDense gathers one window row into a scratch row just before its MVM
  pass, so the buffer holds one k-long row, not the P x k matrix (`window_rows`); otherwise
  the whole matrix is gathered. Either way it is one copy per run of consecutive input words, so
  about C * kh copies per output pixel for a 2-D kernel of width kw (a run is one kernel row;
  dilations > 1 make every element its own run), and zeros for the padding copied from a
  zero vector. Windows are gathered afresh for every pixel: inputs are not reused between
  overlapping windows yet (a line buffer would copy each input once).
- Select (a compile-time gather: Slice, Pad, Gather, Split, Expand, ...) is the same `gather`
  over its index table, with its fill value for the padding. Concat copies each input's
  blocks into place.
- Transpose copies runs of consecutive input words too; after a convolution's Dense, whose
  rows are pixels, it takes O * P single-word copies to return to channel-major NCHW.
- Pool gathers every kernel offset's view of the input as one row (offset-major, so the
  reduction is K - 1 vector `simd.max` / `simd.add` over all outputs at once), then averages
  divide by the per-window counts. Padding is never a max: it copies one of the window's own
  inputs instead. A pool whose single window covers each channel whole (GlobalAveragePool)
  is one `simd.rsum` / `simd.rmax` per channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op, Value
from imcc.compiler.ir.windows import Window, im2col_index, window_index
from imcc.isa import spec

if TYPE_CHECKING:
    from imcc.compiler.passes.emit import Emitter

_ACTIVATION: dict[type[Op], str] = {ops.Relu: "relu", ops.Sigmoid: "sigmoid", ops.Tanh: "tanh"}


# -- canonicalize ---------------------------------------------------------------------------


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
            and producer.attrs.get("activation", "none") == "none"
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


# -- emit -----------------------------------------------------------------------------------


def gather(
    em: Emitter, core: int, dst: int, src: int, index: np.ndarray, fill: float = 0.0
) -> None:
    """buf[dst + i] = buf[src + index[i]], or `fill` where index[i] < 0: one `simd.copy` per
    run of consecutive source words (or of fills, copied from a constant vector)."""
    cc = em.cores[core]
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    if index.size == 0:
        return
    valid = index >= 0
    step = (valid[1:] != valid[:-1]) | (valid[1:] & (index[1:] != index[:-1] + 1))
    breaks = np.flatnonzero(step) + 1
    starts, stops = np.r_[0, breaks], np.r_[breaks, index.size]
    zeros = 0
    if not valid.all():
        longest = max(int(b - a) for a, b in zip(starts, stops, strict=True) if not valid[a])
        zeros = em.vector_local(core, np.full(longest, fill))
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        source = src + int(index[start]) if valid[start] else zeros
        cc.emit(spec.SIMD_COPY, dst + start, source, stop - start)


def streams(graph: Graph, op: Op) -> bool:
    """True for an Im2Col whose only user is a QDense: that QDense gathers one window row at
    a time (`window_rows`), so the im2col matrix is never held whole."""
    if not isinstance(op, ops.Im2Col) or op.outputs[0] in graph.outputs:
        return False
    users = graph.users(op.outputs[0])
    return len(users) == 1 and isinstance(users[0], ops.QDense)


def window_rows(em: Emitter, op: Op, core: int) -> Iterator[int]:
    """The rows of Im2Col `op` one at a time, each gathered into a scratch row on `core` and
    freed when the caller asks for the next; then the Im2Col's operands are released."""
    x = op.inputs[0]
    src = em.local(x, core)
    table = im2col_index(Window.of(op.attrs, len(x.shape) - 2), x.shape)
    table = table.reshape(-1, table.shape[-1])
    cc = em.cores[core]
    k = table.shape[1]
    for row in table:
        addr = cc.buffer.alloc(k, f"{op.name} window")
        gather(em, core, addr, src, row)
        yield addr
        cc.buffer.release(addr, k)
    em.release_dead(op)


def emit_movement(em: Emitter, op: Op, core: int) -> None:
    """Im2Col, Transpose and Pool: copies (and, for Pool, SIMD reductions) on `core`."""
    x, result = op.inputs[0], op.outputs[0]
    cc = em.cores[core]
    src = em.local(x, core)
    dst = cc.buffer.alloc(result.type.size, op.name)
    if isinstance(op, ops.Im2Col):
        gather(em, core, dst, src, im2col_index(Window.of(op.attrs, len(x.shape) - 2), x.shape))
    elif isinstance(op, ops.Transpose):
        source = np.arange(x.type.size).reshape(x.shape).transpose(op.attrs["perm"])
        gather(em, core, dst, src, source)
    elif isinstance(op, ops.Select):
        gather(em, core, dst, src, op.attrs["index"], op.attrs.get("fill", 0.0))
    else:
        _emit_pool(em, op, core, src, dst)
    em.define(result, core, dst)


def emit_concat(em: Emitter, op: Op, core: int) -> None:
    """Each input's blocks copied into place: one `simd.copy` per input per index of the
    axes before `axis` (one per input when those are all 1, as for channels of one sample)."""
    result = op.outputs[0]
    cc = em.cores[core]
    dst = cc.buffer.alloc(result.type.size, op.name)
    axis = op.attrs["axis"]
    outer = int(np.prod(result.shape[:axis], dtype=np.int64))
    inner = int(np.prod(result.shape[axis + 1 :], dtype=np.int64))
    row = result.shape[axis] * inner  # words of one outer index in the result
    offset = 0
    for value in op.inputs:
        src = em.local(value, core)
        block = value.shape[axis] * inner
        for o in range(outer):
            cc.emit(spec.SIMD_COPY, dst + o * row + offset, src + o * block, block)
        offset += block
    em.define(result, core, dst)


def _emit_pool(em: Emitter, op: Op, core: int, src: int, dst: int) -> None:
    x = op.inputs[0]
    cc = em.cores[core]
    window = Window.of(op.attrs, len(x.shape) - 2)
    spatial = x.shape[2:]
    index, in_pads = window_index(window, spatial)
    positions, offsets = index.shape
    planes = x.shape[0] * x.shape[1]  # (n, c) pairs, each a contiguous block of the input
    size = int(np.prod(spatial, dtype=np.int64))
    is_max = op.attrs["mode"] == "max"
    if positions == 1 and offsets == size and np.array_equal(index[0], np.arange(size)):
        # one window covering each plane whole: a reduction per plane
        row = spec.SIMD_RMAX if is_max else spec.SIMD_RSUM
        for plane in range(planes):
            cc.emit(row, dst + plane, src + plane * size, size)
        if not is_max:
            cc.emit(spec.SIMD_DIV_S, dst, dst, em.const_local(core, float(size)), planes)
        return
    if is_max:  # padding copies the window's first input, which cannot change the max
        first = index[np.arange(positions), np.argmax(index >= 0, axis=1)]
        index = np.where(index >= 0, index, first[:, None])
    base = (np.arange(planes) * size)[:, None]  # (planes, 1)
    total = planes * positions
    temp = cc.buffer.alloc(total * offsets, f"{op.name} windows")
    for j in range(offsets):  # row j: offset j of every window of every plane
        table = np.where(index[:, j] >= 0, base + index[:, j], -1)
        gather(em, core, temp + j * total, src, table)
    row = spec.SIMD_MAX if is_max else spec.SIMD_ADD
    cc.emit(spec.SIMD_COPY, dst, temp, total)
    for j in range(1, offsets):
        cc.emit(row, dst, dst, temp + j * total, total)
    cc.buffer.release(temp, total * offsets)
    if not is_max:
        counted = in_pads if op.attrs.get("count_include_pad") else index >= 0
        counts = counted.sum(axis=1).astype(np.float64)
        if np.all(counts == counts[0]):
            cc.emit(spec.SIMD_DIV_S, dst, dst, em.const_local(core, float(counts[0])), total)
        else:
            divisor = cc.buffer.alloc(total, f"{op.name} counts")
            cc.emit(spec.MEM_LOAD, divisor, em.constant_addr(np.tile(counts, planes)), total)
            cc.emit(spec.SIMD_DIV, dst, dst, divisor, total)
            cc.buffer.release(divisor, total)
