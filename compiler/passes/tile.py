"""tile: every QDense's weight matrix -> crossbar-sized blocks (Tiles).

K rows split into blocks of `rows`; outputs into blocks of floor(cols / (S x signs)); one Tile
per (row block, output block), each destined for one array. With differential pairs a block
whose weights are all zero gets no array (a grouped or depthwise convolution's block-diagonal
weight is mostly such blocks), unless its output block would have none; with the offset
encoding every block stores the offset and is kept. Within an array, column
(s * signs + p) * nb + j holds slice s, sign p (0 = G+ or the offset cell, 1 = G-) of output j.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph
from imcc.compiler.ir.crossbar import Slicing, Tile
from imcc.compiler.passes.manager import Context, Pass, register


@register
@dataclass(frozen=True, slots=True)
class TilePass(Pass):
    """After: every QDense has `tiles`, each at most rows x cols of the target."""

    name = "tile"
    requires = ("bitslice",)  # reads `slicing`
    provides = ("QDense.tiles",)

    def run(self, graph: Graph, ctx: Context) -> None:
        xbar = ctx.target.xbar
        for op in graph.walk(ops.QDense):
            slicing: Slicing = op.slicing
            per_array = xbar.cols // slicing.cols_per_output
            k, n = op.inputs[1].shape
            w_int = np.asarray(graph.constants[op.inputs[1]])
            # Partial sums are exact float64 integers only below 2^53; a column sums at most
            # its nonzero weights' products (a depthwise layer's: its kernel's, not all k).
            fan_in = int(np.count_nonzero(w_int, axis=0).max(initial=0))
            if slicing.offset:  # every stored weight is w + offset: all k rows add up
                fan_in = k
            bits = (
                op.attrs["weight_bits"] + op.attrs["input_bits"] + math.ceil(math.log2(fan_in + 1))
            )
            if bits > 52:
                raise op.error(
                    f"weight_bits + input_bits + log2({fan_in} nonzero weights in a column) = "
                    f"{bits} bits exceeds the 52 bits of exact accumulation; lower weight_bits "
                    "or input_bits"
                )
            tiles = []
            for o in range(0, n, per_array):
                column = [
                    Tile(r, min(r + xbar.rows, k), o, min(o + per_array, n))
                    for r in range(0, k, xbar.rows)
                ]
                if slicing.signs == 2:  # an all-zero block stores nothing: no array for it
                    kept = [t for t in column if w_int[t.row0 : t.row1, t.out0 : t.out1].any()]
                    column = kept or column[:1]  # every output block keeps one tile
                tiles += column
            op.tiles = tuple(sorted(tiles, key=lambda t: (t.row0, t.out0)))
