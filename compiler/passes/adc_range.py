"""adc-range: with adc_range = column or slice, every tile gets the full-scale range of each
column's ADC: the largest current a DAC step can produce in that column (from the weights
alone), or, given calibration data, the largest (or the percentile) it did produce; `slice`
shares one range among the columns of a slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph, Op
from imcc.compiler.ir.crossbar import Slicing, tile_levels
from imcc.compiler.ir.interpreter import evaluate, input_scale, quantize_vector
from imcc.compiler.options import Calibration
from imcc.compiler.passes.manager import Context, Pass, register
from imcc.isa.numerics import input_planes
from imcc.isa.target import AdcRange


@register
@dataclass(frozen=True, slots=True)
class AdcRangePass(Pass):
    """After: with adc_range column or slice, every QDense has `adc_ranges`, one tuple
    of per-column full-scale ranges (in level steps) per tile; with full-scale, none."""

    name = "adc-range"
    requires = ("tile",)  # reads `slicing` and `tiles`
    provides = ("QDense.adc_ranges",)
    calibration: str | None = None  # overrides the compile option: minmax or percentile
    percentile: float | None = None

    def run(self, graph: Graph, ctx: Context) -> None:
        mode = ctx.target.xbar.adc_range
        if mode == AdcRange.FULL_SCALE:
            return
        dac_bits = ctx.target.xbar.dac_bits
        samples = self._quantised_inputs(graph, ctx)
        use_percentile = self.option(ctx, "calibration") == Calibration.PERCENTILE
        chosen = self.option(ctx, "percentile")
        percentile = 99.99 if chosen is None else float(chosen)
        for op in graph.walk(ops.QDense):
            slicing: Slicing = op.slicing
            ranges = []
            for tile in op.tiles:
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
                if mode == AdcRange.SLICE:
                    grouped = largest.reshape(slicing.slices, -1)
                    largest = np.repeat(grouped.max(axis=1), grouped.shape[1])
                ranges.append(tuple(float(v) for v in np.maximum(largest, 1.0)))
            op.adc_ranges = tuple(ranges)

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
