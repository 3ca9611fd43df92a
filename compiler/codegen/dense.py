"""Crossbar layers (QDense): programming the tiles, quantising each input row, every tile's
MVM with its bit slices recombined and its partial sums added on the home core, then one
epilogue: y = act(y_int * s_x * s_w + b).

Before: QDense carries `slicing` (bitslice), `tiles` (tile), `placement` and `copies` (place),
`adc_ranges` (adc-range) and `core` (schedule). The row path here serves every QDense but a
2-D convolution's, which runs in pixel blocks (codegen/convolution.py) on the same services
(`program_tiles`, `tile_products`, `epilogue`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from imcc.compiler.codegen.emitter import CoreCode, Emitter, lowers
from imcc.compiler.codegen.movement import window_rows
from imcc.compiler.ir import ops
from imcc.compiler.ir.core import TensorType, Value
from imcc.compiler.ir.crossbar import Slicing, Tile, tile_levels
from imcc.isa import spec
from imcc.isa.numerics import qmax
from imcc.isa.program import Binding, XbarImage

ACTIVATION_ROWS = {
    ops.Activation.RELU: spec.SIMD_RELU,
    ops.Activation.SIGMOID: spec.SIMD_SIGMOID,
    ops.Activation.TANH: spec.SIMD_TANH,
}


def tile_by_tile(op: ops.QDense) -> bool:
    """True when tiles share arrays (a one-row layer over the chip): each tile is programmed
    right before its MVM."""
    return len(set(op.placement)) < len(op.placement)


def program_tiles(em: Emitter, op: ops.QDense) -> None:
    """Every tile's image: bound to its array at load when the array serves it alone,
    programmed in the code before every use when phases share the array, or right before its
    MVM when tiles share arrays; copies (schedule = balanced) bound to the same images."""
    sections = em.sections
    images = []
    by_tile = tile_by_tile(op)
    for index, (tile, (core, array)) in enumerate(zip(op.tiles, op.placement, strict=True)):
        image = len(sections.images)
        sections.images.append(XbarImage(tile_levels(em.graph, op, tile)))
        if by_tile:  # programmed right before its MVM (tile_products)
            em.program_before_mvm[(id(op), index)] = image
        elif em.slot_uses[(core, array)] == 1:  # programmed once, before the first run
            sections.bindings.append(Binding(core, array, image))
        else:  # phases share this array: program it at every use, every inference
            em.cores[core].emit(spec.XBAR_PROGRAM, array, image)
        if op.adc_ranges is not None:
            sections.adc_ranges[image] = np.array(op.adc_ranges[index], dtype=np.float64)
        images.append(image)
    most = spec.WIDTH[spec.OperandKind.IMAGE]
    if len(sections.images) > 1 << most:
        raise op.error(
            f"the binary's image operands cannot hold {len(sections.images):,} crossbar images "
            f"({1 << most:,} at most); use a target with more arrays or fewer weight bits"
        )
    for copy in op.copies:  # schedule = balanced: the same images again
        sections.bindings += [Binding(c, a, i) for (c, a), i in zip(copy, images, strict=True)]


def input_core(em: Emitter, op: ops.QDense, source: Value) -> int:
    """Where to quantise: where `source` already is (the home core for a model input)."""
    here = em.copies.get(em.root(id(source)))
    return op.core if not here or op.core in here else next(iter(here))


@lowers(ops.QDense)
def lower_qdense(em: Emitter, op: ops.QDense) -> None:
    """Program the tiles once; then one MVM pass per k-long input row (for a streamed Im2Col
    input, each window row gathered just before its pass, never the whole matrix)."""
    x, w_int = op.inputs[:2]
    k, n = w_int.shape
    rows = x.type.size // k
    home = op.core
    program_tiles(em, op)
    im2col = em.deferred.pop(id(x), None)
    qcore = input_core(em, op, x if im2col is None else im2col.inputs[0])
    y_addr = em.cores[home].buffer.alloc(rows * n, op.name)
    if im2col is not None:  # one window row at a time, never the whole im2col matrix
        shared = None
        if op.attrs.get("scale_over") == "map" and op.attrs["input_scale"] is None:
            shared = map_scale(em, op, im2col.inputs[0], qcore)
        for row, x_addr in enumerate(window_rows(em, im2col, qcore)):
            emit_row(em, op, qcore, x_addr, y_addr + row * n, shared)
        if shared is not None:
            em.cores[qcore].buffer.release(shared, 1)
    else:
        x_addr = em.local(x, qcore)
        for row in range(rows):
            emit_row(em, op, qcore, x_addr + row * k, y_addr + row * n)
    em.define(op.outputs[0], home, y_addr)


def epilogue(
    em: Emitter,
    op: ops.QDense,
    core: int,
    y: int,
    scale: int,
    pixels: int | None = None,
    release: int = 0,
) -> None:
    """y = act(y * s_x * s_w + b) on `core`, with s_x the word at `scale` (freed after use
    when `release` words are given). One vector of n outputs (pixels None) takes vector
    instructions over them; a convolution's block of m pixels, channel-major (n x m), takes
    two vector-scalar instructions per output channel over its m pixels."""
    cc = em.cores[core]
    constants = em.graph.constants
    _, w_int, w_scale, bias = op.inputs
    n = w_int.shape[1]
    m = 1 if pixels is None else pixels
    if pixels is None:
        cc.emit(spec.SIMD_MUL_S, y, y, scale, n)
        if release:
            cc.buffer.release(scale, release)
        cc.emit(spec.SIMD_MUL, y, y, em.vector_local(core, constants[w_scale]), n)
        cc.emit(spec.SIMD_ADD, y, y, em.vector_local(core, constants[bias]), n)
    else:
        w_scales = em.vector_local(core, constants[w_scale])
        biases = em.vector_local(core, constants[bias])
        cc.emit(spec.SIMD_MUL_S, y, y, scale, n * m)
        if release:
            cc.buffer.release(scale, release)
        for o in range(n):
            cc.emit(spec.SIMD_MUL_S, y + o * m, y + o * m, w_scales + o, m)
            cc.emit(spec.SIMD_ADD_S, y + o * m, y + o * m, biases + o, m)
    activation = op.attrs.get("activation", "none")
    if activation in ACTIVATION_ROWS:
        cc.emit(ACTIVATION_ROWS[activation], y, y, n * m)


def map_scale(em: Emitter, op: ops.QDense, source: Value, core: int) -> int:
    """A one-word buffer holding max|source| / qmax (source: an Im2Col's input map)."""
    cc = em.cores[core]
    bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
    scale = cc.buffer.alloc(1, f"{op.name} input scale")
    em.reduce(core, spec.SIMD_RABSMAX, scale, em.local(source, core), source.type.size)
    cc.emit(spec.SIMD_DIV_S, scale, scale, em.const_local(core, qmax(bits, signed)), 1)
    return scale


def emit_row(
    em: Emitter, op: ops.QDense, qcore: int, x_addr: int, y_addr: int, shared: int | None = None
) -> None:
    """y = act((x_int . w_int - offset * sum(x_int)) * s_x * s_w + b) for one row x;
    s_x is copied from `shared` if given (a convolution's map scale)."""
    x, w_int = op.inputs[:2]
    k, n = w_int.shape
    home = op.core
    bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
    slicing: Slicing = op.slicing
    placement: tuple[tuple[int, int], ...] = op.placement

    # 1. Quantise the row. `scale` holds the input scale and, for the offset encoding,
    # offset * sum(x_int) in the word after it.
    qc = em.cores[qcore]
    offset = slicing.offset
    n_scalars = 2 if offset else 1
    scale = qc.buffer.alloc(n_scalars, f"{op.name} input scale")
    if shared is not None:
        qc.emit(spec.SIMD_COPY, scale, shared, 1)
    elif op.attrs["input_scale"] is None:  # s = max|x| / qmax, per input vector
        qc.emit(spec.SIMD_RABSMAX, scale, x_addr, k)
        qc.emit(spec.SIMD_DIV_S, scale, scale, em.const_local(qcore, qmax(bits, signed)), 1)
    else:
        qc.emit(spec.MEM_LOAD, scale, em.constant_addr(np.array([op.attrs["input_scale"]])), 1)
    xq = Value(f"{op.name}.xq", TensorType((k,), x.type.dtype))  # one row
    xq_addr = qc.buffer.alloc(k, f"{op.name} quantised input")
    qc.emit(spec.SIMD_QUANT, xq_addr, x_addr, scale, bits, int(signed), k)
    em.define(xq, qcore, xq_addr)
    if offset:  # the stored weights are w + offset: y = x.(w + offset) - offset * sum(x)
        qc.emit(spec.SIMD_RSUM, scale + 1, xq_addr, k)
        qc.emit(spec.SIMD_MUL_S, scale + 1, scale + 1, em.const_local(qcore, offset), 1)

    # 2.-3. Every tile's MVM, its slices recombined; partial sums meet on the home core.
    for core in dict.fromkeys(core for core, _ in placement):
        em.local(xq, core)  # the row reaches every tile's core before any MVM starts
    tile_products(em, op, lambda core, tile: em.local(xq, core) + tile.row0, y_addr, vectors=1)
    hc = em.cores[home]
    for core, loc in em.copies.pop(id(xq)).items():
        em.cores[core].buffer.release(loc.addr, loc.size)

    # 4. y = act((y_int - offset * sum(x_int)) * s_x * s_w + b) on the home core.
    if qcore != home:
        incoming = hc.buffer.alloc(n_scalars, f"{op.name} input scale")
        em.transfer(qcore, scale, home, incoming, n_scalars)
        qc.buffer.release(scale, n_scalars)
        scale, qc = incoming, hc
    if offset:
        hc.emit(spec.SIMD_SUB_S, y_addr, y_addr, scale + 1, n)
    epilogue(em, op, home, y_addr, scale, release=n_scalars)


def tile_products(
    em: Emitter,
    op: ops.QDense,
    x_at: Callable[[int, Tile], int],
    y: int,
    vectors: int,
    copy: tuple[tuple[tuple[int, int], ...], int] | None = None,
) -> None:
    """y (outputs x vectors, on the home core) = the integer products of `vectors` input
    vectors with the QDense's weights: each tile's MVM (`xbar.mvm` for one vector, else
    `xbar.mvmb`, whose output keeps each slice's columns contiguous) on the input at
    x_at(core, tile); slices recombined, row blocks' partial sums added where they are
    made, then sent to the home core and added there. `copy` = (placement, home) runs
    on a copy of the weights (schedule = balanced) instead of the op's own arrays."""
    placement = op.placement
    home = op.core
    if copy is not None:
        placement, home = copy
    bits, signed = op.attrs["input_bits"], int(op.attrs["input_signed"])
    slicing: Slicing = op.slicing
    tiles: tuple[Tile, ...] = op.tiles
    sums = _Partials(em, op, home, y, vectors)
    partial = sums.partial
    # A core's MVMs go out together, each into its own columns, then their recombinations:
    # the arrays can work at once (core.overlap). Tiles on consecutive arrays that read one
    # input and have one shape go out as one MVM spanning them (spec.XBAR_MVM's k, PUMA's MVM
    # coalescing), their columns in one run, tile after tile.
    for core, indices in _by_core(placement).items():
        cc = em.cores[core]
        inputs = [x_at(core, tiles[index]) for index in indices]
        spans = _spans(tiles, placement, indices, inputs)
        while spans:
            parts = _batch(spans, tiles, slicing, vectors, cc.buffer.largest())
            words = [_words(tiles[index], slicing, vectors)[1] for part in parts for index in part]
            raw = cc.buffer.alloc(sum(words), f"{op.name} columns")
            batch: list[tuple[int, int, int]] = []
            at = raw
            for part in parts:
                for index in part:
                    image = em.program_before_mvm.get((id(op), index))
                    if image is not None:
                        cc.emit(spec.XBAR_PROGRAM, placement[index][1], image)
                array, k, x = placement[part[0]][1], len(part), x_at(core, tiles[part[0]])
                if vectors == 1:
                    cc.emit(spec.XBAR_MVM, array, x, at, bits, signed, k)
                else:
                    cc.emit(spec.XBAR_MVM_BLOCK, array, x, at, bits, signed, vectors, k)
                for index in part:
                    cols = _words(tiles[index], slicing, vectors)[1]
                    batch.append((index, at, cols))
                    at += cols
            sums.finish(core, batch)
    hc = em.cores[home]
    home_blocks = {out0 for core, out0 in partial if core == home}
    for (core, out0), addr in sorted(partial.items()):
        if core == home:
            continue
        nb = next(t.outputs for t in tiles if t.out0 == out0) * vectors
        at = y + out0 * vectors
        if out0 in home_blocks:
            incoming = hc.buffer.alloc(nb, f"{op.name} incoming partial")
            em.transfer(core, addr, home, incoming, nb)
            hc.emit(spec.SIMD_ADD, at, at, incoming, nb)
            hc.buffer.release(incoming, nb)
        else:
            em.transfer(core, addr, home, at, nb)
            home_blocks.add(out0)
    for core, addr, size in sums.temps:
        em.cores[core].buffer.release(addr, size)


def _batch(
    spans: list[list[int]], tiles: tuple[Tile, ...], slicing: Slicing, vectors: int, left: int
) -> list[list[int]]:
    """The next batch of one core's MVMs, taken off the front of `spans`: tiles while each
    one's columns and twice its partial sums fit half of what the largest free run (`left`
    words) has left, at least one; their columns go in that one run, so the recombinations
    step alike tile by tile. Parts of spans, in order."""
    parts: list[list[int]] = []
    while spans:
        span, fits = spans[0], 0
        for index in span:
            nb, cols = _words(tiles[index], slicing, vectors)
            if (parts or fits) and cols + 2 * nb > left // 2:
                break
            left -= cols
            fits += 1
        if fits:
            parts.append(span[:fits])
        if fits < len(span):
            spans[0] = span[fits:]
            break
        spans.pop(0)
    return parts


def _words(tile: Tile, slicing: Slicing, vectors: int) -> tuple[int, int]:
    """(outputs, columns) of a tile's MVM over `vectors` vectors, in buffer words."""
    return tile.outputs * vectors, tile.outputs * slicing.cols_per_output * vectors


def _by_core(placement: tuple[tuple[int, int], ...]) -> dict[int, list[int]]:
    """The tile indices on each core, in placement order."""
    by_core: dict[int, list[int]] = {}
    for index, (core, _) in enumerate(placement):
        by_core.setdefault(core, []).append(index)
    return by_core


def _spans(
    tiles: tuple[Tile, ...],
    placement: tuple[tuple[int, int], ...],
    indices: list[int],
    inputs: list[int],
) -> list[list[int]]:
    """`indices` (one core's tiles, in order, reading `inputs`) cut into runs one MVM can
    span: consecutive arrays, one input address, one shape (rows and outputs), at most
    2^SPAN_BITS - 1 long."""
    most = (1 << spec.SPAN_BITS) - 1
    spans: list[list[int]] = []
    key = None
    for index, x in zip(indices, inputs, strict=True):
        tile, array = tiles[index], placement[index][1]
        here = (x, tile.rows, tile.outputs)
        if (
            spans
            and key == here
            and array == placement[spans[-1][-1]][1] + 1
            and len(spans[-1]) < most
        ):
            spans[-1].append(index)
        else:
            spans.append([index])
            key = here
    return spans


class _Partials:
    """The partial sums of tile_products: one per (core, first output) of the tiles, on the
    home core in y itself, elsewhere in a buffer of their own (`temps`, freed after)."""

    def __init__(self, em: Emitter, op: ops.QDense, home: int, y: int, vectors: int) -> None:
        self.em, self.op, self.home, self.y, self.vectors = em, op, home, y, vectors
        self.partial: dict[tuple[int, int], int] = {}  # (core, out0) -> its partial sum
        self.temps: list[tuple[int, int, int]] = []

    def finish(self, core: int, batch: list[tuple[int, int, int]]) -> None:
        """Recombine a batch of the core's MVM outputs (index, raw, cols) into partials."""
        em, op, vectors = self.em, self.op, self.vectors
        cc = em.cores[core]
        # the batch's new partial sums: in y on the home core, elsewhere in one run, tile
        # after tile, so their recombinations step alike (as the columns do)
        fresh: dict[tuple[int, int], int] = {}
        for index, _, _ in batch:
            tile = op.tiles[index]
            fresh.setdefault((core, tile.out0), tile.outputs * vectors)
        fresh = {key: nb for key, nb in fresh.items() if key not in self.partial}
        if core == self.home:
            self.partial.update((key, self.y + key[1] * vectors) for key in fresh)
        elif fresh:
            at = cc.buffer.alloc(sum(fresh.values()), f"{op.name} partial")
            for key, nb in fresh.items():
                self.partial[key] = at
                self.temps.append((core, at, nb))
                at += nb
        for index, raw, cols in batch:
            tile = op.tiles[index]
            nb = tile.outputs * vectors
            key = (core, tile.out0)
            first = key in fresh
            fresh.pop(key, None)
            acc = self.partial[key] if first else cc.buffer.alloc(nb, f"{op.name} partial")
            recombine(cc, raw, acc, nb, op.slicing)
            if not first:
                cc.emit(spec.SIMD_ADD, self.partial[key], self.partial[key], acc, nb)
                cc.buffer.release(acc, nb)
            cc.buffer.release(raw, cols)


def recombine(cc: CoreCode, raw: int, acc: int, nb: int, slicing: Slicing) -> None:
    """acc = sum_s 2^(s*cb) * slice_s, by Horner from the top slice, where slice_s is
    col[s, +] - col[s, -] for differential pairs and col[s] for the offset encoding."""

    def column(s: int, p: int = 0) -> int:
        return raw + (s * slicing.signs + p) * nb

    def slice_value(s: int, into: int) -> int:
        if slicing.signs == 1:
            return column(s)
        cc.emit(spec.SIMD_SUB, into, column(s, 0), column(s, 1), nb)
        return into

    top = slicing.slices - 1
    if top == 0:
        source = slice_value(0, acc)
        if source != acc:
            cc.emit(spec.SIMD_COPY, acc, source, nb)
        return
    high = slice_value(top, column(top))
    low = slice_value(top - 1, column(top - 1))
    cc.emit(spec.SIMD_SHIFTADD, acc, low, high, slicing.cell_bits, nb)
    for s in range(top - 2, -1, -1):
        cc.emit(spec.SIMD_SHIFTADD, acc, slice_value(s, column(s)), acc, slicing.cell_bits, nb)
