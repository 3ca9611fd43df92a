"""What the crossbar passes attach to a QDense: its weight Slicing and its Tiles.

`bitslice` sets `QDense.slicing`, `tile` sets `QDense.tiles` (compiler/passes/bitslice.py and
tile.py have the column layout); `slice_levels` / `tile_levels` turn integer weights into the
cell levels an array stores, for code generation and for the ADC ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imcc.compiler.ir.core import Graph
    from imcc.compiler.ir.ops import QDense


@dataclass(frozen=True, slots=True)
class Slicing:
    cell_bits: int
    slices: int
    signs: int  # 2: differential pair; 1: offset encoding
    offset: int  # added to every weight before slicing (2^(b-1) for offset, else 0)

    @property
    def cols_per_output(self) -> int:
        return self.slices * self.signs


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
    """Cell levels of a block of integer weights, in the column layout of
    compiler/passes/tile.py."""
    rows, n = w_int.shape
    base = 1 << slicing.cell_bits
    if slicing.signs == 2:
        parts = [np.maximum(w_int, 0), np.maximum(-w_int, 0)]
    else:
        parts = [w_int + slicing.offset]
    levels = np.zeros((rows, slicing.slices, slicing.signs, n), dtype=np.uint16)
    for p, part in enumerate(parts):
        rest = part.astype(np.int64)
        for s in range(slicing.slices):
            levels[:, s, p, :] = rest % base  # slice_s = (u >> (s * cell_bits)) & (base - 1)
            rest //= base
        assert not rest.any() and (part >= 0).all(), "weights do not fit the slices"
    return levels.reshape(rows, slicing.cols_per_output * n)


def tile_levels(graph: Graph, op: QDense, tile: Tile) -> np.ndarray:
    w_int = np.asarray(graph.constants[op.inputs[1]])
    return slice_levels(w_int[tile.row0 : tile.row1, tile.out0 : tile.out1], op.slicing)
