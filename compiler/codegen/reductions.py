"""Reductions on the vector unit: softmax, reduce (sum, mean, max), argmax, layer norm."""

from __future__ import annotations

import numpy as np

from imcc.compiler.codegen.emitter import Emitter, lowers
from imcc.compiler.ir import ops
from imcc.isa import spec


@lowers(ops.Softmax)
def lower_softmax(em: Emitter, op: ops.Softmax) -> None:
    """softmax(x) = exp(x - max x) / sum exp(x - max x) along `axis`.

    Along the last axis each row is reduced with the row-max and row-sum reductions. Along
    another axis the input is `outer` blocks of `n` rows of `inner` consecutive elements
    (the axis strides by `inner`); the max and sum over the axis are then elementwise
    vector max and add over the block's rows, so every instruction still covers `inner`
    lanes and no gather is needed."""
    core = op.core
    x = op.inputs[0]
    axis = op.attrs.get("axis", -1) % len(x.shape)
    size = x.type.size
    cc = em.cores[core]
    src = em.local(x, core)
    dst = cc.buffer.alloc(size, op.name)
    inner = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    n = x.shape[axis]
    if inner == 1 and size:
        width = n
        scalar = cc.buffer.alloc(1, f"{op.name} scalar")
        for row in range(0, size, width):
            cc.emit(spec.SIMD_RMAX, scalar, src + row, width)
            cc.emit(spec.SIMD_SUB_S, dst + row, src + row, scalar, width)
            cc.emit(spec.SIMD_EXP, dst + row, dst + row, width)
            cc.emit(spec.SIMD_RSUM, scalar, dst + row, width)
            cc.emit(spec.SIMD_DIV_S, dst + row, dst + row, scalar, width)
        cc.buffer.release(scalar, 1)
    elif size:
        acc = cc.buffer.alloc(inner, f"{op.name} accumulator")
        block = n * inner
        for start in range(0, size, block):
            rows = [start + k * inner for k in range(n)]
            cc.emit(spec.SIMD_COPY, acc, src + rows[0], inner)  # acc = max over the axis
            for row in rows[1:]:
                cc.emit(spec.SIMD_MAX, acc, acc, src + row, inner)
            for row in rows:
                cc.emit(spec.SIMD_SUB, dst + row, src + row, acc, inner)
                cc.emit(spec.SIMD_EXP, dst + row, dst + row, inner)
            cc.emit(spec.SIMD_COPY, acc, dst + rows[0], inner)  # acc = sum over the axis
            for row in rows[1:]:
                cc.emit(spec.SIMD_ADD, acc, acc, dst + row, inner)
            for row in rows:
                cc.emit(spec.SIMD_DIV, dst + row, dst + row, acc, inner)
        cc.buffer.release(acc, inner)
    em.define(op.outputs[0], core, dst)


@lowers(ops.Reduce)
def lower_reduce(em: Emitter, op: ops.Reduce) -> None:
    """Sum, mean or max over `axes`, by whichever of two instruction streams is shorter.

    Think of x as a matrix (kept positions j, reduced positions r). By groups: for each
    output j, one row reduction (sum or max) over each run of consecutive elements of its
    group, combined by scalar add or max (best when the reduced axes are trailing). By
    lanes: for each r, one vector add or max of the column into the output, a vector per
    run of consecutive elements (best when they are leading). A mean is then the sum
    times the constant 1/count (vector-scalar multiply)."""
    core = op.core
    x, out = op.inputs[0], op.outputs[0]
    axes = tuple(op.attrs["axes"])
    mode = op.attrs["mode"]
    cc = em.cores[core]
    src = em.local(x, core)
    dst = cc.buffer.alloc(out.type.size, op.name)
    kept = [a for a in range(len(x.shape)) if a not in axes]
    index = np.arange(x.type.size).reshape(x.shape).transpose(*kept, *axes)
    n_out = out.type.size
    count = x.type.size // n_out if n_out else 0
    if n_out and not count:  # an empty set reduces to the identity (ONNX: -inf for max)
        identity = {"sum": 0.0, "max": -np.inf, "mean": np.nan}[mode]
        cc.emit(spec.MEM_LOAD, dst, em.constant_addr(np.full(n_out, identity)), n_out)
        em.define(out, core, dst)
        return
    matrix = index.reshape(n_out, count)
    combine = spec.SIMD_MAX if mode == ops.ReduceMode.MAX else spec.SIMD_ADD
    reduce = spec.SIMD_RMAX if mode == ops.ReduceMode.MAX else spec.SIMD_RSUM

    def runs(positions: np.ndarray) -> list[tuple[int, int]]:
        """(offset, length) of each run of consecutive values in `positions`."""
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        starts, stops = np.r_[0, breaks], np.r_[breaks, positions.size]
        return [(int(a), int(b - a)) for a, b in zip(starts, stops, strict=True)]

    by_group = [runs(matrix[j]) for j in range(n_out)] if n_out else []
    by_lane = [runs(matrix[:, r]) for r in range(count)] if n_out else []
    group_cost = sum(2 * len(g) - 1 for g in by_group)
    lane_cost = sum(len(lane) for lane in by_lane)
    if not axes or count == 1:  # nothing is reduced: a copy
        cc.emit(spec.SIMD_COPY, dst, src, n_out)
    elif group_cost <= lane_cost:
        scalar = cc.buffer.alloc(1, f"{op.name} scalar")
        for j, group in enumerate(by_group):
            for k, (offset, length) in enumerate(group):
                start = src + int(matrix[j, offset])
                cc.emit(reduce, dst + j if k == 0 else scalar, start, length)
                if k:
                    cc.emit(combine, dst + j, dst + j, scalar, 1)
        cc.buffer.release(scalar, 1)
    else:
        for r, lane in enumerate(by_lane):
            for offset, length in lane:
                start = src + int(matrix[offset, r])
                if r == 0:
                    cc.emit(spec.SIMD_COPY, dst + offset, start, length)
                else:
                    cc.emit(combine, dst + offset, dst + offset, start, length)
    if mode == ops.ReduceMode.MEAN and count > 1:
        cc.emit(spec.SIMD_MUL_S, dst, dst, em.const_local(core, 1.0 / count), n_out)
    em.define(out, core, dst)


