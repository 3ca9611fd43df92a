"""adc-range: with adc_range column or slice, every tile's columns get a full-scale range
that bounds the current a DAC step can make there."""

from __future__ import annotations

import numpy as np
import pytest

from imcc.compiler.ir import ops
from imcc.compiler.ir.core import Graph
from tests.compiler.passes import golden


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_golden_dump_after_adc_range(model: str) -> None:
    dump = golden.dump_after(model, "adc-range", adc_range="column")
    golden.check_golden(f"adc-range.{model}", dump)


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_full_scale_sets_no_ranges(model: str) -> None:
    compiled = golden.compile_model(model)  # edge-rram: adc_range = full-scale
    assert all(op.adc_ranges is None for op in compiled.graphs["adc-range"].walk(ops.QDense))
    assert not compiled.program.adc_ranges


@pytest.mark.parametrize("mode", ["column", "slice"])
@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_ranges_bound_the_largest_column_current(model: str, mode: str) -> None:
    """Without calibration data a column's range is its largest possible current: every row
    driven at the top DAC step, sum_r level[r, c] * (2^dac_bits - 1) (levels computed here),
    shared by a slice's columns with `slice`. Random DAC steps stay within it, and the binary
    carries the ranges of each tile's image."""
    compiled = golden.compile_model(model, adc_range=mode)
    graph = compiled.graphs["adc-range"]
    top = 2**compiled.program.target.xbar.dac_bits - 1
    rng = np.random.default_rng(0)
    image = 0
    for op in graph.walk(ops.QDense):
        assert op.adc_ranges is not None and len(op.adc_ranges) == len(op.tiles)
        w_int = graph.constants[op.inputs[1]]
        for tile, ranges in zip(op.tiles, op.adc_ranges, strict=True):
            block = w_int[tile.row0 : tile.row1, tile.out0 : tile.out1]
            levels = golden.reference_levels(block, op.slicing)  # (rows, slices, signs, out)
            largest = levels.sum(axis=0) * top  # (slices, signs, out)
            if mode == "slice":
                largest = np.broadcast_to(largest.max(axis=(1, 2), keepdims=True), largest.shape)
            expected = np.maximum(largest.reshape(-1), 1.0)
            np.testing.assert_array_equal(np.array(ranges), expected)
            steps = rng.integers(0, top + 1, size=(64, tile.rows))
            currents = steps @ levels.reshape(tile.rows, -1)
            assert (currents <= np.array(ranges)).all()
            np.testing.assert_array_equal(compiled.program.adc_ranges[image], ranges)
            image += 1


PERCENTILE = (
    "canonicalize,quantize,bitslice,tile,adc-range{calibration=percentile,percentile=50},"
    "place,acam-map,schedule,emit"
)


def _ranges(graph: Graph) -> list[tuple[float, ...]]:
    found = []
    for op in graph.walk(ops.QDense):
        assert op.adc_ranges is not None and len(op.adc_ranges) == len(op.tiles)
        found += list(op.adc_ranges)
    return found


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_calibrated_ranges_lie_within_the_weight_bound(model: str) -> None:
    """With calibration data a column's range is the largest current the samples made, never
    above what the weights allow; adc-range{calibration=percentile,percentile=50} takes the
    median sample's instead, lower still, and the binary records the options it used."""
    builder, target = golden.MODELS[model]
    samples = golden.inputs(model, count=16, seed=3)
    bound = _ranges(golden.compile_model(model, adc_range="column").graphs["adc-range"])
    calibrated = golden.compile_source(builder(), target, adc_range="column", calibrate=samples)
    largest = _ranges(calibrated.graphs["adc-range"])
    median = golden.compile_source(
        builder(), target, PERCENTILE, adc_range="column", calibrate=samples
    )
    middle = _ranges(median.graphs["adc-range"])
    for most, seen, typical in zip(bound, largest, middle, strict=True):
        assert len(most) == len(seen) == len(typical)
        assert all(1.0 <= t <= s <= m for m, s, t in zip(most, seen, typical, strict=True))
    assert largest != bound  # 16 samples do not drive every row of every column to the top
    assert middle != largest
    assert median.program.meta["option.calibration"] == "percentile"
    assert median.program.meta["option.percentile"] == "50"
