"""Data movement on the vector unit: windows, pools, transposes, gathers, concatenation.

- An Im2Col whose only user is a QDense is deferred (`streams`): that QDense gathers one window
  row into a scratch row just before its MVM pass (`window_rows`), so the buffer holds one
  k-long row, not the P x k matrix. One `simd.copy` per run of consecutive input words: about
  C * kh copies per output pixel (a run is one kernel row; dilations > 1 make every element its
  own run), zeros copied for the padding. A 2-D convolution's runs in pixel blocks instead
  (codegen/convolution.py).
- Select (a compile-time gather: Slice, Pad, Gather, Split, Expand, ...) is the same `gather`
  over its index table, with its fill value for the padding. Concat copies each input's
  blocks into place. Reshape is an alias of its input's words, no code.
- Transpose copies runs of consecutive input words (none for a convolution's channel-major
  result, which is already in the order its Transpose asks for).
- Pool gathers every kernel offset's view of the input as one row (offset-major, so the
  reduction is K - 1 vector `simd.max` / `simd.add` over all outputs at once); in 2-D each
  view of a plane is one `simd.copy2d` from a copy padded with -inf (max) or 0 (average),
  else runs of copies where padding repeats a window input. Averages divide by the
  per-window counts. A pool whose single window covers each channel whole
  (GlobalAveragePool) is one `simd.rsum` / `simd.rmax` per channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from imcc.compiler.codegen.emitter import Emitter, Source, lowers
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op
from imcc.compiler.ir.windows import Window, im2col_index, window_index
from imcc.isa import spec


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


def _copy(em: Emitter, op: Op, fill: Callable[[int, int, int], None]) -> None:
    """The result in a fresh buffer on op's core, written by fill(core, dst, src)."""
    core = op.core
    src = em.local(op.inputs[0], core)
    dst = em.cores[core].buffer.alloc(op.outputs[0].type.size, op.name)
    fill(core, dst, src)
    em.define(op.outputs[0], core, dst)


@lowers(ops.Im2Col, defer=streams)
def lower_im2col(em: Emitter, op: ops.Im2Col) -> None:
    x = op.inputs[0]
    table = im2col_index(Window.of(op.attrs, len(x.shape) - 2), x.shape)
    _copy(em, op, lambda core, dst, src: gather(em, core, dst, src, table))


@lowers(ops.Transpose)
def lower_transpose(em: Emitter, op: ops.Transpose) -> None:
    x = op.inputs[0]
    if id(x) in em.channel_major:  # a convolution's result, already in this order
        em.alias(op)
        return
    source = np.arange(x.type.size).reshape(x.shape).transpose(op.attrs["perm"])
    _copy(em, op, lambda core, dst, src: gather(em, core, dst, src, source))


@lowers(ops.Select)
def lower_select(em: Emitter, op: ops.Select) -> None:
    index, fill = op.attrs["index"], op.attrs.get("fill", 0.0)
    _copy(em, op, lambda core, dst, src: gather(em, core, dst, src, index, fill))


@lowers(ops.Pool)
def lower_pool(em: Emitter, op: ops.Pool) -> None:
    x = op.inputs[0]
    window = Window.of(op.attrs, len(x.shape) - 2)
    spatial = x.shape[2:]
    planes = x.shape[0] * x.shape[1]
    res = em.resting(x)
    resting = res is not None and (em.large(x) or em.root(id(x)) in em.resident)
    # the padded map whole would not fit beside what the core's buffer holds now
    dims = len(spatial)
    padded = planes * int(
        np.prod([n + window.pads[i] + window.pads[i + dims] for i, n in enumerate(spatial)])
    )
    cramped = padded > em.cores[op.core].buffer.largest() // 2
    if (resting or cramped or em.large(op.outputs[0], op.core)) and len(spatial) == 2:
        _pool_in_bands(em, op, window)
        return
    _copy(
        em, op, lambda core, dst, src: _emit_pool(em, op, core, src, dst, window, spatial, planes)
    )


