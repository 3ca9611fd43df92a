"""The vector unit's transcendental semantics against independent references."""

from __future__ import annotations

import math

import numpy as np

from imcc.isa import spec
from imcc.runtime.semantics import _UNARY


def test_erf_matches_math_erf_within_1e_7() -> None:
    x = np.concatenate([np.linspace(-6, 6, 1201), [0.0, -0.0, 1e-300, np.inf, -np.inf]])
    got = _UNARY[spec.SIMD_ERF.mnemonic](x)
    expected = np.array([math.erf(v) for v in x])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    assert _UNARY[spec.SIMD_ERF.mnemonic](np.zeros(0)).shape == (0,)


def test_sqrt_is_the_ieee_square_root() -> None:
    x = np.random.default_rng(0).uniform(0, 100, 64)
    assert np.array_equal(_UNARY[spec.SIMD_SQRT.mnemonic](x), np.sqrt(x))
