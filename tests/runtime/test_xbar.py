"""The exactness property of DESIGN section 6, through the real instruction path:
with the ideal device and a lossless ADC an `xbar.mvm` equals the exact integer matmul of its
operands bit for bit; with a narrower ADC it departs exactly as an independent model says."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imcc
from imcc.compiler.target import load_target
from imcc.isa import spec
from imcc.isa.encoding import make
from imcc.runtime.costs import price
from imcc.runtime.devices import IdealDevice
from tests.runtime.programs import binary, image_directive


def mvm_program(levels: np.ndarray, bits: int, signed: int, cell_bits: int, dac_bits: int,
                adc_bits: int, vectors: int = 0) -> imcc.Binary:  # fmt: skip
    """x -> one xbar.mvm -> y; with `vectors` = m > 0, x holds m vectors stored row by row of
    the array, (rows, m), and one xbar.mvmb gives y as (cols, m)."""
    data = load_target().to_dict()
    data["xbar"].update(cell_bits=cell_bits, dac_bits=dac_bits, adc_bits=adc_bits)
    rows, cols = levels.shape
    m = max(vectors, 1)
    tail = [m] if vectors else []
    mvm = f"xbar.mvmb a0, r0, r1, {bits}, {signed}, {m}, 1" if vectors else (
        f"xbar.mvm a0, r0, r1, {bits}, {signed}, 1")  # fmt: skip
    io = {"dtype": "float32", "batch_axis": True, "quant": {}}
    return binary(
        f".target {json.dumps(data)}\n"
        f".input {json.dumps({'name': 'x', 'shape': [rows, *tail], 'addr': 0, **io})}\n"
        f".output {json.dumps({'name': 'y', 'shape': [cols, *tail], 'addr': 2000, **io})}\n"
        + image_directive(0, levels)
        + ".bind c0 a0 0\n.core 0\n"
        "    ctl.set r0, 0\n    ctl.set r1, 3000\n"
        f"    mem.load r0, r0, {rows * m}\n"
        f"    {mvm}\n"
        "    ctl.set r2, 2000\n"
        f"    mem.store r2, r1, {cols * m}\n"
        "    ctl.halt\n"
    )


def lossless_adc_bits(rows: int, cell_bits: int, dac_bits: int) -> int:
    return math.ceil(math.log2(rows * (2**cell_bits - 1) * (2**dac_bits - 1) + 1))


@st.composite
def mvm_cases(draw):  # type: ignore[no-untyped-def]
    rows = draw(st.integers(1, 128))
    cols = draw(st.integers(1, 128))
    cell_bits = draw(st.integers(1, 4))
    dac_bits = draw(st.integers(1, 4))
    bits = draw(st.integers(2, 16))
    signed = draw(st.integers(0, 1))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 2**cell_bits, size=(rows, cols))
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    x = rng.integers(lo, hi + 1, size=(6, rows))
    return levels, x, bits, signed, cell_bits, dac_bits


class StepwiseIdeal(IdealDevice):
    """The ideal device without the one-matmul shortcut: forces DAC steps and ADC reads."""

    exact = False


@settings(max_examples=60)
@given(case=mvm_cases())
def test_lossless_mvm_equals_exact_integer_matmul(case) -> None:  # type: ignore[no-untyped-def]
    levels, x, bits, signed, cell_bits, dac_bits = case
    adc_bits = lossless_adc_bits(128, cell_bits, dac_bits)
    program = mvm_program(levels, bits, signed, cell_bits, dac_bits, adc_bits)
    exact = x.astype(object) @ levels.astype(object)  # Python integers: no rounding anywhere
    fast = imcc.Simulator(program, mode="functional").run(x.astype(np.float64))
    # float32 outputs hold integers exactly below 2^24, which these products stay under
    assert np.all(np.abs(exact) < 2**24)
    assert np.array_equal(fast.outputs["y"].astype(np.int64), exact.astype(np.int64))
    # The step-by-step path (DAC chunks, per-step reads, ADC, shift-add) gives the same bits.
    simulator = imcc.Simulator(program, mode="cycle")
    simulator.machine.device = StepwiseIdeal()
    stepwise = simulator.run(x.astype(np.float64))
    assert np.array_equal(stepwise.outputs["y"], fast.outputs["y"])


def independent_adc_model(levels, x, bits, signed, dac_bits, adc_bits, full_scale):  # type: ignore[no-untyped-def]
    """Bit-serial application written out with Python integers, then the ADC."""
    lsb = max(1.0, full_scale / (2**adc_bits - 1))
    out = np.zeros((x.shape[0], levels.shape[1]))
    for sample in range(x.shape[0]):
        u = [int(v) % 2**bits for v in x[sample]]
        magnitude_bits = bits - 1 if signed else bits
        steps = [
            (s, min(dac_bits, magnitude_bits - s), 2**s) for s in range(0, magnitude_bits, dac_bits)
        ]
        if signed:
            steps.append((bits - 1, 1, -(2 ** (bits - 1))))
        for shift, width, weight in steps:
            chunk = np.array([(v >> shift) & (2**width - 1) for v in u], dtype=np.float64)
            current = chunk @ levels
            code = np.clip(np.round(current / lsb), 0, 2**adc_bits - 1)
            out[sample] += weight * code * lsb
    return out


@settings(max_examples=30)
@given(case=mvm_cases(), missing_bits=st.integers(1, 6))
def test_narrow_adc_departs_as_the_independent_model_says(case, missing_bits) -> None:  # type: ignore[no-untyped-def]
    levels, x, bits, signed, cell_bits, dac_bits = case
    adc_bits = max(1, lossless_adc_bits(128, cell_bits, dac_bits) - missing_bits)
    program = mvm_program(levels, bits, signed, cell_bits, dac_bits, adc_bits)
    got = imcc.Simulator(program, mode="functional").run(x.astype(np.float64)).outputs["y"]
    full_scale = 128 * (2**cell_bits - 1) * (2**dac_bits - 1)
    expected = independent_adc_model(levels, x, bits, signed, dac_bits, adc_bits, full_scale)
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6, atol=1e-3)


def test_narrow_adc_really_loses_information() -> None:
    """A check that cannot fail is no check: the lossy case differs from the exact one."""
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 4, size=(128, 16))
    x = rng.integers(0, 256, size=(4, 128))
    exact = x @ levels
    lossy = imcc.Simulator(mvm_program(levels, 8, 0, 2, 1, 5), mode="functional")
    got = lossy.run(x.astype(np.float64)).outputs["y"]
    assert not np.array_equal(got, exact)
    assert np.max(np.abs(got - exact)) > 100


@pytest.mark.parametrize("signed", [0, 1])
def test_inputs_out_of_range_wrap_like_a_bits_wide_register(signed: int) -> None:
    levels = np.eye(4, dtype=np.int64)
    program = mvm_program(levels, 4, signed, 2, 1, 9)
    x = np.array([[17.0, -1.0, 8.0, 7.0]])
    got = imcc.Simulator(program, mode="functional").run(x).outputs["y"][0]
    expected = [1, -1, -8, 7] if signed else [1, 15, 8, 7]
    assert got.tolist() == expected


@pytest.mark.parametrize("adc_bits", [9, 5])  # lossless for 16 rows of 2-bit cells; lossy
def test_a_block_mvm_is_its_vectors_one_by_one(adc_bits: int) -> None:
    """xbar.mvmb over m vectors equals m xbar.mvm bit for bit (the lossy ADC too), and its
    price is m times theirs."""
    rng = np.random.default_rng(3)
    rows, cols, m = 16, 12, 5
    levels = rng.integers(0, 4, size=(rows, cols))
    x = rng.integers(-128, 128, size=(3, m, rows))  # 3 samples of m vectors each
    block = imcc.Simulator(mvm_program(levels, 8, 1, 2, 1, adc_bits, vectors=m), mode="cycle")
    got = block.run(x.transpose(0, 2, 1).astype(np.float64))  # stored (rows, m) per sample
    single = imcc.Simulator(mvm_program(levels, 8, 1, 2, 1, adc_bits), mode="cycle")
    one = single.run(x.reshape(-1, rows).astype(np.float64)).outputs["y"].reshape(3, m, cols)
    assert np.array_equal(got.outputs["y"], one.transpose(0, 2, 1))
    if adc_bits == 9:
        assert np.array_equal(one.astype(np.int64), x @ levels)
    assert got.report.counts["macs"] == m * rows * cols
    assert got.report.counts["adc_conversions"] == m * 8 * cols  # 8 DAC steps of 1 bit
    target = block.machine.target
    one_price = price(target, make(spec.XBAR_MVM, 0, 0, 1, 8, 1, 1), rows, cols)
    block_price = price(target, make(spec.XBAR_MVM_BLOCK, 0, 0, 1, 8, 1, m, 1), rows, cols)
    assert block_price.cycles == m * one_price.cycles
    assert dict(block_price.energy) == pytest.approx({k: m * v for k, v in one_price.energy})