@lowers(ops.ArgMax)
def lower_argmax(em: Emitter, op: ops.ArgMax) -> None:
    core = op.core
    x = op.inputs[0]
    if op.attrs.get("axis", -1) % len(x.shape) != len(x.shape) - 1:
        raise op.error("argmax along an axis other than the last is not supported yet")
    width = x.shape[-1]
    cc = em.cores[core]
    src = em.local(x, core)
    dst = cc.buffer.alloc(op.outputs[0].type.size, op.name)
    for row in range(x.type.size // width):
        cc.emit(spec.SIMD_ARGMAX, dst + row, src + row * width, width)
    em.define(op.outputs[0], core, dst)


@lowers(ops.LayerNorm)
def lower_layer_norm(em: Emitter, op: ops.LayerNorm) -> None:
    """Per row of the normalised width w: mean = sum(x) / w; d = x - mean;
    var = sum(d * d) / w; y = d / sqrt(var + epsilon); then y * scale + bias over the
    whole tensor, scale and bias broadcast to it. All on the vector unit, in float64."""
    core = op.core
    x, scale, bias = op.inputs
    out = op.outputs[0]
    size = x.type.size
    width = int(np.prod(x.shape[op.attrs["axis"] :], dtype=np.int64))
    cc = em.cores[core]
    src = em.local(x, core)
    dst = cc.buffer.alloc(size, op.name)
    if size:
        square = cc.buffer.alloc(width, f"{op.name} squares")
        stat = cc.buffer.alloc(1, f"{op.name} statistic")
        inverse_width = em.const_local(core, 1.0 / width)
        epsilon = em.const_local(core, float(op.attrs["epsilon"]))
        for row in range(0, size, width):
            cc.emit(spec.SIMD_RSUM, stat, src + row, width)
            cc.emit(spec.SIMD_MUL_S, stat, stat, inverse_width, 1)
            cc.emit(spec.SIMD_SUB_S, dst + row, src + row, stat, width)
            cc.emit(spec.SIMD_MUL, square, dst + row, dst + row, width)
            cc.emit(spec.SIMD_RSUM, stat, square, width)
            cc.emit(spec.SIMD_MUL_S, stat, stat, inverse_width, 1)
            cc.emit(spec.SIMD_ADD_S, stat, stat, epsilon, 1)
            cc.emit(spec.SIMD_SQRT, stat, stat, 1)
            cc.emit(spec.SIMD_DIV_S, dst + row, dst + row, stat, width)
        cc.buffer.release(stat, 1)
        cc.buffer.release(square, width)
        temps: list[tuple[int, int]] = []
        cc.emit(spec.SIMD_MUL, dst, dst, em.broadcast(scale, core, out.shape, temps), size)
        cc.emit(spec.SIMD_ADD, dst, dst, em.broadcast(bias, core, out.shape, temps), size)
        for addr, words in temps:
            cc.buffer.release(addr, words)
    em.define(out, core, dst)