def _pool_in_bands(em: Emitter, op: ops.Pool, window: Window) -> None:
    """A 2-D pool over a map resting in memory (or with a large result), in bands: for a
    group of planes and a band of output rows, the input rows they read are loaded (one
    move per plane), pooled as a map of their own whose pads are the real ones at the map's
    edges, and the rows written to the result. A pool whose window covers each plane whole
    (GlobalAveragePool) reduces every plane in chunks instead."""
    x, out = op.inputs[0], op.outputs[0]
    core = op.core
    cc = em.cores[core]
    planes = x.shape[0] * x.shape[1]
    height, width = x.shape[2:]
    source = em.source(x, core)
    out_h, out_w = window.output((height, width))
    if (out_h, out_w) == (1, 1) and window.kernel == (height, width) and not any(window.pads):
        _global_pool(em, op, source, planes, height * width)
        return
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.strides, window.dilations
    top, left, _, right = window.pads
    is_max = op.attrs["mode"] == ops.PoolMode.MAX
    if window.ceil_mode:  # the right pad a last, partial window needs, counted as no input
        if not is_max and op.attrs.get("count_include_pad"):
            raise op.error("an average pool with ceil_mode and count_include_pad over a map "
                           "too large for a buffer is not supported")  # fmt: skip
        right = max(right, (out_w - 1) * sw + (kw - 1) * dw + 1 - width - left)
    target = em.rest(out, em.readers(out) | {core}) if em.large(out, core) else None
    dst = -1 if target is not None else cc.buffer.alloc(out.type.size, op.name)
    group, band = _pool_band_shape(cc.buffer.largest() // 2, planes, out_h, out_w, window,
                                   width + left + right)  # fmt: skip
    out_plane = out_h * out_w
    for p0 in range(0, planes, group):
        count = min(group, planes - p0)
        for r0 in range(0, out_h, band):
            rows = min(band, out_h - r0)
            lo = r0 * sh - top
            hi = lo + (rows - 1) * sh + (kh - 1) * dh + 1
            a, b = max(0, lo), min(height, hi)
            sub = Window(window.kernel, window.strides, (a - lo, left, hi - b, right),
                         window.dilations)  # fmt: skip
            loaded = cc.buffer.alloc(count * (b - a) * width, f"{op.name} band")
            for j in range(count):
                em.fetch(core, source, (p0 + j) * height * width + a * width,
                         loaded + j * (b - a) * width, (b - a) * width)  # fmt: skip
            pooled = cc.buffer.alloc(count * rows * out_w, f"{op.name} rows")
            _emit_pool(em, op, core, loaded, pooled, sub, (b - a, width), count)
            cc.buffer.release(loaded, count * (b - a) * width)
            for j in range(count):
                at = (p0 + j) * out_plane + r0 * out_w
                if target is not None:
                    em.move(core, target, at, pooled + j * rows * out_w, rows * out_w, load=False)
                else:
                    cc.emit(spec.SIMD_COPY, dst + at, pooled + j * rows * out_w, rows * out_w)
            cc.buffer.release(pooled, count * rows * out_w)
    if target is None:
        em.define(out, core, dst)


