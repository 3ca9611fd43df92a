"""A 2-D convolution (Im2Col -> QDense -> Transpose) in blocks of pixels.

The input map is quantised once (one scale per sample, QDense scale_over "map") into a
zero-padded copy; for a block of output rows the windows are laid out transposed, one strided
`simd.copy2d` per kernel row (c, ky, kx), and every tile streams the whole block through its
array with one `xbar.mvmb`. The code is O(k + tiles + O) per block, independent of the pixel
count: a 224x224 ResNet-18 is 235k instructions. The result is channel-major, so the conv's
Transpose costs nothing. Windows are copied, not reused: X^T holds every input about
kh * kw / (sh * sw) times, which the copies pay for. The tiles, their products and the
epilogue are the crossbar layer's (codegen/dense.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.codegen.dense import (
    epilogue,
    input_core,
    program_tiles,
    tile_by_tile,
    tile_products,
)
from imcc.compiler.codegen.emitter import CoreCode, Emitter, lowers
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Op
from imcc.compiler.ir.crossbar import Tile
from imcc.compiler.ir.windows import Window
from imcc.isa import spec
from imcc.isa.numerics import qmax

# -- convolutions in blocks of pixels ----------------------------------------------------------


def in_pixel_blocks(em: Emitter, op: ops.QDense) -> bool:
    """A lowered 2-D Conv (Im2Col -> QDense -> Transpose(0, 2, 1)) whose tiles each have an
    array of their own runs in pixel blocks; anything else keeps the row path (dense.py)."""
    im2col = em.deferred.get(id(op.inputs[0]))
    if im2col is None or tile_by_tile(op) or len(im2col.inputs[0].shape) != 4:
        return False
    users = em.graph.users(op.outputs[0])
    return (
        (op.attrs["input_scale"] is not None or op.attrs.get("scale_over") == "map")
        and op.outputs[0] not in em.graph.outputs
        and len(users) == 1
        and isinstance(users[0], ops.Transpose)
        and tuple(users[0].attrs["perm"]) == (0, 2, 1)
    )


@lowers(ops.QDense, when=in_pixel_blocks)
def lower_conv(em: Emitter, op: ops.QDense) -> None:
    program_tiles(em, op)
    im2col = em.deferred.pop(id(op.inputs[0]))
    emit_conv_blocks(em, op, im2col, input_core(em, op, im2col.inputs[0]))


def emit_conv_blocks(em: Emitter, op: ops.QDense, im2col: Op, qcore: int) -> None:
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
    g = _Geometry.of(im2col)
    samples, channels, plane = g.samples, g.channels, g.plane
    out_h, out_w = g.out_h, g.out_w
    pixels = out_h * out_w
    k, n = op.inputs[1].shape
    home = op.core
    hc = em.cores[home]
    padded, quantised, scale = _padded_map(em, op, im2col, qcore, g)
    planes = samples * channels  # (sample, channel) pairs, each a plane of its own

    # 2.-4. blocks of output rows, taking turns on the weights' copies (schedule = balanced):
    # a copy gets the padded map and the scale once, builds its blocks' windows, finishes
    # them on its own first core and sends each finished block to the output.
    copies = [(op.placement, qcore, home)] + [(copy, copy[0][0], copy[0][0]) for copy in op.copies]
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
        _lay_out_windows(qc_r, g, xt, sample_map, row0, rows)
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

        tile_products(em, op, x_at, block, m, (placement, home_r))
        for core, (addr, _, count) in remote.items():
            em.cores[core].buffer.release(addr, count * m)
        if op.slicing.offset:  # the stored weights are w + offset: subtract offset * sum(x)
            _subtract_offsets(em, op, q_r, home_r, xt, block, m)
        qc_r.buffer.release(xt, k * m)
        epilogue(em, op, home_r, block, scales[r] + s, pixels=m)
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
    qc = em.cores[qcore]
    if padded != quantised:
        qc.buffer.release(padded, planes * plane)
    else:
        qc.buffer.release(quantised, planes * g.height * g.width)
    hc.buffer.release(scale, samples)  # on the home core by now
    em.define(op.outputs[0], home, y_base)
    em.channel_major.add(id(op.outputs[0]))


@dataclass(frozen=True, slots=True)
class _Geometry:
    """A 2-D convolution's input map (samples, channels, height, width), its window, its
    output rows and columns, and the zero-padded map's row length and plane size."""

    samples: int
    channels: int
    height: int
    width: int
    window: Window
    out_h: int
    out_w: int
    padded_w: int
    plane: int

    @staticmethod
    def of(im2col: Op) -> _Geometry:
        samples, channels, height, width = im2col.inputs[0].shape
        window = Window.of(im2col.attrs, 2)
        top, left, bottom, right = window.pads
        out_h, out_w = window.output((height, width))
        padded_w = width + left + right
        plane = (height + top + bottom) * padded_w
        return _Geometry(samples, channels, height, width, window, out_h, out_w, padded_w, plane)


