"""Numerics the compiler and the runtime share: part of the instructions' meaning.

- The quantisation range of a `bits`-bit input or weight (`quant_range`, `qmax`): signed values
  are symmetric, [-(2^(b-1) - 1), 2^(b-1) - 1], so negation never overflows; unsigned ones are
  [0, 2^b - 1]. `simd.quant`, the IR interpreter, the quantize pass and the emitted scale code
  all use these bounds.
- How `xbar.mvm` applies its inputs, the DAC step schedule. A `bits`-bit input is applied
  dac_bits at a time. Unsigned inputs take ceil(bits / dac_bits) steps of value chunks; signed
  (two's complement) inputs take their bits - 1 magnitude bits that way plus one final 1-bit
  step for the sign bit, weighted -2^(bits-1): x = sum_t weight_t * chunk_t, with every chunk a
  non-negative voltage level. Both the runtime (which applies the steps) and the compiler (which
  sizes ADC ranges from the currents the steps produce) use this schedule.
- What the analog-CAM instructions compute (the data layout is isa/acam.py's): the rank code of
  a feature against its cuts and its spread over cells (`rank_code`, `cell_levels`), the level
  a search drives (`driven_levels`), whether a cell accepts a level and a row matches
  (`accepts`, `row_matches`), and the leaf accumulation of matched rows (`accumulate_leaves`).
  The runtime's semantics, the compiler's model of an ensemble (`CamPlan.evaluate`) and the
  compiled kernels (runtime/kernels.py, checked against these bit for bit) compute these.
"""

from __future__ import annotations

import numpy as np


def quant_range(bits: int, signed: bool) -> tuple[int, int]:
    """(lowest, highest) integer a `bits`-bit value takes: symmetric when signed."""
    if signed:
        return -(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def qmax(bits: int, signed: bool) -> int:
    """The largest integer of the range: a scale is max|x| / qmax."""
    return quant_range(bits, signed)[1]


def input_steps(bits: int, signed: bool, dac_bits: int) -> tuple[tuple[int, int, int], ...]:
    """(shift, width, weight) of each DAC step."""
    magnitude = bits - 1 if signed else bits
    steps = [
        (shift, min(dac_bits, magnitude - shift), 1 << shift)
        for shift in range(0, magnitude, dac_bits)
    ]
    if signed:
        steps.append((bits - 1, 1, -(1 << (bits - 1))))
    return tuple(steps)


def input_planes(
    x_int: np.ndarray, bits: int, signed: bool, dac_bits: int, axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The chunk every step applies, stacked along a new `axis` as float64, and the weight of
    each step, for integer inputs taken modulo 2^bits (two's complement)."""
    steps = input_steps(bits, signed, dac_bits)
    # x mod 2^bits is x & (2^bits - 1) in two's complement; int32 halves the memory traffic
    dtype = np.int32 if bits < 31 else np.int64
    unsigned: np.ndarray = np.bitwise_and(np.asarray(x_int).astype(dtype), (1 << bits) - 1)
    shape = [1] * (unsigned.ndim + 1)
    shape[axis] = len(steps)
    shifts = np.array([s for s, _, _ in steps], dtype=dtype).reshape(shape)
    masks = np.array([(1 << w) - 1 for _, w, _ in steps], dtype=dtype).reshape(shape)
    planes = ((np.expand_dims(unsigned, axis) >> shifts) & masks).astype(np.float64)
    return planes, np.array([w for _, _, w in steps], dtype=np.float64)


# -- analog CAM ------------------------------------------------------------------------------


def rank_code(x: np.ndarray, cuts: np.ndarray, inclusive: np.ndarray, nan_low: bool) -> np.ndarray:
    """Rank codes (int64, the shape of x) of one feature's values against its K cuts (ascending
    by (threshold, inclusive)): the number of cuts x lies above. An inclusive cut (`x <= t` lies
    below it) is below x when t < x, an exclusive one when t <= x. NaN gets a level of its own:
    0 with the finite codes shifted up by one when `nan_low`, else K + 1."""
    flags = np.asarray(inclusive).astype(bool)
    code = np.searchsorted(cuts[flags], x, side="left") + np.searchsorted(
        cuts[~flags], x, side="right"
    )
    nan_code, shift = (0, 1) if nan_low else (cuts.size + 1, 0)
    result: np.ndarray = np.where(np.isnan(x), nan_code, code + shift)
    return result


def cell_levels(code: np.ndarray, cells: int, levels: int) -> np.ndarray:
    """The level each of a feature's `cells` adjacent cells sees (cells, batch) for its codes
    (batch): d_j = clip(code - j (L - 1), 0, L - 1), a unary ("thermometer") spread."""
    step = levels - 1
    result: np.ndarray = np.clip(code[None, :] - step * np.arange(int(cells))[:, None], 0, step)
    return result


def driven_levels(x: np.ndarray, levels: int) -> np.ndarray:
    """The level (int64) a CAM search drives for each buffer value: clip(rint(x), 0, L - 1),
    rounding half to even; NaN drives 0."""
    result: np.ndarray = np.fmin(np.fmax(np.rint(x), 0.0), levels - 1).astype(np.int64)
    return result


def accepts(level: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Whether a cell storing [low, high) accepts a driven level: low <= level < high. The
    bounds may lie between levels (the thresholds a programmed device holds); broadcasts."""
    result: np.ndarray = (low <= level) & (level < high)
    return result


def row_matches(levels: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(batch, rows): whether each row of bounds (rows, cells) matches the driven levels
    (cells, batch): every cell of the row accepts its level (the match line is an AND)."""
    result: np.ndarray = np.asarray(accepts(levels.T[:, None, :], low, high).all(axis=2))
    return result


def accumulate_leaves(
    acc: np.ndarray, samples: np.ndarray, rows: np.ndarray, leaves: np.ndarray
) -> None:
    """Add the leaf row leaves[rows[i]] to acc[samples[i]] (acc: batch x n) for every match i,
    in place, in acc's dtype (float32 rounds after every add). Matches come sample-major, and a
    sample's leaves are added one after another in the order given (row order, which is tree
    order): a sequential sum, as the chip's accumulator adds them."""
    if rows.size == 0:
        return
    # The k-th match of every sample is added in round k. Samples with fewer matches add -0.0,
    # the exact identity of IEEE addition (x + -0.0 == x, for x = +0.0 too).
    n = acc.shape[1]
    counts = np.bincount(samples, minlength=acc.shape[0])
    rank = np.arange(samples.size) - np.repeat(np.cumsum(counts) - counts, counts)
    rounds = np.full((int(rank.max()) + 1, acc.shape[0], n), -0.0, dtype=acc.dtype)
    rounds[rank, samples] = leaves[rows].astype(acc.dtype)
    for k in range(rounds.shape[0]):
        np.add(acc, rounds[k], out=acc)
