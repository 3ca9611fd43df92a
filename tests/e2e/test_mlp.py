"""End to end: ONNX MLPs compiled and simulated, against onnxruntime and the compiler's own
exact-integer reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import imcc
from imcc.compiler.driver import compile_graph
from imcc.compiler.ir.interpreter import evaluate
from imcc.frontends.onnx import import_onnx
from tests.conftest import big_target, mlp_onnx, onnxruntime_run

TARGET = big_target()

# 16-bit weights and inputs: each product carries a relative error of at most 2 x 2^-16
# (half an LSB on each operand, LSB = max / 32767); over K terms of random sign the error
# grows like sqrt(K) * max|x| * max|w|, and K <= 300 here. 2e-3 of the output's magnitude is
# therefore ~10x the expected worst case, while 8-bit operands (error ~256x larger) fail it.
REL_TOL_16 = 2e-3


def _mlp_cases():  # type: ignore[no-untyped-def]
    widths = st.lists(st.integers(1, 300), min_size=2, max_size=5)
    return widths.flatmap(
        lambda w: st.tuples(
            st.just(w),
            st.lists(
                st.sampled_from(["relu", "sigmoid", "tanh", "none"]),
                min_size=len(w) - 1,
                max_size=len(w) - 1,
            ),
            st.booleans(),  # softmax at the end
            st.booleans(),  # spread tiles over cores
            st.integers(0, 2**16),
        )
    )


@settings(max_examples=25)
@given(_mlp_cases())
def test_16bit_mlps_match_onnxruntime(case) -> None:  # type: ignore[no-untyped-def]
    widths, activations, softmax, spread, seed = case
    model = mlp_onnx(widths, activations, softmax=softmax, seed=seed)
    x = np.random.default_rng(seed).normal(size=(7, widths[0])).astype(np.float32)
    binary = imcc.compile(model, TARGET, weight_bits=16, input_bits=16, spread=spread)
    functional = imcc.Simulator(binary, mode="functional").run(x).outputs["y"]
    cycle = imcc.Simulator(binary, mode="cycle").run(x).outputs["y"]
    assert np.array_equal(functional, cycle), "functional and cycle-level simulators disagree"
    reference = onnxruntime_run(model, x)
    scale = max(1.0, float(np.max(np.abs(reference))))
    assert np.max(np.abs(functional - reference)) <= REL_TOL_16 * scale


@settings(max_examples=15)
@given(_mlp_cases())
def test_simulation_equals_the_quantised_reference(case) -> None:  # type: ignore[no-untyped-def]
    """The chip computes exactly what the quantised graph says: the integer MVMs are exact, so
    the only difference left is float64 vs the float32 output (rtol 1e-6)."""
    widths, activations, softmax, spread, seed = case
    model = mlp_onnx(widths, activations, softmax=softmax, seed=seed)
    x = np.random.default_rng(seed).normal(size=(5, widths[0]))
    result = compile_graph(import_onnx(model), TARGET, spread=spread)
    expected = evaluate(result.graph, {"x": x})[0]
    got = imcc.Simulator(imcc.Binary(result.program), mode="functional").run(x).outputs["y"]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.max(np.abs(expected)))


def test_8bit_error_is_measurably_larger_than_16bit() -> None:
    """The tolerance above can fail: at 8 bits the same model departs far more."""
    model = mlp_onnx([200, 150, 10], ["tanh", "none"], seed=3)
    x = np.random.default_rng(3).normal(size=(20, 200)).astype(np.float32)
    reference = onnxruntime_run(model, x)
    errors = {}
    for bits in (8, 16):
        binary = imcc.compile(model, TARGET, weight_bits=bits, input_bits=bits)
        out = imcc.Simulator(binary, mode="functional").run(x).outputs["y"]
        errors[bits] = float(np.max(np.abs(out - reference)))
    assert errors[16] <= REL_TOL_16 * np.max(np.abs(reference))
    assert errors[8] > 30 * errors[16]


def test_calibrated_static_scales_clip_outliers_and_record_the_scale() -> None:
    model = mlp_onnx([20, 8], ["none"], seed=1)
    calibration = np.random.default_rng(1).uniform(0, 1, size=(50, 20))
    binary = imcc.compile(model, calibrate=calibration)
    (info,) = binary.program.inputs
    quant = dict(info.quant)
    assert quant["signed"] == 0  # calibration data is non-negative
    assert quant["scale"] == np.max(calibration) / 255
    x = calibration[:4]
    out = imcc.Simulator(binary, mode="functional").run(x).outputs["y"]
    np.testing.assert_allclose(out, onnxruntime_run(model, x), atol=0.02)


def test_several_rows_per_sample_each_take_their_own_mvm_pass() -> None:
    """A MatMul over a (rows, k) tensor per sample: every row is quantised with its own
    per-vector scale and pushed through the same programmed arrays."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(5).normal(size=(140, 7)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 140])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 7])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    x = np.random.default_rng(6).normal(size=(3, 5, 140)).astype(np.float32)
    binary = imcc.compile(model, TARGET, weight_bits=16, input_bits=16, spread=True)
    assert len(binary.program.images) == 2  # 2 row blocks of 128, programmed once for all rows
    out = imcc.Simulator(binary).run(x).outputs["y"]
    reference = onnxruntime_run(model, x)
    assert out.shape == (3, 5, 7)
    assert np.max(np.abs(out - reference)) <= REL_TOL_16 * np.max(np.abs(reference))