def _padded_map(
    em: Emitter, op: ops.QDense, im2col: Op, qcore: int, g: _Geometry
) -> tuple[int, int, int]:
    """Step 1 on the core that holds the map: the scales, the quantised map and its
    zero-padded copy; the scales then move to the home core. Samples (a leading axis > 1 in
    a graph without a batch axis) are maps of their own, one after another: scale s and map
    s at offset s * (its size). Returns (padded map, quantised map, scales)."""
    x_map = im2col.inputs[0]
    samples, height, width = g.samples, g.height, g.width
    top, left, _, _ = g.window.pads
    bits, signed = op.attrs["input_bits"], int(op.attrs["input_signed"])
    qc = em.cores[qcore]
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
    planes = samples * g.channels
    padded = quantised
    if g.plane != height * width:
        padded = qc.buffer.alloc(planes * g.plane, f"{op.name} padded map")
        zero = em.const_local(qcore, 0.0)
        qc.copy2d(padded, zero, g.plane, planes, (0, 0, g.plane))  # zero fill
        for c in range(planes):
            qc.copy2d(padded + c * g.plane + top * g.padded_w + left,
                      quantised + c * height * width,
                      width, height, (1, width, g.padded_w))  # fmt: skip
        qc.buffer.release(quantised, samples * size)
    if qcore != op.core:
        hc = em.cores[op.core]
        incoming = hc.buffer.alloc(samples, f"{op.name} input scale")
        em.transfer(qcore, scale, op.core, incoming, samples)
        qc.buffer.release(scale, samples)
        scale = incoming
    return padded, quantised, scale


def _lay_out_windows(
    cc: CoreCode, g: _Geometry, xt: int, sample_map: int, row0: int, rows: int
) -> None:
    """X^T (k x m) for output rows row0 .. row0 + rows: row (c, ky, kx) holds that kernel
    offset's input for the block's m pixels, one strided copy each."""
    (kh, kw), (sh, sw), (dh, dw) = g.window.kernel, g.window.strides, g.window.dilations
    m = rows * g.out_w
    for c in range(g.channels):
        for ky in range(kh):
            for kx in range(kw):
                offset = c * g.plane + (row0 * sh + ky * dh) * g.padded_w + kx * dw
                cc.copy2d(xt + ((c * kh + ky) * kw + kx) * m, sample_map + offset, g.out_w,
                          rows, (sw, sh * g.padded_w, g.out_w))  # fmt: skip


def _subtract_offsets(
    em: Emitter, op: ops.QDense, q_r: int, home_r: int, xt: int, block: int, m: int
) -> None:
    """y -= offset * sum(x) per pixel (the offset encoding): the sums are k - 1 vector adds
    over X^T's rows on q_r, then one subtraction per output channel on home_r."""
    k, n = op.inputs[1].shape
    qc_r, hc_r = em.cores[q_r], em.cores[home_r]
    sums = qc_r.buffer.alloc(m, f"{op.name} input sums")
    qc_r.emit(spec.SIMD_COPY, sums, xt, m)
    for row in range(1, k):
        qc_r.emit(spec.SIMD_ADD, sums, sums, xt + row * m, m)
    qc_r.emit(spec.SIMD_MUL_S, sums, sums, em.const_local(q_r, op.slicing.offset), m)
    if q_r != home_r:
        moved = hc_r.buffer.alloc(m, f"{op.name} input sums")
        em.transfer(q_r, sums, home_r, moved, m)
        qc_r.buffer.release(sums, m)
        sums = moved
    for o in range(n):
        hc_r.emit(spec.SIMD_SUB, block + o * m, block + o * m, sums, m)
    hc_r.buffer.release(sums, m)


def _map_scales(em: Emitter, op: ops.QDense, core: int, src: int, samples: int, size: int) -> int:
    """`samples` words: max|map s| / qmax for each sample's map of `size` words at src, the
    interpreter's per-sample scale_over "map" (`input_scale`)."""
    bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
    scale = em.cores[core].buffer.alloc(samples, f"{op.name} input scale")
    for s in range(samples):
        em.reduce(core, spec.SIMD_RABSMAX, scale + s, src + s * size, size)
    em.cores[core].emit(
        spec.SIMD_DIV_S, scale, scale, em.const_local(core, qmax(bits, signed)), samples
    )
    return scale


def _send_windows(
    em: Emitter, op: ops.QDense, placement: tuple[tuple[int, int], ...], qcore: int, xt: int, m: int
) -> dict[int, tuple[int, int, int]]:
    """X^T's rows that each other core's tiles read, sent there once per block:
    core -> (address, first row, rows)."""
    tiles = op.tiles
    remote: dict[int, tuple[int, int, int]] = {}
    for core in dict.fromkeys(core for core, _ in placement if core != qcore):
        mine = [t for t, (c, _) in zip(tiles, placement, strict=True) if c == core]
        first, last = min(t.row0 for t in mine), max(t.row1 for t in mine)
        addr = em.cores[core].buffer.alloc((last - first) * m, f"{op.name} windows")
        em.transfer(qcore, xt + first * m, core, addr, (last - first) * m)
        remote[core] = (addr, first, last - first)
    return remote
