"""The compiled CAM kernels agree with the numpy definitions bit for bit, odd inputs included."""

from __future__ import annotations

import numpy as np
import pytest

from imcc.isa.acam import CamCode, CamImage, codes, spread
from imcc.runtime.acam import CamDevice
from imcc.runtime.kernels import kernels
from imcc.runtime.semantics.acam import leaf, search

KERNELS = kernels()
pytestmark = pytest.mark.skipif(KERNELS is None, reason="llvmlite cannot build the kernels here")
LEVELS = 6


def state(rows: int, cols: int, seed: int, sigma: float) -> object:
    rng = np.random.default_rng(seed)
    low = rng.integers(0, LEVELS, (rows, cols))
    high = np.minimum(low + rng.integers(1, LEVELS + 2, (rows, cols)), LEVELS)
    wildcard = rng.random((rows, cols)) < 0.5
    low[wildcard], high[wildcard] = 0, LEVELS
    leaves = rng.normal(size=(rows, 3)) * 10.0 ** rng.integers(-8, 8, (rows, 1))
    return CamDevice("test", sigma).program(CamImage(low, high, leaves), 0, LEVELS, rng)


@pytest.mark.parametrize(("rows", "cols", "sigma"), [(1, 1, 0.0), (63, 5, 0.4), (64, 7, 0.0),
                                                     (200, 9, 0.8)])  # fmt: skip
@pytest.mark.parametrize("chain", [False, True])
def test_search_kernel_is_the_numpy_search(rows: int, cols: int, sigma: float, chain: bool) -> None:
    assert KERNELS is not None
    cam = state(rows, cols, rows + cols, sigma)
    rng = np.random.default_rng(1)
    batch = 37
    driven = rng.integers(-2, LEVELS + 2, (cols, batch)).astype(np.float64)
    driven[0, :5] = [np.nan, 0.5, 1.5, 2.4999, -0.6]  # NaN, round-half-even, clipping
    words = -(-rows // 32)
    previous = rng.integers(0, 2**32, (words, batch)).astype(np.float64)
    previous[0, :4] = [np.nan, -1.0, 2.0**32, 7.9]  # read as 0, 0, 0, 7
    expected, got = previous.copy(), previous.copy()
    search(cam, driven, expected, chain)  # type: ignore[arg-type]
    KERNELS.search(driven, cam.active, cam.accept_flat, LEVELS, rows, got, chain)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("single", [False, True])
def test_leaf_kernel_is_the_numpy_leaf(single: bool) -> None:
    assert KERNELS is not None
    cam = state(100, 3, 7, 0.0)
    rng = np.random.default_rng(2)
    batch = 29
    match = rng.integers(0, 2**32, (4, batch)).astype(np.float64)
    match[3] = 2.0**32 - 1  # bits past row 100 are ignored
    match[0, :3] = [np.nan, -5.0, 1e12]
    acc = rng.normal(size=(3, batch)) * 1e3
    expected, got = acc.copy(), acc.copy()
    leaf(cam, match, expected, single)  # type: ignore[arg-type]
    KERNELS.leaf(match, 100, cam.leaves, got, single)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got, expected)


def test_encode_kernel_is_the_numpy_encoding() -> None:
    assert KERNELS is not None
    rng = np.random.default_rng(3)
    cuts, inclusive, offsets, cells = [], [], [0], []
    for k in (0, 1, 5, 17):
        t = np.sort(rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, 3.5, 1e300], size=k))
        flags = rng.integers(0, 2, k)
        order = np.lexsort((flags, t))
        pairs = sorted({(float(a), int(b)) for a, b in zip(t[order], flags[order], strict=True)})
        cuts += [a for a, _ in pairs]
        inclusive += [b for _, b in pairs]
        offsets.append(len(cuts))
        cells.append(max(1, -(-(len(pairs) + 1) // (LEVELS - 1))))
    table = CamCode(np.array([2, 0, 3, 1]), np.array([1, 0, 1, 0]), np.array(cells),
                    np.array(offsets), np.array(cuts), np.array(inclusive))  # fmt: skip
    assert not table.problems(LEVELS)
    x = rng.choice([-2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.5, 9.0, np.nan, np.inf, -np.inf],
                   size=(4, 50))  # fmt: skip
    expected = spread(table, codes(table, x), LEVELS).astype(np.float64)
    got = np.full((table.n_cells, 50), -7.0)
    KERNELS.encode(table, x, LEVELS, got)
    np.testing.assert_array_equal(got, expected)
