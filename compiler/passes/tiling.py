"""bitslice, tile and adc-range: integer weight matrices -> crossbar blocks of cell levels.

`bitslice` (after `quantize`) gives every QDense a Slicing, from the target's sign encoding:
- differential: |w| < 2^(b-1) splits into S = ceil((b-1) / cell_bits) slices, each stored on a
  G+ and a G- cell: w = sum_s 2^(s*cell_bits) * (pos_s - neg_s);
- offset (ISAAC): the unsigned u = w + 2^(b-1) in [1, 2^b - 1] splits into
  S = ceil(b / cell_bits) slices on one cell each; the SIMD code subtracts 2^(b-1) * sum(x).
It runs before `tile` because the columns an output needs (S x signs) decide how many outputs
fit one array.
`tile`: K rows split into blocks of `rows`; outputs into blocks of floor(cols / (S x signs));
one Tile per (row block, output block), each destined for one array. With differential pairs
a block whose weights are all zero gets no array (a grouped or depthwise convolution's
block-diagonal weight is mostly such blocks), unless its output block would have none; with
the offset encoding every block stores the offset and is kept. Within an array, column
(s * signs + p) * nb + j holds slice s, sign p (0 = G+ or the offset cell, 1 = G-) of output j.
`adc-range` (after `tile`): with adc_range = column or slice, every tile gets the full-scale
range of each column's ADC: the largest current a DAC step can produce in that column (from
the weights alone), or, given calibration data, the largest (or the percentile) it did produce;
`slice` shares one range among the columns of a slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op
from imcc.compiler.ir.interpreter import evaluate, input_scale, quantize_vector
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.xbar import input_planes


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


def make_slicing(weight_bits: int, cell_bits: int, encoding: str) -> Slicing:
    if encoding == "offset":
        return Slicing(cell_bits, -(-weight_bits // cell_bits), 1, 1 << (weight_bits - 1))
    return Slicing(cell_bits, -(-(weight_bits - 1) // cell_bits), 2, 0)


def slice_levels(w_int: np.ndarray, slicing: Slicing) -> np.ndarray:
    """Cell levels of a block of integer weights, in the column layout described above."""
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


def tile_levels(graph: Graph, op: Op, tile: Tile) -> np.ndarray:
    w_int = np.asarray(graph.constants[op.inputs[1]])
    return slice_levels(w_int[tile.row0 : tile.row1, tile.out0 : tile.out1], op.attrs["slicing"])


@register
@dataclass(frozen=True, slots=True)
class BitslicePass(Pass):
    """After: every QDense has attrs["slicing"]; every stored level fits `cell_bits`."""

    name = "bitslice"
    requires = ("quantize",)  # reads QDense weight_bits

    def run(self, graph: Graph, ctx: Context) -> None:
        xbar = ctx.target.xbar
        for op in graph.walk(ops.QDense):
            op.attrs["slicing"] = make_slicing(
                op.attrs["weight_bits"], xbar.cell_bits, xbar.sign_encoding
            )


@register
@dataclass(frozen=True, slots=True)
class TilePass(Pass):
    """After: every QDense has attrs["tiles"], each at most rows x cols of the target."""

    name = "tile"
    requires = ("bitslice",)  # reads attrs["slicing"]

    def run(self, graph: Graph, ctx: Context) -> None:
        xbar = ctx.target.xbar
        for op in graph.walk(ops.QDense):
            slicing: Slicing = op.attrs["slicing"]
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
            op.attrs["tiles"] = tuple(sorted(tiles, key=lambda t: (t.row0, t.out0)))


@register
@dataclass(frozen=True, slots=True)
class AdcRangePass(Pass):
    """After: with adc_range column or slice, every QDense has attrs["adc_ranges"], one tuple
    of per-column full-scale ranges (in level steps) per tile; with full-scale, none."""

    name = "adc-range"
    requires = ("tile",)  # reads attrs["slicing"] and attrs["tiles"]

    def run(self, graph: Graph, ctx: Context) -> None:
        mode = ctx.target.xbar.adc_range
        if mode == "full-scale":
            return
        dac_bits = ctx.target.xbar.dac_bits
        samples = self._quantised_inputs(graph, ctx)
        use_percentile = ctx.options.get("calibration", "minmax") == "percentile"
        percentile = float(ctx.options.get("percentile", 99.99))
        for op in graph.walk(ops.QDense):
            slicing: Slicing = op.attrs["slicing"]
            ranges = []
            for tile in op.attrs["tiles"]:
                levels = tile_levels(graph, op, tile).astype(np.float64)
                if op.name in samples:
                    x_int = samples[op.name][:, tile.row0 : tile.row1]
                    planes, _ = input_planes(
                        x_int, op.attrs["input_bits"], op.attrs["input_signed"], dac_bits
                    )
                    peaks = np.max(planes @ levels, axis=0)  # largest over steps: (B, cols)
                    largest = (
                        np.percentile(peaks, percentile, axis=0)
                        if use_percentile
                        else peaks.max(axis=0)
                    )
                else:
                    largest = levels.sum(axis=0) * ((1 << dac_bits) - 1)
                if mode == "slice":
                    grouped = largest.reshape(slicing.slices, -1)
                    largest = np.repeat(grouped.max(axis=1), grouped.shape[1])
                ranges.append(tuple(float(v) for v in np.maximum(largest, 1.0)))
            op.attrs["adc_ranges"] = tuple(ranges)

    @staticmethod
    def _quantised_inputs(graph: Graph, ctx: Context) -> dict[str, np.ndarray]:
        """The integer inputs every QDense sees on the calibration data."""
        if ctx.calibration is None:
            return {}
        found: dict[str, np.ndarray] = {}

        def observe(op: Op, args: list[np.ndarray]) -> None:
            if isinstance(op, ops.QDense):
                x = args[0].reshape(-1, op.inputs[1].shape[0])
                scale = input_scale(x, op)
                bits, signed = op.attrs["input_bits"], op.attrs["input_signed"]
                found[op.name] = quantize_vector(x, scale, bits, signed).astype(np.int64)

        evaluate(graph, ctx.calibration, observe)
        return found
