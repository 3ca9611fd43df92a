"""The analog-CAM device model: a CAM image -> the thresholds an array really holds.

A cell stores a range of input levels as two analog thresholds (the 6T2M cell of Li et al.,
Nat. Commun. 2020: one memristor per bound). For a stored range [low, high) of integer levels
the ideal thresholds sit half way between levels, T_low = low - 1/2 and T_high = high - 1/2,
and a cell matches a driven level v when T_low <= v < T_high. Programming is imprecise: each
programmed bound lands at its target plus N(0, sigma^2), sigma in units of one level step,
drawn once when the array is programmed (seeded; the same seed programs the same chip). A bound
at the edge of the range (low = 0, high = L) is a don't-care, programmed to the rail (the
device's extreme state, as X-TIME's wildcard), and is not moved by the noise. Rows may then
match for 0 or 2 inputs of a tree where the ideal CAM matches exactly one: that is the error.

Because the levels a DAC drives are integers 0..L-1, what a programmed array does is fully
described by one bit per (cell, level, row): whether the cell of that row accepts that level.
`CamState.accept` holds those bits packed over rows, so a search is a table lookup per cell
and an AND over cells, exact for any threshold values (acam.search in semantics/acam.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.isa.acam import CamImage
from imcc.isa.numerics import accepts as cell_accepts


class CamState:
    """What a programmed CAM array holds: its thresholds and, derived, its accept table."""

    def __init__(
        self, image: int, lower: np.ndarray, upper: np.ndarray, leaves: np.ndarray, levels: int
    ) -> None:
        self.image = image
        self.lower = lower  # (rows, cols) thresholds in level units; -inf: don't-care
        self.upper = upper  # (rows, cols); +inf: don't-care
        self.leaves = leaves  # (rows, width) leaf RAM
        self.levels = levels
        # accept[c, v] = bits over rows (little-endian uint64 words) of cells c that accept v
        v = np.arange(levels, dtype=np.float64)[None, None, :]
        accepts = cell_accepts(v, lower[:, :, None], upper[:, :, None])  # (rows, cols, levels)
        words = -(-self.rows // 64)
        padded = np.zeros((words * 64, self.cols, levels), dtype=bool)
        padded[: self.rows] = accepts
        packed = np.packbits(padded, axis=0, bitorder="little")  # (words * 8, cols, levels)
        table = np.ascontiguousarray(packed.transpose(1, 2, 0))  # (cols, levels, bytes)
        self.accept = table.view("<u8")  # (cols, levels, words)
        # cells that accept every level in every row take no part in the AND: skip them
        every = ~np.uint64(0)
        trivial = np.all(self.accept == every, axis=(1, 2)) if words * 64 == self.rows else (
            np.all(accepts, axis=(0, 2))
        )  # fmt: skip
        self.active = np.nonzero(~trivial)[0]
        # the active cells' tables stacked: entry (i * levels + v) is cell active[i] at level v
        self.accept_flat = np.ascontiguousarray(self.accept[self.active]).reshape(
            self.active.size * levels, words
        )
        self.offsets = (np.arange(self.active.size) * levels)[:, None]

    @property
    def rows(self) -> int:
        return int(self.lower.shape[0])

    @property
    def cols(self) -> int:
        return int(self.lower.shape[1])

    @property
    def width(self) -> int:
        return int(self.leaves.shape[1])


@dataclass(frozen=True, slots=True)
class CamDevice:
    """Programming noise on the stored bounds: sigma in level steps (0: the ideal CAM)."""

    name: str = "ideal"
    sigma: float = 0.0

    @property
    def exact(self) -> bool:
        return self.sigma == 0.0

    def program(
        self, image: CamImage, index: int, levels: int, rng: np.random.Generator
    ) -> CamState:
        low = image.low.astype(np.float64)
        high = image.high.astype(np.float64)
        lower = np.where(image.low > 0, low - 0.5, -np.inf)
        upper = np.where(image.high < levels, high - 0.5, np.inf)
        if self.sigma > 0:
            lower = lower + rng.normal(0.0, self.sigma, lower.shape)
            upper = upper + rng.normal(0.0, self.sigma, upper.shape)
        return CamState(index, lower, upper, image.leaves, levels)
