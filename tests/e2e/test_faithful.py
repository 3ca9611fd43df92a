"""The faithful analog path end to end: over option combinations, a lossless ADC and the ideal
device give exactly the quantised model's integer arithmetic; event counts per layer match
the analytic formula of the mapping."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import imcc
from imcc.compiler.driver import compile_graph
from imcc.compiler.ir.interpreter import evaluate
from imcc.frontends.onnx import import_onnx
from imcc.isa.numerics import input_steps
from tests.conftest import big_target, mlp_onnx

TARGET = big_target(cores=8, arrays=64)


@st.composite
def options(draw):  # type: ignore[no-untyped-def]
    cell_bits = draw(st.integers(1, 4))
    dac_bits = draw(st.integers(1, 4))
    rows = draw(st.sampled_from([16, 37, 64, 128]))
    weight_bits = draw(st.integers(2, 12))
    encoding = draw(st.sampled_from(["differential", "offset"]))
    slices = math.ceil((weight_bits - (encoding == "differential")) / cell_bits)
    cols = max(draw(st.sampled_from([32, 64, 128])), slices * 2)
    lossless = math.ceil(math.log2(rows * (2**cell_bits - 1) * (2**dac_bits - 1) + 1))
    return {
        "cell_bits": cell_bits,
        "dac_bits": dac_bits,
        "rows": rows,
        "cols": cols,
        "weight_bits": weight_bits,
        "input_bits": draw(st.integers(2, 12)),
        "sign_encoding": encoding,
        "adc_range": draw(st.sampled_from(["full-scale", "column", "slice"])),
        "adc_bits": lossless + draw(st.integers(0, 2)),
        "spread": draw(st.booleans()),
    }


@settings(max_examples=30)
@given(
    opts=options(),
    widths=st.lists(st.integers(1, 150), min_size=2, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_lossless_settings_reproduce_the_integer_model(opts, widths, seed) -> None:  # type: ignore[no-untyped-def]
    model = mlp_onnx(widths, ["tanh"] * (len(widths) - 1), seed=seed)
    x = np.random.default_rng(seed).normal(size=(4, widths[0]))
    result = compile_graph(import_onnx(model), TARGET, **opts)
    expected = evaluate(result.graph, {"x": x})[0]
    binary = imcc.Binary(result.program)
    got = imcc.Simulator(binary, mode="functional").run(x).outputs["y"]
    # exact integers on chip; the only rounding left is the float32 of the output
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-6)
    cycle = imcc.Simulator(binary, mode="cycle").run(x).outputs["y"]
    assert np.array_equal(got, cycle)


def test_column_ranges_from_the_weights_stay_lossless_where_full_scale_is_not() -> None:
    """A 6-bit ADC cannot span a 128-row array's full scale (384 level steps), but it can span
    each column's largest possible current when the weights are small."""
    model = mlp_onnx([128, 8], ["none"], seed=4)
    x = np.random.default_rng(4).normal(size=(6, 128))
    outputs = {}
    for adc_range in ("full-scale", "column"):
        result = compile_graph(import_onnx(model), weight_bits=3, adc_bits=8, adc_range=adc_range)
        expected = evaluate(result.graph, {"x": x})[0]
        got = imcc.Simulator(imcc.Binary(result.program)).run(x).outputs["y"]
        outputs[adc_range] = float(np.max(np.abs(got - expected)))
    assert outputs["column"] < 1e-5
    assert outputs["full-scale"] > 1e-2


def test_event_counts_per_layer_match_the_mapping_formula() -> None:
    widths = [300, 70, 10]
    model = mlp_onnx(widths, ["relu", "none"], seed=1)
    opts = {"weight_bits": 8, "input_bits": 6, "cell_bits": 2, "dac_bits": 2, "rows": 128,
            "cols": 128}  # fmt: skip
    binary = imcc.compile(model, TARGET, **opts)
    report = imcc.Simulator(binary, mode="functional").run(np.ones((2, widths[0]))).report
    layers = {layer.node: dict(layer.counts) for layer in report.layers}
    slices, signs = math.ceil((8 - 1) / 2), 2
    per_array = 128 // (slices * signs)
    for i, (k, n) in enumerate(itertools.pairwise(widths)):
        # the first layer sees signed model inputs, the second ReLU outputs (unsigned)
        steps = len(input_steps(6, i == 0, 2))
        row_blocks = math.ceil(k / 128)
        col_blocks = math.ceil(n / per_array)
        cols_total = n * slices * signs  # every output's columns, in every row block
        counts = layers[f"fc{i}"]
        assert counts["array_activations"] == row_blocks * col_blocks * steps
        assert counts["dac_steps"] == k * col_blocks * steps
        assert counts["adc_conversions"] == row_blocks * cols_total * steps
        assert counts["shift_adds"] == row_blocks * cols_total * steps
        assert counts["macs"] == k * cols_total
