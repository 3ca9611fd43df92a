"""Array periphery: the DAC that applies inputs in steps and the ADC that digitises columns.

DAC: a `bits`-bit input is applied dac_bits at a time. Unsigned inputs take
ceil(bits / dac_bits) steps of value chunks; signed (two's complement) inputs take the
magnitude bits that way plus one final 1-bit step for the sign bit, whose weight is -2^(bits-1):
x = sum_t weight_t * chunk_t, every chunk a non-negative voltage level.
ADC: codes in [0, 2^adc_bits - 1] over a full-scale of rows x (2^cell_bits - 1) x
(2^dac_bits - 1) level steps (the array's largest possible current). When that fits the code
range the ADC is lossless (lsb = 1 level step); otherwise lsb = full_scale / (2^adc_bits - 1),
currents are rounded to the nearest code and clipped, and the digital value is code x lsb.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class InputSteps:
    """The DAC schedule for one MVM: (shift, width, weight) per step."""

    steps: tuple[tuple[int, int, int], ...]

    @classmethod
    def make(cls, bits: int, signed: bool, dac_bits: int) -> InputSteps:
        magnitude = bits - 1 if signed else bits
        steps = []
        for shift in range(0, magnitude, dac_bits):
            width = min(dac_bits, magnitude - shift)
            steps.append((shift, width, 1 << shift))
        if signed:
            steps.append((bits - 1, 1, -(1 << (bits - 1))))
        return cls(tuple(steps))

    def __len__(self) -> int:
        return len(self.steps)

    def chunks(self, x_int: np.ndarray, bits: int) -> list[tuple[np.ndarray, int]]:
        """(chunk, weight) per step for integer inputs x_int (two's complement in `bits`)."""
        unsigned = np.mod(x_int, 1 << bits).astype(np.int64)
        return [
            (((unsigned >> shift) & ((1 << width) - 1)).astype(np.float64), weight)
            for shift, width, weight in self.steps
        ]


@dataclass(frozen=True, slots=True)
class Adc:
    bits: int
    full_scale: float  # largest current, in level steps

    @property
    def lossless(self) -> bool:
        return self.full_scale <= (1 << self.bits) - 1

    @property
    def lsb(self) -> float:
        return 1.0 if self.lossless else self.full_scale / ((1 << self.bits) - 1)

    def convert(self, current: np.ndarray) -> np.ndarray:
        """Digital value of each column current (code x lsb)."""
        top = (1 << self.bits) - 1
        codes = np.clip(np.rint(current / self.lsb), 0, top)
        return codes * self.lsb


def full_scale(rows: int, cell_bits: int, dac_bits: int) -> float:
    return float(rows * ((1 << cell_bits) - 1) * ((1 << dac_bits) - 1))
