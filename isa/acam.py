"""What the analog-CAM instructions mean for data: input coding, cell spreading, CAM images.

Part of the ISA contract, as xbar.py is for `xbar.mvm`: the compiler builds coding tables and
CAM images with these rules and proves its mapping with them; the runtime executes them.

Rank coding (lossless, DESIGN section 7). A coding table lists, per coded feature, its cuts:
sorted thresholds t_k with a flag `inclusive`. A cut splits the real line just above t_k
(inclusive: `x <= t_k` lies below it) or just below t_k (`x < t_k` lies below). The code of a
finite x is the number of cuts it lies above, 0..K; NaN gets a level of its own, below every
finite code (`nan_low`, finite codes then start at 1) or above them (K + 1). So a branch
`x <= t` or `x < t` at cut k is exactly `code <= k` (shifted by one when NaN is low), and a
root-to-leaf path is one interval of codes per feature.

Cells. A cell takes L levels 0..L-1 (L = the target's acam.levels). A feature with C codes
spans n = ceil((C - 1) / (L - 1)) adjacent cells; cell j sees d_j = clip(code - j (L - 1), 0,
L - 1), a unary ("thermometer") spread. A code interval [lo, hi) becomes, per cell,
[clip(lo - j (L - 1), 0, L - 1), clip(hi - j (L - 1), 1, L)), and `code in [lo, hi)` holds
exactly when every cell's level lies in its range (the cell where a bound falls decides it, the
others are implied). A cell range [0, L) is a don't-care.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from imcc.isa.numerics import cell_levels, rank_code

__all__ = [
    "CamCode",
    "CamImage",
    "cell_ranges",
    "cells_for",
    "codes",
    "decode_ranges",
    "spread",
]


def cells_for(codes_count: int, levels: int) -> int:
    """Cells a feature with `codes_count` codes (0..codes_count-1) spans at `levels` per cell."""
    return max(1, -(-(codes_count - 1) // (levels - 1)))


class CamCode:
    """A coding table: how the encoder (spec.ACAM_ENCODE) turns features into cell levels.

    Per coded feature f (in cell order): `features[f]` is its index in the input vector,
    `nan_low[f]` whether NaN takes code 0, `cells[f]` how many cells it spans, and its cuts are
    `cuts[offsets[f]:offsets[f+1]]` (ascending thresholds, float64) with `inclusive` flags
    (1: `x <= t` lies below the cut; 0: `x < t` does). Cuts of one feature are strictly ordered
    by (threshold, inclusive).
    """

    _HEAD = struct.Struct("<II")

    def __init__(
        self,
        features: np.ndarray,
        nan_low: np.ndarray,
        cells: np.ndarray,
        offsets: np.ndarray,
        cuts: np.ndarray,
        inclusive: np.ndarray,
    ) -> None:
        self.features = np.ascontiguousarray(features, dtype=np.int64)
        self.nan_low = np.ascontiguousarray(nan_low, dtype=np.uint8)
        self.cells = np.ascontiguousarray(cells, dtype=np.int64)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.cuts = np.ascontiguousarray(cuts, dtype=np.float64)
        self.inclusive = np.ascontiguousarray(inclusive, dtype=np.uint8)

    @property
    def n_features(self) -> int:
        return int(self.features.size)

    @property
    def n_cells(self) -> int:
        return int(self.cells.sum())

    def cut_count(self, f: int) -> int:
        return int(self.offsets[f + 1] - self.offsets[f])

    def codes_count(self, f: int) -> int:
        """Codes of feature f: its K + 1 finite codes and the NaN code."""
        return self.cut_count(f) + 2

    @property
    def comparisons(self) -> int:
        """Comparisons of a binary search per feature over its K cuts and the NaN check:
        ceil(log2(K + 2)) each (what the encoder's comparators do)."""
        return sum(math.ceil(math.log2(self.codes_count(f))) for f in range(self.n_features))

    def problems(self, levels: int) -> list[str]:
        """What is inconsistent in the table (empty when it is well formed)."""
        found = []
        n = self.n_features
        for name, array in (("nan_low", self.nan_low), ("cells", self.cells)):
            if array.shape != (n,):
                found.append(f"{name} has {array.size} entries for {n} features")
        if self.offsets.shape != (n + 1,) or (n + 1 and self.offsets[0] != 0):
            found.append("offsets must start at 0 and have one entry per feature plus one")
            return found
        if np.any(np.diff(self.offsets) < 0) or self.offsets[-1] != self.cuts.size:
            found.append("offsets must rise to the number of cuts")
            return found
        if self.inclusive.shape != self.cuts.shape:
            found.append("cuts and inclusive flags differ in length")
        if found:
            return found
        if np.any(self.features < 0):
            found.append("feature indices must not be negative")
        if np.any(self.nan_low > 1) or np.any(self.inclusive > 1):
            found.append("nan_low and inclusive flags must be 0 or 1")
        if np.isnan(self.cuts).any():
            found.append("a cut threshold is NaN")
        for f in range(n):
            lo, hi = int(self.offsets[f]), int(self.offsets[f + 1])
            t, inc = self.cuts[lo:hi], self.inclusive[lo:hi].astype(np.int64)
            if hi - lo > 1 and not np.all(
                (t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (inc[1:] > inc[:-1]))
            ):
                found.append(f"the cuts of coded feature {f} are not strictly ascending")
            need = cells_for(hi - lo + 2, levels)
            if self.cells[f] < need:
                found.append(
                    f"coded feature {f} has {hi - lo + 2} codes, which need {need} cells of "
                    f"{levels} levels, not {int(self.cells[f])}"
                )
        return found

    def to_bytes(self) -> bytes:
        """features u32 and K u32, then per feature (index i64, nan_low u8, cells u16 pad),
        offsets i64, cuts f64, inclusive u8: little-endian, the container's section body."""
        n = self.n_features
        head = self._HEAD.pack(n, int(self.cuts.size))
        return b"".join(
            (
                head,
                self.features.astype("<i8").tobytes(),
                self.nan_low.astype("u1").tobytes(),
                self.cells.astype("<u2").tobytes(),
                self.offsets.astype("<i8").tobytes(),
                self.cuts.astype("<f8").tobytes(),
                self.inclusive.astype("u1").tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> CamCode:
        """Inverse of `to_bytes`; ValueError names what does not fit."""
        if len(body) < cls._HEAD.size:
            raise ValueError(f"{len(body)} bytes is shorter than the {cls._HEAD.size}-byte head")
        n, k = cls._HEAD.unpack_from(body)
        sizes = (8 * n, n, 2 * n, 8 * (n + 1), 8 * k, k)
        if len(body) != cls._HEAD.size + sum(sizes):
            raise ValueError(
                f"{len(body)} bytes do not hold {n} features and {k} cuts "
                f"({cls._HEAD.size + sum(sizes)} bytes)"
            )
        parts = []
        offset = cls._HEAD.size
        for size, dtype in zip(sizes, ("<i8", "u1", "<u2", "<i8", "<f8", "u1"), strict=True):
            parts.append(np.frombuffer(body, dtype=dtype, count=size // np.dtype(dtype).itemsize,
                                       offset=offset).copy())  # fmt: skip
            offset += size
        return cls(*parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CamCode) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


class CamImage:
    """What one CAM array holds: per row and cell a level range [low, high), and the leaf RAM.

    `low` in [0, L - 1] and `high` in [1, L] (uint16, rows x cols); [0, L) is a don't-care.
    `leaves` (rows x width, float64) is the leaf RAM: what the leaf read adds for a matched row.
    `trees` is how many rows a search matches when the rows are the paths of that many trees
    (one each); it prices the leaf RAM reads and changes no result.
    """

    def __init__(
        self, low: np.ndarray, high: np.ndarray, leaves: np.ndarray, trees: int = 0
    ) -> None:
        self.low = np.ascontiguousarray(low, dtype=np.uint16)
        self.high = np.ascontiguousarray(high, dtype=np.uint16)
        self.leaves = np.ascontiguousarray(leaves, dtype=np.float64)
        self.trees = int(trees)

    @property
    def rows(self) -> int:
        return int(self.low.shape[0])

    @property
    def cols(self) -> int:
        return int(self.low.shape[1])

    @property
    def width(self) -> int:
        return int(self.leaves.shape[1])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CamImage)
            and self.trees == other.trees
            and np.array_equal(self.low, other.low)
            and np.array_equal(self.high, other.high)
            and self.leaves.shape == other.leaves.shape
            and self.leaves.tobytes() == other.leaves.tobytes()
        )

    __hash__ = None  # type: ignore[assignment]


def codes(table: CamCode, x: np.ndarray) -> np.ndarray:
    """Rank codes (features, batch) of the input vectors x (input features, batch), float64.

    code = #{cuts below x}: cuts with inclusive = 1 lie below x when t < x, the others when
    t <= x; NaN gets its own level (0 and the rest shifted up, or K + 1); see
    numerics.rank_code.
    """
    out = np.empty((table.n_features, x.shape[1]), dtype=np.int64)
    for f in range(table.n_features):
        lo, hi = int(table.offsets[f]), int(table.offsets[f + 1])
        v = x[int(table.features[f])]
        out[f] = rank_code(v, table.cuts[lo:hi], table.inclusive[lo:hi], bool(table.nan_low[f]))
    return out


def spread(table: CamCode, feature_codes: np.ndarray, levels: int) -> np.ndarray:
    """The DAC level of every cell (cells, batch): d_j = clip(code - j (L - 1), 0, L - 1)."""
    parts = [cell_levels(feature_codes[f], int(n), levels) for f, n in enumerate(table.cells)]
    if not parts:
        return np.zeros((0, feature_codes.shape[1]), dtype=np.int64)
    return np.concatenate(parts, axis=0)


def cell_ranges(lo: int, hi: int, cells: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell [low, high) ranges that accept exactly the codes [lo, hi) of one feature."""
    step = levels - 1
    base = step * np.arange(cells)
    return (
        np.clip(lo - base, 0, step).astype(np.uint16),
        np.clip(hi - base, 1, levels).astype(np.uint16),
    )


def decode_ranges(low: np.ndarray, high: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """The code interval [lo, hi) that a feature's cells (rows x cells) accept, per row.

    Cell j accepts d_j >= low_j exactly when code >= j (L - 1) + low_j (low_j > 0), and
    d_j < high_j when code < j (L - 1) + high_j (high_j < L); the interval is the intersection.
    hi is a large number where no cell bounds it from above.
    """
    step = levels - 1
    base = step * np.arange(low.shape[1], dtype=np.int64)
    low64, high64 = low.astype(np.int64), high.astype(np.int64)
    lo = np.max(np.where(low64 > 0, base + low64, 0), axis=1, initial=0)
    unbounded = np.iinfo(np.int64).max
    hi = np.min(np.where(high64 < levels, base + high64, unbounded), axis=1, initial=unbounded)
    return lo, hi
