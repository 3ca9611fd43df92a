"""bitslice: integer weights -> slices of cell levels; the arrays hold them exactly."""

from __future__ import annotations

import numpy as np
import pytest

from imcc.compiler.ir import ops
from tests.compiler.passes import golden


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_golden_dump_after_bitslice(model: str) -> None:
    golden.check_golden(f"bitslice.{model}", golden.dump_after(model, "bitslice"))


@pytest.mark.parametrize("encoding", ["differential", "offset"])
@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_stored_levels_recombine_exactly_to_the_integer_weights(model: str, encoding: str) -> None:
    """Every array image the binary programs, read back slice by slice, is its tile of the
    integer weights: w = sum_s 2^(s*cell_bits) * (pos_s - neg_s) (differential) or
    sum_s 2^(s*cell_bits) * u_s - 2^(b-1) (offset); every level fits cell_bits."""
    compiled = golden.compile_model(model, sign_encoding=encoding)
    graph = compiled.graphs["emit"]
    cell_bits = compiled.program.target.xbar.cell_bits
    images = iter(compiled.program.images)  # in layer order, each layer's tiles in order
    for op in graph.walk(ops.QDense):
        slicing = op.slicing
        assert slicing.signs == (2 if encoding == "differential" else 1)
        w_int = np.asarray(graph.constants[op.inputs[1]], dtype=np.int64)
        for tile in op.tiles:
            levels = next(images).levels.astype(np.int64)
            assert levels.max() < 2**cell_bits
            shaped = levels.reshape(tile.rows, slicing.slices, slicing.signs, tile.outputs)
            block = w_int[tile.row0 : tile.row1, tile.out0 : tile.out1]
            np.testing.assert_array_equal(golden.recombine(shaped, slicing), block)
            np.testing.assert_array_equal(shaped, golden.reference_levels(block, slicing))
    assert next(images, None) is None


@pytest.mark.parametrize("weight_bits", [2, 7, 8, 9, 16])
def test_slices_are_the_fewest_that_hold_the_weights(weight_bits: int) -> None:
    """Differential: |w| <= 2^(b-1) - 1 needs ceil((b-1) / cell_bits) slices, one fewer
    cannot hold the largest weight."""
    compiled = golden.compile_model("mlp", weight_bits=weight_bits)
    cell_bits = compiled.program.target.xbar.cell_bits
    for op in compiled.graphs["bitslice"].walk(ops.QDense):
        largest = 2 ** (weight_bits - 1) - 1
        assert largest < 2 ** (op.slicing.slices * cell_bits)
        assert largest >= 2 ** ((op.slicing.slices - 1) * cell_bits)
