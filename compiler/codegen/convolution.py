"""A 2-D convolution (Im2Col -> QDense -> Transpose) in blocks of pixels, and a crossbar
layer whose input rests in memory (as a 1x1 convolution).

The input map is read where it rests (a tile's memory, the global memory, or the buffer of
the one core that holds the map and every tile). Every core that holds tiles keeps a line
buffer of the zero-padded, quantised input rows its tiles read, for its channels: rows that
neighbouring blocks share stay, so each input is loaded once. From it the core lays out its
own part of the windows transposed, X^T, with one strided `simd.copy2d` per kernel offset
and output row over its whole channels, and each tile streams the block through its array
with one `xbar.mvmb`. The result is channel-major, so the conv's Transpose costs nothing; a
large result rests in memory, stored block by block. The tiles, their products and the
epilogue are the crossbar layer's (codegen/dense.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.codegen.dense import epilogue, program_tiles, tile_by_tile, tile_products
from imcc.compiler.codegen.emitter import CoreCode, Emitter, Resident, Source, lowers
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Op, Value
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
    emit_conv_blocks(em, op, _Geometry.of(im2col), im2col.inputs[0])
    em.release_dead(im2col)
    em.channel_major.add(id(op.outputs[0]))


def in_parts(em: Emitter, op: ops.QDense) -> bool:
    """A crossbar layer whose input rests in memory, or whose result is too large for a
    buffer: it runs as a 1x1 convolution over a 1x1 map of k channels per input row, so
    each core loads only the rows of X its tiles read."""
    x = op.inputs[0]
    resting = em.resting(x) is not None and (em.large(x) or em.root(id(x)) in em.resident)
    large = bool(op.outputs) and em.large(op.outputs[0], op.core)
    if not (resting or large) or id(x) in em.deferred:
        return False
    return not tile_by_tile(op)


@lowers(ops.QDense, when=in_parts)
def lower_dense_in_parts(em: Emitter, op: ops.QDense) -> None:
    program_tiles(em, op)
    k = op.inputs[1].shape[0]
    emit_conv_blocks(em, op, _Geometry.dense(op.inputs[0].type.size // k, k), op.inputs[0])


def emit_conv_blocks(em: Emitter, op: ops.QDense, g: _Geometry, x_map: Value) -> None:
    """A convolution as a few block instructions per layer, independent of its pixel count.

    1. The input map rests in memory (a tile's shared memory, or the global memory): it is
       stored there first if a core's buffer holds it. Its scale is one word per sample:
       the calibrated one, or max|map| / qmax reduced over the map in chunks.
    2. Blocks of output pixels (whole rows, or part of one row when a row does not fit) take
       turns on the weights' copies (schedule = balanced), in runs of neighbouring blocks.
       Every core that holds tiles keeps a line buffer (`_Band`) of the input rows the block
       needs, for the channels its tiles' rows read, zero-padded: the rows a block shares
       with the previous one are kept, only new rows are loaded and quantised, so each
       input is read from memory once per copy of the weights.
    3. From its band each core lays out its part of the windows transposed, X^T (rows of
       its tiles x m pixels), one `simd.copy2d` per kernel row (c, ky, kx); each tile streams
       the block through its array with one `xbar.mvmb`; slices recombine and partial sums
       add on the copy's home core (codegen/dense.py `tile_products`).
    4. On the home core: with the offset encoding, y -= offset * sum(x) per pixel (the sums
       come from the cores of one output block's tiles, which partition the rows); the
       epilogue (scales, bias, activation, two scalar instructions per output channel); and
       the block lands in the output, channel-major (O x P), which is what the conv's
       Transpose asks for, so that Transpose is free. A large output rests in memory and
       each block is stored there, one move per output channel.
    """
    out = op.outputs[0]
    n = op.inputs[1].shape[1]
    home = op.core
    copies = [(op.placement, home)] + [(copy, copy[0][0]) for copy in op.copies]
    source = _map_source(em, x_map, copies)
    quantising = {core for placement, _ in copies for core, _ in placement}
    scales = _scales(em, op, x_map, source, g, quantising | {h for _, h in copies})
    slices = {
        core: _rows_of(op, placement, core) for placement, _ in copies for core, _ in placement
    }
    block_rows, block_cols, width = _block_shape(em, op, g, copies, slices)
    bands = {
        core: _Band(em, core, g, (lo // g.kk, -(-hi // g.kk)), (block_rows, width))
        for core, (lo, hi) in slices.items()
    }
    pixels = g.out_h * g.out_w
    result = None
    if em.large(out, home):
        result = em.rest(out, em.readers(out) | {h for _, h in copies})
    y_base = -1
    if result is None:
        y_base = em.cores[home].buffer.alloc(g.samples * n * pixels, op.name)
    # with a line buffer of part of a row, blocks go down a column of blocks first, so it
    # keeps the rows neighbouring blocks share
    blocks = [
        (s, row0, col0)
        for s in range(g.samples)
        for col0 in range(0, g.out_w, block_cols)
        for row0 in range(0, g.out_h, block_rows)
    ]
    if width == g.padded_w:
        blocks.sort()
    for turn, (s, row0, col0) in enumerate(blocks):
        placement, home_r = copies[turn * len(copies) // len(blocks)]  # runs of neighbours
        rows, cols = min(block_rows, g.out_h - row0), min(block_cols, g.out_w - col0)
        m = rows * cols
        xts: dict[int, int] = {}
        for core in dict.fromkeys(core for core, _ in placement):
            band = bands[core]
            band.advance(em, source, scales[core] + s, op, s, (row0, rows, col0))
            xts[core] = band.windows(em.cores[core], slices[core], col0, rows, cols)
        hc_r = em.cores[home_r]
        block = hc_r.buffer.alloc(n * m, f"{op.name} block")

        def x_at(core: int, tile: Tile, xts: dict[int, int] = xts, m: int = m) -> int:
            return xts[core] + (tile.row0 - slices[core][0]) * m

        tile_products(em, op, x_at, block, m, (placement, home_r))
        if op.slicing.offset:  # the stored weights are w + offset: subtract offset * sum(x)
            _subtract_offsets(em, op, placement, home_r, xts, slices, bands, block, m)
        for core, addr in xts.items():
            lo, hi = slices[core]
            if addr != bands[core].addr:
                em.cores[core].buffer.release(addr, (hi - lo) * m)
        epilogue(em, op, home_r, block, scales[home_r] + s, pixels=m)
        first = s * n * pixels + row0 * g.out_w + col0  # the block's first pixel, channel 0
        _write_block(em, op, (home_r, block, m), first, pixels, result if result else y_base)
    for core, band in bands.items():
        band.release(em.cores[core])
    for core, addr in scales.items():
        em.cores[core].buffer.release(addr, g.samples)
    if result is None:
        em.define(out, home, y_base)


def _write_block(
    em: Emitter,
    op: ops.QDense,
    block: tuple[int, int, int],
    first: int,
    pixels: int,
    result: Resident | int,
) -> None:
    """A finished block (on core home_r at addr, n x m channel-major) into the result at
    pixel `first` of channel 0: stored where the result rests, one move per channel, or
    copied into the output buffer on the home core (sent there first from a copy's core).
    A block is whole rows or part of one, so its m pixels are consecutive in each channel."""
    home_r, addr, m = block
    n = op.inputs[1].shape[1]
    cc = em.cores[home_r]
    if isinstance(result, Resident):
        for o in range(n):
            em.move(home_r, result, first + o * pixels, addr + o * m, m, load=False)
    else:
        if home_r != op.core:
            arrived = em.cores[op.core].buffer.alloc(n * m, f"{op.name} block")
            em.transfer(home_r, addr, op.core, arrived, n * m)
            cc.buffer.release(addr, n * m)
            addr, cc = arrived, em.cores[op.core]
        cc.copy2d(result + first, addr, m, n, (1, m, pixels))
    cc.buffer.release(addr, n * m)


@dataclass(frozen=True, slots=True)
class _Geometry:
    """A 2-D convolution's input map (samples, channels, height, width), its window, its
    output rows and columns, the zero-padded map's row length and the kernel's size."""

    samples: int
    channels: int
    height: int
    width: int
    window: Window
    out_h: int
    out_w: int
    padded_w: int
    kk: int  # kh * kw: rows of X^T per input channel

    @staticmethod
    def of(im2col: Op) -> _Geometry:
        samples, channels, height, width = im2col.inputs[0].shape
        window = Window.of(im2col.attrs, 2)
        _, left, _, right = window.pads
        out_h, out_w = window.output((height, width))
        kh, kw = window.kernel
        return _Geometry(
            samples, channels, height, width, window, out_h, out_w, width + left + right, kh * kw
        )

    @staticmethod
    def dense(rows: int, k: int) -> _Geometry:
        """A crossbar layer over `rows` input rows of k words: a 1x1 kernel on 1x1 maps of k
        channels, one sample per row."""
        one = Window((1, 1), (1, 1), (0, 0, 0, 0), (1, 1))
        return _Geometry(rows, k, 1, 1, one, 1, 1, 1, 1)

    def band_rows(self, rows: int) -> int:
        """Padded input rows that `rows` consecutive output rows read."""
        (kh, _), (sh, _), (dh, _) = self.window.kernel, self.window.strides, self.window.dilations
        return (rows - 1) * sh + (kh - 1) * dh + 1

    def band_cols(self, cols: int) -> int:
        """Padded input columns that `cols` consecutive output columns read (at most a row)."""
        (_, kw), (_, sw), (_, dw) = self.window.kernel, self.window.strides, self.window.dilations
        return min(self.padded_w, (cols - 1) * sw + (kw - 1) * dw + 1)


Copies = list[tuple[tuple[tuple[int, int], ...], int]]  # (placement, home core) per copy


def _rows_of(op: ops.QDense, placement: tuple[tuple[int, int], ...], core: int) -> tuple[int, int]:
    """The rows [lo, hi) of X^T that `core`'s tiles read (they may leave gaps)."""
    mine = [t for t, (c, _) in zip(op.tiles, placement, strict=True) if c == core]
    return min(t.row0 for t in mine), max(t.row1 for t in mine)


def _map_source(em: Emitter, x_map: Value, copies: Copies) -> Source:
    """Where the layer reads its input map. A map a core's buffer holds stays there when
    that core holds every tile; else it is stored in memory first (one move), in the tile
    of the cores that read it when they share one."""
    res = em.resting(x_map)
    if res is not None:
        return res
    holder = em.holder(x_map)
    readers = {core for placement, _ in copies for core, _ in placement} | {holder}
    if readers == {holder}:
        return (holder, em.local(x_map, holder))
    res = em.rest(x_map, readers)
    em.move(holder, res, 0, em.local(x_map, holder), x_map.type.size, load=False)
    return res


def _scales(
    em: Emitter, op: ops.QDense, x_map: Value, source: Source, g: _Geometry, cores: set[int]
) -> dict[int, int]:
    """Per core of `cores`: `samples` words holding each sample's input scale, the
    calibrated one (loaded) or max|map s| / qmax (scale_over "map"), reduced in chunks of
    the resting map on the home core and sent to the others."""
    samples = g.samples
    if op.attrs["input_scale"] is not None:
        static = em.constant_addr(np.full(samples, float(op.attrs["input_scale"])))
        scales = {}
        for core in sorted(cores):
            scales[core] = em.cores[core].buffer.alloc(samples, f"{op.name} input scale")
            em.cores[core].emit(spec.MEM_LOAD, scales[core], static, samples)
        return scales
    bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
    size = x_map.type.size // samples
    if isinstance(source, Resident):
        home = op.core
        if source.space is spec.Space.TILE and em.tile(home) != source.tile:
            home = min(c for c in range(len(em.cores)) if em.tile(c) == source.tile)
        hc = em.cores[home]
        scale = hc.buffer.alloc(samples, f"{op.name} input scale")
        chunk = max(1, min(size, spec.MAX_COUNT, hc.buffer.largest() // 4))
        parts = -(-size // chunk)
        scratch = hc.buffer.alloc(chunk + parts, f"{op.name} map chunk")
        for s in range(samples):
            for i in range(parts):
                n = min(chunk, size - i * chunk)
                em.move(home, source, s * size + i * chunk, scratch, n, load=True)
                hc.emit(spec.SIMD_RABSMAX, scratch + chunk + i, scratch, n)
            hc.emit(spec.SIMD_RABSMAX, scale + s, scratch + chunk, parts)
        hc.buffer.release(scratch, chunk + parts)
    else:
        home, addr = source
        hc = em.cores[home]
        scale = hc.buffer.alloc(samples, f"{op.name} input scale")
        for s in range(samples):
            em.reduce(home, spec.SIMD_RABSMAX, scale + s, addr + s * size, size)
    hc.emit(spec.SIMD_DIV_S, scale, scale, em.const_local(home, qmax(bits, signed)), samples)
    scales = {home: scale}
    for core in sorted(cores - {home}):
        scales[core] = em.cores[core].buffer.alloc(samples, f"{op.name} input scale")
        em.transfer(home, scale, core, scales[core], samples)
    if home not in cores:
        hc.buffer.release(scale, samples)
        del scales[home]
    return scales


def _block_shape(
    em: Emitter,
    op: ops.QDense,
    g: _Geometry,
    copies: Copies,
    slices: dict[int, tuple[int, int]],
) -> tuple[int, int, int]:
    """(rows, cols, line buffer width) of the largest output block every core's buffer has
    room for, using at most half of each core's largest free run: its line buffer, X^T and
    the MVM outputs of its tiles, and on a home core the block itself. Whole output rows
    when one fits (cols is the row); else part of one row, with a line buffer of whole
    padded rows (each input loaded once) unless one of only the columns a block reads
    allows blocks more than twice as wide; at least one pixel."""
    n = op.inputs[1].shape[1]
    cols_out = max(t.outputs for t in op.tiles) * op.slicing.cols_per_output
    homes = {h for _, h in copies}

    def fits(rows: int, cols: int, width: int) -> bool:
        return _fits(em, g, slices, homes, n, cols_out, (rows, cols, width))

    for rows in range(g.out_h, 0, -1):
        if fits(rows, g.out_w, g.padded_w):
            return rows, g.out_w, g.padded_w
    wide = next((c for c in range(g.out_w - 1, 0, -1) if fits(1, c, g.padded_w)), 0)
    narrow = next((c for c in range(g.out_w - 1, 0, -1) if fits(1, c, g.band_cols(c))), 1)
    if wide and 2 * wide >= narrow:
        return 1, wide, g.padded_w
    return 1, narrow, g.band_cols(narrow)


def _fits(
    em: Emitter,
    g: _Geometry,
    slices: dict[int, tuple[int, int]],
    homes: set[int],
    n: int,
    cols_out: int,
    block: tuple[int, int, int],
) -> bool:
    """Whether a block of rows x cols pixels and its line buffer fit every core."""
    rows, cols, width = block
    m = rows * cols
    for core, (lo, hi) in slices.items():
        channels = -(-hi // g.kk) - lo // g.kk
        band = channels * g.band_rows(rows) * width
        words = band + m * ((hi - lo) + 2 * cols_out + (2 * n if core in homes else n))
        if words > em.cores[core].buffer.largest() // 2 or m * max(n, hi - lo) > spec.MAX_COUNT:
            return False
    return all(2 * n * m <= em.cores[c].buffer.largest() // 2 for c in homes - set(slices))


class _Band:
    """A core's line buffer: the zero-padded, quantised input rows that the current block
    reads, for channels [ch_lo, ch_hi), each channel a plane of `rows` rows of `width`
    padded columns: whole padded rows, or, for blocks of part of a row, the columns
    [first_col, first_col + width) those blocks read."""

    def __init__(
        self,
        em: Emitter,
        core: int,
        g: _Geometry,
        channels: tuple[int, int],
        shape: tuple[int, int],
    ) -> None:
        self.g, self.ch_lo, self.channels = g, channels[0], channels[1] - channels[0]
        block_rows, self.width = shape
        self.rows = g.band_rows(block_rows)
        self.plane = self.rows * self.width
        cc = em.cores[core]
        self.addr = cc.buffer.alloc(self.channels * self.plane, "line buffer")
        self.zero = em.const_local(core, 0.0)
        self.core = core
        # the block the band holds: its sample, first padded column and padded rows
        # [first, first + held)
        self.sample, self.first_col, self.first, self.held = -1, 0, 0, 0
        self.clear(cc)

    def clear(self, cc: CoreCode) -> None:
        cc.copy2d(self.addr, self.zero, self.plane, self.channels, (0, 0, self.plane))

    def advance(
        self, em: Emitter, source: Source, scale: int, op: ops.QDense, s: int,
        block: tuple[int, int, int],
    ) -> None:  # fmt: skip
        """Hold the padded rows that output rows row0 .. row0 + rows read (for the block's
        columns): rows shared with the previous block move to the top, the rest are loaded
        and quantised (or zeroed). A band of part of a row starts afresh at a new column."""
        g, cc = self.g, em.cores[self.core]
        row0, rows, col0 = block
        (sh, sw), width = g.window.strides, self.width
        first_col = 0 if width == g.padded_w else col0 * sw
        first, need = row0 * sh, g.band_rows(rows)
        keep = 0
        same = (s, first_col) == (self.sample, self.first_col)
        if same and self.first <= first < self.first + self.held:
            keep = min(self.first + self.held - first, need)
            shift = first - self.first
            if shift and keep:  # every read before any write: an overlapping move is safe
                cc.copy2d(self.addr, self.addr + shift * width, keep * width, self.channels,
                          (1, self.plane, self.plane))  # fmt: skip
        elif not same and width != g.padded_w and self.sample >= 0:
            self.clear(cc)  # the pad columns sit elsewhere in a band of other columns
        self.sample, self.first_col, self.first, self.held = s, first_col, first, need
        plane_in = g.height * g.width
        if not keep and first == 0 and need * width == plane_in == self.plane:
            # the band holds its channels' planes whole, as memory does: one move, one quant
            self.load(em, source, scale, op, (s * g.channels + self.ch_lo) * plane_in,
                      self.addr, self.channels * plane_in)  # fmt: skip
            return
        top, left = g.window.pads[0], g.window.pads[1]
        lo = max(0, first_col - left)  # the input columns the band holds
        hi = min(g.width, first_col - left + width)
        for b in range(keep, need):
            y = first + b - top  # the input row band row b holds
            at = self.addr + b * width
            if not 0 <= y < g.height:  # a padding row
                cc.copy2d(at, self.zero, width, self.channels, (0, 0, self.plane))
                continue
            for c in range(self.channels):
                offset = (s * g.channels + self.ch_lo + c) * plane_in + y * g.width + lo
                dst = at + c * self.plane + lo - (first_col - left)
                self.load(em, source, scale, op, offset, dst, hi - lo)

    def load(
        self, em: Emitter, source: Source, scale: int, op: ops.QDense, offset: int, dst: int,
        n: int,
    ) -> None:  # fmt: skip
        """n words of the input at `offset` into the band at dst, quantised in place."""
        bits, signed = op.attrs["input_bits"], int(op.attrs["input_signed"])
        em.fetch(self.core, source, offset, dst, n)
        em.cores[self.core].emit(spec.SIMD_QUANT, dst, dst, scale, bits, signed, n)

    def windows(self, cc: CoreCode, rows_range: tuple[int, int], col0: int, rows: int,
                cols: int) -> int:  # fmt: skip
        """X^T for the block: row r - lo holds kernel row r = (c, ky, kx) of lo .. hi for
        the block's m = rows x cols pixels, one strided copy each. Returns its address."""
        g = self.g
        lo, hi = rows_range
        (_, kw), (sh, sw), (dh, dw) = g.window.kernel, g.window.strides, g.window.dilations
        m = rows * cols
        whole = (lo, hi) == (self.ch_lo, self.ch_lo + self.channels) and m == self.plane
        if whole and g.kk == 1 and (sh, sw) == (1, 1) and not any(g.window.pads):
            return self.addr  # a 1x1 kernel over whole planes: X^T is the band itself
        xt = cc.buffer.alloc((hi - lo) * m, "windows")
        at = col0 * sw - self.first_col  # the block's first window, in the band's columns

        def source(c: int, ky: int, kx: int) -> int:
            return self.addr + (c - self.ch_lo) * self.plane + ky * dh * self.width + at + kx * dw

        # channels whose kh x kw rows all lie in lo .. hi: per kernel offset and output row,
        # one copy over them all (a channel apart is a plane in the band, kk rows in X^T)
        whole_lo, whole_hi = -(-lo // g.kk), hi // g.kk
        for r in range(lo, hi):
            c, rest = divmod(r, g.kk)
            ky, kx = divmod(rest, kw)
            if whole_lo <= c < whole_hi:
                if c == whole_lo:
                    for row in range(rows):
                        cc.copy2d(xt + (r - lo) * m + row * cols,
                                  source(c, ky, kx) + row * sh * self.width, cols,
                                  whole_hi - whole_lo, (sw, self.plane, g.kk * m))  # fmt: skip
                continue
            cc.copy2d(xt + (r - lo) * m, source(c, ky, kx), cols, rows,
                      (sw, sh * self.width, cols))  # fmt: skip
        return xt

    def release(self, cc: CoreCode) -> None:
        cc.buffer.release(self.addr, self.channels * self.plane)


def _subtract_offsets(
    em: Emitter,
    op: ops.QDense,
    placement: tuple[tuple[int, int], ...],
    home_r: int,
    xts: dict[int, int],
    slices: dict[int, tuple[int, int]],
    bands: dict[int, _Band],
    block: int,
    m: int,
) -> None:
    """y -= offset * sum(x) per pixel (the offset encoding). The tiles of the first output
    block partition X^T's rows: each of their cores adds its rows, scales by the offset and
    sends the m sums home, where they add up and come off every output channel. The MVMs
    have read X^T, so its rows may be added in place: log2(rows) vector adds."""
    n = op.inputs[1].shape[1]
    out0 = op.tiles[0].out0
    hc = em.cores[home_r]
    total = -1
    for core in dict.fromkeys(core for core, _ in placement):
        tiles = [t for t, (c, _) in zip(op.tiles, placement, strict=True)
                 if c == core and t.out0 == out0]  # fmt: skip
        if not tiles:
            continue
        cc = em.cores[core]
        sums = cc.buffer.alloc(m, f"{op.name} input sums")
        lo = slices[core][0]
        rows = sorted(r for t in tiles for r in range(t.row0, t.row1))
        base, count = xts[core] + (rows[0] - lo) * m, len(rows)
        if rows == list(range(rows[0], rows[0] + count)) and xts[core] != bands[core].addr:
            # X^T is spent: fold its rows in halves, each fold one vector add
            while count > 1:
                half = count // 2
                cc.emit(spec.SIMD_ADD, base, base, base + (count - half) * m, half * m)
                count -= half
            cc.emit(spec.SIMD_MUL_S, sums, base, em.const_local(core, op.slicing.offset), m)
        else:
            cc.emit(spec.SIMD_COPY, sums, base, m)
            for r in rows[1:]:
                cc.emit(spec.SIMD_ADD, sums, sums, xts[core] + (r - lo) * m, m)
            cc.emit(spec.SIMD_MUL_S, sums, sums, em.const_local(core, op.slicing.offset), m)
        if core != home_r:
            arrived = hc.buffer.alloc(m, f"{op.name} input sums")
            em.transfer(core, sums, home_r, arrived, m)
            cc.buffer.release(sums, m)
            sums = arrived
        if total < 0:
            total = sums
        else:
            hc.emit(spec.SIMD_ADD, total, total, sums, m)
            hc.buffer.release(sums, m)
    for o in range(n):
        hc.emit(spec.SIMD_SUB, block + o * m, block + o * m, total, m)
    hc.buffer.release(total, m)