def _pool_band_shape(
    budget: int, planes: int, out_h: int, out_w: int, window: Window, padded_w: int
) -> tuple[int, int]:
    """(planes, output rows) per band whose words (the loaded rows, their padded copy, one
    view per kernel offset and the result) fit `budget`; at least (1, 1)."""
    (kh, kw), (sh, _), (dh, _) = window.kernel, window.strides, window.dilations
    rows, group = out_h, planes
    while True:
        span = (rows - 1) * sh + (kh - 1) * dh + 1
        words = group * (2 * span * padded_w + rows * out_w * (kh * kw + 1))
        if words <= budget or (rows, group) == (1, 1):
            return group, rows
        if rows > 1:
            rows = max(1, rows // 2)
        else:
            group = max(1, group // 2)


def _global_pool(em: Emitter, op: ops.Pool, source: Source, planes: int, size: int) -> None:
    """One window over each plane of a resting map: a reduction per plane, in chunks."""
    core, out = op.core, op.outputs[0]
    cc = em.cores[core]
    is_max = op.attrs["mode"] == ops.PoolMode.MAX
    row = spec.SIMD_RMAX if is_max else spec.SIMD_RSUM
    chunk = max(1, min(size, spec.MAX_COUNT, cc.buffer.largest() // 4))
    parts = -(-size // chunk)
    dst = cc.buffer.alloc(planes, op.name)
    scratch = cc.buffer.alloc(chunk + parts, f"{op.name} chunks")
    for p in range(planes):
        for i in range(parts):
            n = min(chunk, size - i * chunk)
            em.fetch(core, source, p * size + i * chunk, scratch, n)
            cc.emit(row, scratch + chunk + i, scratch, n)
        cc.emit(row, dst + p, scratch + chunk, parts)
    cc.buffer.release(scratch, chunk + parts)
    if not is_max:
        cc.emit(spec.SIMD_DIV_S, dst, dst, em.const_local(core, float(size)), planes)
    em.define(out, core, dst)


@lowers(ops.Reshape)
def lower_reshape(em: Emitter, op: ops.Reshape) -> None:
    em.alias(op)  # the same words under another shape: no code


@lowers(ops.Concat)
def lower_concat(em: Emitter, op: ops.Concat) -> None:
    """Each input's blocks copied into place: one `simd.copy` per input per index of the
    axes before `axis` (one per input when those are all 1, as for channels of one sample)."""
    core = op.core
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


def _emit_pool(
    em: Emitter,
    op: Op,
    core: int,
    src: int,
    dst: int,
    window: Window,
    spatial: tuple[int, ...],
    planes: int,
) -> None:
    """The pool of `planes` (n, c) planes of `spatial` shape at src (each a contiguous block)
    into dst, by `window`."""
    cc = em.cores[core]
    index, in_pads = window_index(window, spatial)
    positions, offsets = index.shape
    size = int(np.prod(spatial, dtype=np.int64))
    is_max = op.attrs["mode"] == ops.PoolMode.MAX
    if positions == 1 and offsets == size and np.array_equal(index[0], np.arange(size)):
        # one window covering each plane whole: a reduction per plane
        row = spec.SIMD_RMAX if is_max else spec.SIMD_RSUM
        for plane in range(planes):
            cc.emit(row, dst + plane, src + plane * size, size)
        if not is_max:
            cc.emit(spec.SIMD_DIV_S, dst, dst, em.const_local(core, float(size)), planes)
        return
    total = planes * positions
    temp = cc.buffer.alloc(total * offsets, f"{op.name} windows")
    if len(spatial) == 2:  # row j: offset j of every window of every plane, strided copies
        _pool_views(em, core, op, window, spatial, planes, src, temp)
    else:
        if is_max:  # padding copies the window's first input, which cannot change the max
            first = index[np.arange(positions), np.argmax(index >= 0, axis=1)]
            index = np.where(index >= 0, index, first[:, None])
        base = (np.arange(planes) * size)[:, None]  # (planes, 1)
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


def _pool_views(
    em: Emitter,
    core: int,
    op: Op,
    window: Window,
    spatial: tuple[int, ...],
    planes: int,
    src: int,
    temp: int,
) -> None:
    """For a 2-D pool: each plane copied once into a map padded with the pool's neutral
    value (-inf for max, 0 for average: the counts divide later), one `simd.copy2d` each;
    then every kernel offset's view of every plane is one strided `simd.copy2d`."""
    cc = em.cores[core]
    height, width = spatial
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.strides, window.dilations
    top, left, bottom, right = window.pads
    out_h, out_w = window.output(spatial)
    # ceil_mode can put a last window past the end pads: pad enough for every window
    bottom = max(bottom, (out_h - 1) * sh + (kh - 1) * dh + 1 - height - top)
    right = max(right, (out_w - 1) * sw + (kw - 1) * dw + 1 - width - left)
    padded_h, padded_w = height + top + bottom, width + left + right
    plane = padded_h * padded_w
    padded = src
    if plane != height * width:  # else every window lies inside: read the input itself
        fill = -np.inf if op.attrs["mode"] == ops.PoolMode.MAX else 0.0
        padded = cc.buffer.alloc(planes * plane, f"{op.name} padded map")
        cc.copy2d(padded, em.const_local(core, fill), plane, planes, (0, 0, plane))
        for p in range(planes):
            cc.copy2d(padded + p * plane + top * padded_w + left, src + p * height * width,
                      width, height, (1, width, padded_w))  # fmt: skip
    positions = out_h * out_w
    total = planes * positions
    for ky in range(kh):
        for kx in range(kw):
            row = temp + (ky * kw + kx) * total
            for p in range(planes):
                offset = p * plane + ky * dh * padded_w + kx * dw
                cc.copy2d(row + p * positions, padded + offset, out_w, out_h,
                          (sw, sh * padded_w, out_w))  # fmt: skip
    if padded != src:
        cc.buffer.release(padded, planes * plane)
