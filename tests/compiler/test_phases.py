"""Models larger than the chip run in phases: arrays that serve several layers are
reprogrammed before each use, and the report counts it."""

from __future__ import annotations

import numpy as np
import pytest

import imcc
from imcc.isa import spec
from imcc.isa.diagnostics import CompileError
from tests.conftest import big_target, mlp_onnx

# 64-200-200-10 at 8 bits on 2-bit cells (16 outputs per 128-column array): 13 + 2 x 13 + 2
# = 41 tiles; the default chip (4 cores x 8 arrays) holds 32 at once.
MODEL = mlp_onnx([64, 200, 200, 10], ["relu", "relu", "none"], seed=3)
X = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)


def test_a_model_larger_than_the_chip_runs_in_phases_with_the_same_bits() -> None:
    phased = imcc.compile(MODEL)  # edge-rram: 32 arrays
    roomy = imcc.compile(MODEL, big_target(cores=4, arrays=64))
    assert len(phased.program.images) > 32
    programs = [i for code in phased.program.code for i in code if i.spec is spec.XBAR_PROGRAM]
    assert programs  # the reused arrays are programmed in the code, not only at load
    sim = imcc.Simulator(phased)
    first, again = sim.run(X), sim.run(X)
    expected = imcc.Simulator(roomy).run(X)
    for name, value in expected.outputs.items():
        assert np.array_equal(first.outputs[name], value)
        assert np.array_equal(again.outputs[name], value)  # reprogrammed on every inference
    report = first.report
    assert report.counts["cells_programmed"] > 0
    assert report.energy_breakdown_pj["programming"] > 0
    assert report.cycles > expected.report.cycles  # programming takes time


def test_a_layer_of_many_rows_larger_than_the_chip_is_an_error_naming_it() -> None:
    """A convolution's arrays serve every pixel: they cannot be reprogrammed tile by tile."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((128, 256, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="big_conv", pads=[1, 1, 1, 1])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 256, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 128, 4, 4])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(CompileError, match=r"this layer alone needs \d+ crossbar arrays") as e:
        imcc.compile(model)
    assert "big_conv" in str(e.value) and "16 rows" in str(e.value)


def test_only_the_packed_placement_runs_in_phases() -> None:
    with pytest.raises(CompileError, match="only the packed placement runs it in phases"):
        imcc.compile(MODEL, schedule="latency")


def test_a_classifier_larger_than_the_chip_reprograms_tile_by_tile() -> None:
    """One row through 600 x 600: 5 x 38 = 190 tiles on 32 arrays, each programmed just
    before its MVM; the bits equal a chip that holds them all."""
    wide = mlp_onnx([600, 600, 10], ["relu", "none"], seed=0)
    x = np.random.default_rng(1).standard_normal((2, 600)).astype(np.float32)
    phased = imcc.compile(wide)
    roomy = imcc.compile(wide, big_target(cores=4, arrays=64))
    code = phased.program.code
    programs = sum(1 for c in code for i in c if i.spec is spec.XBAR_PROGRAM)
    assert programs == len(phased.program.images) > 32
    got = imcc.Simulator(phased).run(x).outputs
    for name, value in imcc.Simulator(roomy).run(x).outputs.items():
        assert np.array_equal(got[name], value)


def test_phases_off_is_an_error_naming_the_shortfall() -> None:
    with pytest.raises(CompileError, match=r"needs 41 crossbar arrays .* 32 .* and phases are off"):
        imcc.compile(MODEL, phases=False)
