"""Convolutions onto crossbars, BatchNorm folding, and the data movement of windows and pools.

Called from `canonicalize` (before: frontend ops; after: no Conv or BatchNorm op is left):
- `fold_batch_norms`: a BatchNorm whose input is a Conv or an activation-free Dense that
  nobody else uses scales that op's weight columns and bias (w' = w * scale, b' = b * scale +
  shift); any other BatchNorm becomes a per-channel Mul and Add on the SIMD unit.
- `lower_convolutions`: Conv -> Im2Col -> Dense -> Transpose -> Reshape. The Dense weight is
  the kernel unrolled to (C * K) x O, K = prod(kernel); a following sole-user activation is
  fused into the Dense. Groups become one block-diagonal weight (zeros between the groups'
  blocks) rather than one Dense per group: every output pixel is then one MVM pass over one
  window row and the layer needs no concatenation; `tile` gives the all-zero blocks no
  array, so a depthwise layer costs about its kernel's cells, not `group` times them.

Called from `emit` (the ops stay in the IR until then, so the interpreter checks them):
- A 2-D convolution (Im2Col -> QDense -> Transpose) runs in blocks of pixels
  (`emit_conv_blocks`): the input map is quantised once (one scale per sample, QDense
  scale_over "map") into a zero-padded copy; for a block of output rows the windows are laid
  out transposed, one strided `simd.copy2d` per kernel row (c, ky, kx), and every tile streams
  the whole block through its array with one `xbar.mvmb`. The code is O(k + tiles + O) per
  block, independent of the pixel count: a 224x224 ResNet-18 is 235k instructions. The
  result is channel-major, so the conv's Transpose costs nothing. Windows are copied, not
  reused: X^T holds every input about kh * kw / (sh * sw) times, which the copies pay for.
- Other Im2Cols (1-D and 3-D convolutions, or a result used otherwise) stream row by row:
  the QDense gathers one window row into a scratch row just before its MVM pass
  (`window_rows`), so the buffer holds one k-long row, not the P x k matrix. One `simd.copy`
  per run of consecutive input words: about C * kh copies per output pixel (a run is one
  kernel row; dilations > 1 make every element its own run), zeros copied for the padding.
- Select (a compile-time gather: Slice, Pad, Gather, Split, Expand, ...) is the same `gather`
  over its index table, with its fill value for the padding. Concat copies each input's
  blocks into place.
- Transpose copies runs of consecutive input words.
- Pool gathers every kernel offset's view of the input as one row (offset-major, so the
  reduction is K - 1 vector `simd.max` / `simd.add` over all outputs at once); in 2-D each
  view of a plane is one `simd.copy2d` from a copy padded with -inf (max) or 0 (average),
  else runs of copies where padding repeats a window input. Averages divide by the
  per-window counts. A pool whose single window covers each channel whole
  (GlobalAveragePool) is one `simd.rsum` / `simd.rmax` per channel.
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
    from imcc.compiler.passes.tiling import Slicing, Tile

_ACTIVATION: dict[type[Op], str] = {ops.Relu: "relu", ops.Sigmoid: "sigmoid", ops.Tanh: "tanh"}
ACTIVATION_ROWS = {"relu": spec.SIMD_RELU, "sigmoid": spec.SIMD_SIGMOID, "tanh": spec.SIMD_TANH}


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
        fill = -np.inf if op.attrs["mode"] == "max" else 0.0
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


# -- convolutions in blocks of pixels ----------------------------------------------------------


def conv_blocks_apply(em: Emitter, op: Op, im2col: Op) -> bool:
    """A lowered 2-D Conv (Im2Col -> QDense -> Transpose(0, 2, 1)) runs in pixel blocks
    (`emit_conv_blocks`); anything else keeps the row-by-row path."""
    users = em.graph.users(op.outputs[0])
    return (
        len(im2col.inputs[0].shape) == 4
        and (op.attrs["input_scale"] is not None or op.attrs.get("scale_over") == "map")
        and op.outputs[0] not in em.graph.outputs
        and len(users) == 1
        and isinstance(users[0], ops.Transpose)
        and tuple(users[0].attrs["perm"]) == (0, 2, 1)
    )


def emit_conv_blocks(em: Emitter, op: Op, im2col: Op, qcore: int) -> None:
    """A convolution as a few block instructions per layer, independent of its pixel count.

    1. The input map is quantised once, with one scale per sample (scale_over "map"; a
       leading axis > 1 in a graph without a batch axis holds several samples), then copied
       into a zero-padded map: one `simd.copy2d` per channel of each sample.
    2. For a block of output rows of a sample (as many as a quarter of the buffer holds), the
       windows are laid out transposed, X^T (k x m): row (c, ky, kx) holds that kernel
       offset's input for the block's m pixels, one `simd.copy2d` each (strides: the conv's,
       in the padded map).
    3. Each tile streams the block through its array with one `xbar.mvmb`, whose output
       (columns x m) keeps every slice's columns contiguous, so slices recombine and partial
       sums add with the vector code of the row path, on nb x m words.
    4. On the home core: with the offset encoding, y -= offset * sum(x) per pixel (the sums:
       k - 1 vector adds over X^T's rows, then one subtraction per output channel); y *= s_x;
       then per output channel y *= s_w[o], y += b[o] (two scalar
       instructions per channel); the activation; and the block lands in the output, channel-
       major (O x P), which is what the conv's Transpose asks for, so that Transpose is free.
    """
    x_map = im2col.inputs[0]
    samples, channels, height, width = x_map.shape
    window = Window.of(im2col.attrs, 2)
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.strides, window.dilations
    top, left, bottom, right = window.pads
    out_h, out_w = window.output((height, width))
    pixels = out_h * out_w
    _, w_int, w_scale, bias = op.inputs
    k, n = w_int.shape
    home = op.attrs["core"]
    bits, signed = op.attrs["input_bits"], int(op.attrs["input_signed"])
    slicing: Slicing = op.attrs["slicing"]
    qc, hc = em.cores[qcore], em.cores[home]

    # 1. scales, quantised and padded maps (on the core that holds the map). Samples (a
    # leading axis > 1 in a graph without a batch axis) are maps of their own, one after
    # another: scale s and map s at offset s * (its size).
    size = x_map.type.size // samples
    src = em.local(x_map, qcore)
    if op.attrs["input_scale"] is None:
        scale = _map_scales(em, op, qcore, src, samples, size)
    else:
        scale = qc.buffer.alloc(samples, f"{op.name} input scale")
        static = np.full(samples, float(op.attrs["input_scale"]))
        qc.emit(spec.MEM_LOAD, scale, em.constant_addr(static), samples)
    quantised = qc.buffer.alloc(samples * size, f"{op.name} quantised map")
    for s in range(samples):
        qc.emit(spec.SIMD_QUANT, quantised + s * size, src + s * size, scale + s, bits, signed,
                size)  # fmt: skip
    em.release_dead(im2col)
    padded_h, padded_w = height + top + bottom, width + left + right
    plane = padded_h * padded_w
    planes = samples * channels  # (sample, channel) pairs, each a plane of its own
    padded = quantised
    if plane != height * width:
        padded = qc.buffer.alloc(planes * plane, f"{op.name} padded map")
        zero = em.const_local(qcore, 0.0)
        qc.copy2d(padded, zero, plane, planes, (0, 0, plane))  # zero fill
        for c in range(planes):
            qc.copy2d(padded + c * plane + top * padded_w + left, quantised + c * height * width,
                      width, height, (1, width, padded_w))  # fmt: skip
        qc.buffer.release(quantised, samples * size)
    if qcore != home:
        incoming = hc.buffer.alloc(samples, f"{op.name} input scale")
        em.transfer(qcore, scale, home, incoming, samples)
        qc.buffer.release(scale, samples)
        scale = incoming

    # 2.-4. blocks of output rows, taking turns on the weights' copies (schedule = balanced):
    # a copy gets the padded map and the scale once, builds its blocks' windows, finishes
    # them on its own first core and sends each finished block to the output.
    copies = [(op.attrs["placement"], qcore, home)] + [
        (copy, copy[0][0], copy[0][0]) for copy in op.attrs.get("copies", ())
    ]
    maps, scales = {0: padded}, {0: scale}
    for r, (_, core, _) in enumerate(copies[1:], start=1):
        maps[r] = em.cores[core].buffer.alloc(planes * plane, f"{op.name} map copy")
        em.transfer(qcore, padded, core, maps[r], planes * plane)
        scales[r] = em.cores[core].buffer.alloc(samples, f"{op.name} input scale")
        em.transfer(home, scale, core, scales[r], samples)
    cols = em.target.xbar.cols
    per_row = (k + n + 2 * cols) * out_w
    budget = min(em.target.core.buffer_words // 4, spec.MAX_COUNT)  # every vector fits a count
    block_rows = max(1, min(-(-out_h // len(copies)), budget // per_row))
    y_base = hc.buffer.alloc(samples * n * pixels, op.name)
    blocks = [(s, row0) for s in range(samples) for row0 in range(0, out_h, block_rows)]
    for turn, (s, row0) in enumerate(blocks):
        r = turn % len(copies)
        placement, q_r, home_r = copies[r]
        qc_r, hc_r = em.cores[q_r], em.cores[home_r]
        y_addr = y_base + s * n * pixels  # sample s's (O x P) output
        sample_map = maps[r] + s * channels * plane
        rows = min(block_rows, out_h - row0)
        m = rows * out_w
        xt = qc_r.buffer.alloc(k * m, f"{op.name} windows")
        for c in range(channels):
            for ky in range(kh):
                for kx in range(kw):
                    offset = c * plane + (row0 * sh + ky * dh) * padded_w + kx * dw
                    qc_r.copy2d(xt + ((c * kh + ky) * kw + kx) * m, sample_map + offset, out_w,
                                rows, (sw, sh * padded_w, out_w))  # fmt: skip
        block = y_addr if m == pixels else hc_r.buffer.alloc(n * m, f"{op.name} block")
        remote = _send_windows(em, op, placement, q_r, xt, m)

        def x_at(
            core: int,
            tile: Tile,
            m: int = m,
            xt: int = xt,
            q_r: int = q_r,
            remote: dict[int, tuple[int, int, int]] = remote,
        ) -> int:
            if core == q_r:
                return xt + tile.row0 * m
            addr, first, _ = remote[core]
            return addr + (tile.row0 - first) * m

        em.tile_products(op, x_at, block, m, (placement, home_r))
        for core, (addr, _, count) in remote.items():
            em.cores[core].buffer.release(addr, count * m)
        if slicing.offset:  # the stored weights are w + offset: subtract offset * sum(x)
            sums = qc_r.buffer.alloc(m, f"{op.name} input sums")
            qc_r.emit(spec.SIMD_COPY, sums, xt, m)
            for row in range(1, k):
                qc_r.emit(spec.SIMD_ADD, sums, sums, xt + row * m, m)
            qc_r.emit(spec.SIMD_MUL_S, sums, sums, em.const_local(q_r, slicing.offset), m)
            if q_r != home_r:
                moved = hc_r.buffer.alloc(m, f"{op.name} input sums")
                em.transfer(q_r, sums, home_r, moved, m)
                qc_r.buffer.release(sums, m)
                sums = moved
            for o in range(n):
                hc_r.emit(spec.SIMD_SUB, block + o * m, block + o * m, sums, m)
            hc_r.buffer.release(sums, m)
        qc_r.buffer.release(xt, k * m)
        w_scales = em.vector_local(home_r, em.graph.constants[w_scale])
        biases = em.vector_local(home_r, em.graph.constants[bias])
        hc_r.emit(spec.SIMD_MUL_S, block, block, scales[r] + s, n * m)
        for o in range(n):
            hc_r.emit(spec.SIMD_MUL_S, block + o * m, block + o * m, w_scales + o, m)
            hc_r.emit(spec.SIMD_ADD_S, block + o * m, block + o * m, biases + o, m)
        activation = op.attrs.get("activation", "none")
        if activation in ACTIVATION_ROWS:
            hc_r.emit(ACTIVATION_ROWS[activation], block, block, n * m)
        if block != y_addr:  # into the (O x P) output at the block's first pixel
            if home_r != home:  # a copy's block travels to the output first
                arrived = hc.buffer.alloc(n * m, f"{op.name} block")
                em.transfer(home_r, block, home, arrived, n * m)
                hc_r.buffer.release(block, n * m)
                block = arrived
            hc.copy2d(y_addr + row0 * out_w, block, m, n, (1, m, pixels))
            hc.buffer.release(block, n * m)
    for r, (_, core, _) in enumerate(copies[1:], start=1):
        em.cores[core].buffer.release(maps[r], planes * plane)
        em.cores[core].buffer.release(scales[r], samples)
    if padded != quantised:
        qc.buffer.release(padded, planes * plane)
    else:
        qc.buffer.release(quantised, samples * size)
    hc.buffer.release(scale, samples)  # on the home core by now
    em.define(op.outputs[0], home, y_base)
    em.channel_major.add(id(op.outputs[0]))


def _map_scales(em: Emitter, op: Op, core: int, src: int, samples: int, size: int) -> int:
    """`samples` words: max|map s| / qmax for each sample's map of `size` words at src, the
    interpreter's per-sample scale_over "map" (`input_scale`)."""
    bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
    qmax = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    scale = em.cores[core].buffer.alloc(samples, f"{op.name} input scale")
    for s in range(samples):
        em.reduce(core, spec.SIMD_RABSMAX, scale + s, src + s * size, size)
    em.cores[core].emit(spec.SIMD_DIV_S, scale, scale, em.const_local(core, qmax), samples)
    return scale


def _send_windows(
    em: Emitter, op: Op, placement: tuple[tuple[int, int], ...], qcore: int, xt: int, m: int
) -> dict[int, tuple[int, int, int]]:
    """X^T's rows that each other core's tiles read, sent there once per block:
    core -> (address, first row, rows)."""
    tiles = op.attrs["tiles"]
    remote: dict[int, tuple[int, int, int]] = {}
    for core in dict.fromkeys(core for core, _ in placement if core != qcore):
        mine = [t for t, (c, _) in zip(tiles, placement, strict=True) if c == core]
        first, last = min(t.row0 for t in mine), max(t.row1 for t in mine)
        addr = em.cores[core].buffer.alloc((last - first) * m, f"{op.name} windows")
        em.transfer(qcore, xt + first * m, core, addr, (last - first) * m)
        remote[core] = (addr, first, last - first)
    return remote
