"""tile: every weight matrix -> crossbar-sized tiles covering it once."""

from __future__ import annotations

import numpy as np
import pytest

from imcc.compiler.ir import ops
from tests.compiler.passes import golden

# small arrays so every layer splits along rows and outputs: 4 rows, 2 outputs of 8 columns
SMALL = {"rows": 4, "cols": 16}


@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_golden_dump_after_tile(model: str) -> None:
    golden.check_golden(f"tile.{model}", golden.dump_after(model, "tile"))


@pytest.mark.parametrize("encoding", ["differential", "offset"])
@pytest.mark.parametrize("model", golden.CROSSBAR_MODELS)
def test_tiles_cover_the_weights_once_and_fit_the_array(model: str, encoding: str) -> None:
    """Counted cell by cell, the tiles cover the K x N weights exactly once (these weights
    have no all-zero block, which differential pairs would leave out); each tile fits
    rows x cols with its slices and signs."""
    compiled = golden.compile_model(model, sign_encoding=encoding, **SMALL)
    xbar = compiled.program.target.xbar
    graph = compiled.graphs["tile"]
    layers = list(graph.walk(ops.QDense))
    assert sum(len(op.tiles) for op in layers) > len(layers)  # the split is exercised
    for op in layers:
        k, n = op.inputs[1].shape
        covered = np.zeros((k, n), dtype=np.int64)
        for tile in op.tiles:
            assert 0 <= tile.row0 < tile.row1 <= k and 0 <= tile.out0 < tile.out1 <= n
            assert tile.rows <= xbar.rows
            assert tile.outputs * op.slicing.slices * op.slicing.signs <= xbar.cols
            covered[tile.row0 : tile.row1, tile.out0 : tile.out1] += 1
        np.testing.assert_array_equal(covered, np.ones((k, n), dtype=np.int64))


def test_an_all_zero_block_gets_no_array_with_differential_pairs() -> None:
    """A depthwise convolution's block-diagonal weight: with 4-row arrays, only the blocks
    that hold a kernel get tiles; no stored weight is lost."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(5).normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32)
    source = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="dw", kernel_shape=[3, 3], group=4)],
        "dw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 3, 3])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(source, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    graph = golden.compile_source(model, "edge-rram", **SMALL).graphs["tile"]
    op = next(graph.walk(ops.QDense))
    w_int = np.asarray(graph.constants[op.inputs[1]])
    covered = np.zeros(w_int.shape, dtype=bool)
    for tile in op.tiles:
        covered[tile.row0 : tile.row1, tile.out0 : tile.out1] = True
    assert not w_int[~covered].any()  # every nonzero weight is on some tile
    full = -(-w_int.shape[0] // 4) * -(-w_int.shape[1] // 2)
    assert len(op.tiles) < full
