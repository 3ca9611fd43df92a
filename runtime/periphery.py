"""Array periphery: the ADC that digitises column currents (the DAC schedule is isa/numerics.py).

ADC: codes in [0, 2^adc_bits - 1] over a full-scale range per column, in level steps (one level
step = the current of one cell one level up under a unit input). By default the range is the
array's largest possible current, rows x (2^cell_bits - 1) x (2^dac_bits - 1); the compiler may
set narrower ranges per column or per slice (from the weights or calibration data). The step is
lsb = range / (2^adc_bits - 1), but never finer than one level step: finer steps would only
resolve noise, and at one level step an exact device reads exact integers. Currents are rounded
to the nearest code and clipped; the digital value is code x lsb.
"""

from __future__ import annotations

import numpy as np


class Adc:
    def __init__(self, bits: int, full_scale: np.ndarray) -> None:
        self.bits = bits
        self.top = (1 << bits) - 1
        self.full_scale = np.asarray(full_scale, dtype=np.float64)  # (cols,)
        self.lsb = np.maximum(1.0, self.full_scale / self.top)
        self.unit_step = bool(np.all(self.lsb == 1.0))

    def codes(self, current: np.ndarray) -> np.ndarray:
        """ADC codes of column currents; `current` is (cols, ...), overwritten."""
        if not self.unit_step:  # with lsb = 1 everywhere, round and clip only
            np.divide(current, self.lsb.reshape(-1, *([1] * (current.ndim - 1))), out=current)
        np.rint(current, out=current)
        return np.clip(current, 0, self.top, out=current)

    def convert(self, current: np.ndarray) -> np.ndarray:
        """Digital value (code x lsb) of column currents; `current` is (cols, ...), overwritten."""
        codes = self.codes(current)
        if not self.unit_step:
            np.multiply(codes, self.lsb.reshape(-1, *([1] * (codes.ndim - 1))), out=codes)
        return codes

    def lossless_for(self, levels: np.ndarray, dac_bits: int) -> bool:
        """True when no current the array can produce is rounded or clipped: every column's
        largest current fits the code range at a step of one level."""
        largest = levels.sum(axis=0) * ((1 << dac_bits) - 1)
        return bool(np.all(self.lsb == 1.0) and np.all(largest <= self.top))


def full_scale(rows: int, cell_bits: int, dac_bits: int) -> float:
    return float(rows * ((1 << cell_bits) - 1) * ((1 << dac_bits) - 1))
