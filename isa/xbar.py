"""How `xbar.mvm` applies its inputs: the DAC step schedule, part of the instruction's meaning.

A `bits`-bit input is applied dac_bits at a time. Unsigned inputs take ceil(bits / dac_bits)
steps of value chunks; signed (two's complement) inputs take their bits - 1 magnitude bits that
way plus one final 1-bit step for the sign bit, weighted -2^(bits-1):
x = sum_t weight_t * chunk_t, with every chunk a non-negative voltage level.
Both the runtime (which applies the steps) and the compiler (which sizes ADC ranges from the
currents the steps produce) use this schedule.
"""

from __future__ import annotations

import numpy as np


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
