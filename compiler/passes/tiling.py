"""bitslice and tile: integer weight matrices -> crossbar-sized blocks of cell levels.

`bitslice` (after `quantize`): every QDense gets a Slicing: with the differential sign encoding
the magnitude |w| < 2^(b-1) splits into S = ceil((b-1) / cell_bits) slices, each stored as a G+
and a G- cell (w = sum_s 2^(s*cell_bits) * (pos_s - neg_s)). It runs before `tile` because the
number of columns an output needs (S x 2) decides how many outputs fit one array.
`tile`: K rows split into blocks of `rows`; outputs split into blocks of
floor(cols / (S x 2)); one Tile per (row block, output block), each destined for one array.
Within an array, column (s * 2 + p) * nb + j holds slice s, sign p (0 = G+, 1 = G-) of output j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.diagnostics import CompileError

SIGNS = 2  # differential pair: one G+ and one G- device per slice


@dataclass(frozen=True, slots=True)
class Slicing:
    cell_bits: int
    slices: int

    @property
    def cols_per_output(self) -> int:
        return self.slices * SIGNS


@dataclass(frozen=True, slots=True)
class Tile:
    """Rows [row0, row1) and outputs [out0, out1) of one QDense, on one array."""

    row0: int
    row1: int
    out0: int
    out1: int

    @property
    def rows(self) -> int:
        return self.row1 - self.row0

    @property
    def outputs(self) -> int:
        return self.out1 - self.out0


def slice_levels(w_int: np.ndarray, slicing: Slicing) -> np.ndarray:
    """Cell levels of a block of integer weights, in the column layout described above."""
    rows, n = w_int.shape
    base = 1 << slicing.cell_bits
    levels = np.zeros((rows, slicing.slices, SIGNS, n), dtype=np.uint16)
    for p, part in enumerate((np.maximum(w_int, 0), np.maximum(-w_int, 0))):
        rest = part.astype(np.int64)
        for s in range(slicing.slices):
            levels[:, s, p, :] = rest % base  # slice_s = (|w| >> (s * cell_bits)) & (base - 1)
            rest //= base
        assert not rest.any(), "weight magnitude does not fit the slices"
    return levels.reshape(rows, slicing.slices * SIGNS * n)


def tile_levels(graph: Graph, op: Op, tile: Tile) -> np.ndarray:
    w_int = np.asarray(graph.constants[op.inputs[1]])
    return slice_levels(w_int[tile.row0 : tile.row1, tile.out0 : tile.out1], op.attrs["slicing"])


@register
@dataclass(frozen=True, slots=True)
class BitslicePass(Pass):
    """After: every QDense has attrs["slicing"]; every stored level fits `cell_bits`."""

    name = "bitslice"

    def run(self, graph: Graph, ctx: Context) -> None:
        cell_bits = int(ctx.options.get("cell_bits", ctx.target.xbar.cell_bits))
        for op in graph.walk(ops.QDense):
            magnitude_bits = op.attrs["weight_bits"] - 1
            slices = -(-magnitude_bits // cell_bits)
            op.attrs["slicing"] = Slicing(cell_bits, slices)


@register
@dataclass(frozen=True, slots=True)
class TilePass(Pass):
    """After: every QDense has attrs["tiles"], each at most rows x cols of the target."""

    name = "tile"

    def run(self, graph: Graph, ctx: Context) -> None:
        xbar = ctx.target.xbar
        for op in graph.walk(ops.QDense):
            slicing: Slicing = op.attrs["slicing"]
            per_array = xbar.cols // slicing.cols_per_output
            if per_array == 0:
                raise op.error(
                    f"one output needs {slicing.cols_per_output} columns "
                    f"({slicing.slices} slices of {slicing.cell_bits}-bit cells x {SIGNS} signs) "
                    f"but arrays have {xbar.cols}; raise cell_bits or lower weight_bits"
                )
            k, n = op.inputs[1].shape
            op.attrs["tiles"] = tuple(
                Tile(r, min(r + xbar.rows, k), o, min(o + per_array, n))
                for r in range(0, k, xbar.rows)
                for o in range(0, n, per_array)
            )

    @staticmethod
    def check(graph: Graph, ctx: Context) -> None:
        for op in graph.walk(ops.QDense):
            if "tiles" not in op.attrs:
                raise CompileError(f"{op.name!r} was not tiled")
