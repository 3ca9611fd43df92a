"""Compile options: hardware overrides recorded in the binary, impossible combinations named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import imcc
from imcc.compiler.ir.crossbar import slice_levels
from imcc.compiler.passes.bitslice import make_slicing
from imcc.isa.diagnostics import CompileError, OptionLoc
from tests.conftest import big_target, mlp_onnx

MODEL = mlp_onnx([20, 6], ["none"], seed=0)


def test_hardware_options_are_recorded_in_the_binary_target() -> None:
    binary = imcc.compile(MODEL, dac_bits=4, adc_bits=12, cell_bits=4, rows=64, cols=32,
                          cols_per_adc=4, sign_encoding="offset", adc_range="slice")  # fmt: skip
    xbar = binary.target.xbar
    assert (xbar.dac_bits, xbar.adc_bits, xbar.cell_bits, xbar.rows, xbar.cols) == (
        4,
        12,
        4,
        64,
        32,
    )
    assert (xbar.cols_per_adc, xbar.sign_encoding, xbar.adc_range) == (4, "offset", "slice")
    assert binary.target.fingerprint != imcc.compile(MODEL).target.fingerprint
    assert len(binary.program.adc_ranges) == len(binary.program.images)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"weight_bits": 16, "cell_bits": 1, "cols": 16},
            "weight_bits = 16 with cell_bits = 1 and sign_encoding = differential needs 30 columns "
            "per output, but cols = 16",
        ),
        ({"weight_bits": 1}, "weight_bits = 1 is outside the supported range [2, 24]"),
        ({"input_bits": 30}, "input_bits = 30 is outside the supported range [2, 24]"),
        (
            {"sign_encoding": "twos"},
            "option sign_encoding = 'twos'; expected one of differential, offset",
        ),
        (
            {"adc_range": "auto"},
            "option adc_range = 'auto'; expected one of full-scale, column, slice",
        ),
        ({"cols_per_adc": 500}, "option cols_per_adc = 500 is outside [1, 128]"),
        ({"dac_bits": 0}, "option dac_bits = 0 is outside [1, 16]"),
        ({"adc_bits": 2.5}, "option adc_bits must be an integer, not 2.5"),
        ({"calibration": "kl"}, "calibration = 'kl'; expected minmax or percentile"),
        ({"percentile": 0}, "percentile = 0 must be a number in (0, 100]"),
        ({"percentile": "high"}, "percentile = 'high' must be a number in (0, 100]"),
        ({"bogus": 1}, "unknown compile options ['bogus']"),
    ],
)
def test_impossible_options_name_themselves(options: dict[str, object], message: str) -> None:
    with pytest.raises(CompileError) as info:
        imcc.compile(MODEL, **options)
    assert message in str(info.value)
    # located at the option itself (the first one named, for a combination)
    assert info.value.loc == OptionLoc(next(iter(options)))


def test_accumulation_beyond_exact_float_range_is_refused() -> None:
    wide = mlp_onnx([3000, 2], ["none"], seed=0)
    with pytest.raises(
        CompileError,
        match=r"weight_bits \+ input_bits \+ log2\(3000 nonzero weights in a column\) = "
        r"60 bits exceeds the 52 bits of exact accumulation",
    ):
        imcc.compile(wide, weight_bits=24, input_bits=24)


def test_the_exactness_bound_counts_nonzero_weights() -> None:
    """A column with 9 nonzero weights of 3000 (as in a depthwise layer) sums 9 products:
    24 + 24 + log2(10) = 52 bits is exact, so 24-bit operands compile."""
    wide = mlp_onnx([3000, 2], ["none"], seed=0)
    weight = next(i for i in wide.graph.initializer if len(i.dims) == 2)
    values = numpy_helper.to_array(weight).copy()
    keep = np.zeros_like(values, dtype=bool)
    keep[:9] = True  # the first 9 inputs feed both outputs
    values = np.where(keep if values.shape[0] == 3000 else keep.T, values, 0)
    weight.CopyFrom(numpy_helper.from_array(values.astype(np.float32), weight.name))
    binary = imcc.compile(wide, weight_bits=24, input_bits=24, target=big_target(cores=8))
    assert binary.program.images  # compiled; all-zero blocks got no array


@settings(max_examples=50)
@given(
    bits=st.integers(2, 16),
    cell_bits=st.integers(1, 8),
    encoding=st.sampled_from(["differential", "offset"]),
    seed=st.integers(0, 2**16),
)
def test_slices_recombine_to_the_weights(
    bits: int, cell_bits: int, encoding: str, seed: int
) -> None:
    """w = sum_s 2^(s*cb) (pos_s - neg_s) - offset: the algebra the emitted SIMD code relies on."""
    limit = 2 ** (bits - 1) - 1
    w = np.random.default_rng(seed).integers(-limit, limit + 1, size=(5, 7))
    slicing = make_slicing(bits, cell_bits, encoding)
    levels = slice_levels(w, slicing).reshape(5, slicing.slices, slicing.signs, 7)
    assert levels.max() < 2**cell_bits
    weights = 2 ** (cell_bits * np.arange(slicing.slices))[None, :, None]
    value = (levels[:, :, 0, :] * weights).sum(axis=1)
    if slicing.signs == 2:
        value -= (levels[:, :, 1, :] * weights).sum(axis=1)
    assert np.array_equal(value - slicing.offset, w)


def test_percentile_calibration_ignores_a_rare_outlier() -> None:
    model = mlp_onnx([10, 4], ["none"], seed=2)
    data = np.random.default_rng(2).uniform(-1, 1, size=(400, 10))
    data[0, 0] = 50.0  # one outlier
    scales = {}
    for method in ("minmax", "percentile"):
        binary = imcc.compile(model, calibrate=data, calibration=method, percentile=99.0)
        scales[method] = dict(binary.program.inputs[0].quant)["scale"]
    assert scales["minmax"] == pytest.approx(50.0 / 127)
    assert scales["percentile"] < 1.0 / 127  # the 99th percentile of |x| is below 1


def test_cli_compile_takes_hardware_options_and_calibration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnx

    from imcc.cli import main

    onnx.save(MODEL, tmp_path / "m.onnx")
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(0).normal(size=(30, 20)))
    code = main([
        "compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.imcb"), "--dac-bits", "2",
        "--adc-bits", "7", "--sign-encoding", "offset", "--adc-range", "column",
        "--calibrate", str(tmp_path / "cal.npz"), "--calibration", "percentile",
        "--percentile", "99.5",
    ])  # fmt: skip
    assert code == 0
    binary = imcc.load(tmp_path / "m.imcb")
    assert (binary.target.xbar.dac_bits, binary.target.xbar.sign_encoding) == (2, "offset")
    assert dict(binary.program.inputs[0].quant)["scale"] != "dynamic"
    assert binary.program.meta["option.calibration"] == "percentile"
