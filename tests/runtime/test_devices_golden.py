"""Golden values: the device presets reproduce the published numbers of
shared/references/device_models.md (aihwkit's PCM, HERMES and ReRAM models, CrossSim's RRAM fit).

Each statistical check names its sample size and tolerance; tolerances are several standard
errors wide (standard error of a sample std over n normal draws: sigma / sqrt(2 n); of a mean:
sigma / sqrt(n)), so a seeded pass is not luck, yet tight enough to catch a wrong constant.
Deterministic checks (the fitted curves themselves) compare with the reference's rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from imcc.runtime.devices.cells import CellModel
from imcc.runtime.devices.presets import load_preset
from imcc.runtime.devices.statistics import conductance_statistics

HOUR, DAY, YEAR = 3600.0, 86400.0, 365 * 86400.0
N = 200_000  # cells per statistical check


def program(name: str, g_target_us: float | np.ndarray, seed: int = 0, n: int = N):  # type: ignore[no-untyped-def]
    model = CellModel(load_preset(name))
    g = np.broadcast_to(np.asarray(g_target_us, dtype=np.float64), (n,)).copy()
    return model, model.program(g, np.random.default_rng(seed))


def folded_normal(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and std of |N(mu, sigma^2)|, written out independently of the code under test."""
    phi = math.exp(-0.5 * (mu / sigma) ** 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(-mu / sigma / math.sqrt(2)))
    mean = sigma * 2 * phi + mu * (1 - 2 * cdf)
    return mean, math.sqrt(mu**2 + sigma**2 - mean**2)


# -- PCM: aihwkit PCMLikeNoiseModel (device_models.md 1.2) -----------------------------------
@pytest.mark.parametrize(("g_rel", "published"), [(0.1, 0.448), (0.5, 0.953), (1.0, 1.055)])
def test_pcm_programming_noise_at_several_targets(g_rel: float, published: float) -> None:
    model, cells = program("pcm", 25.0 * g_rel)
    sigma = float(model.programming_sigma(np.array([25.0 * g_rel]))[0])
    assert sigma == pytest.approx(published, abs=0.0015)  # the curve, to the reference's rounding
    # statistical: n = 200k, standard error of the std 0.16 %; tolerance 1 %
    measured = float(np.std(cells.g_prog - 25.0 * g_rel, ddof=1))
    assert measured == pytest.approx(sigma, rel=0.01)


def test_pcm_off_device_gets_clipped_programming_noise() -> None:
    """g_T = 0 still gets sigma(0) = 0.263 uS, clipped at 0: mean sigma / sqrt(2 pi) = 0.105."""
    _, cells = program("pcm", 0.0)
    assert float(cells.g_prog.min()) == 0.0
    # standard error of the mean 0.0003 uS at n = 200k; tolerance 0.003 uS
    assert float(cells.g_prog.mean()) == pytest.approx(0.26348 / math.sqrt(2 * math.pi), abs=0.003)


@pytest.mark.parametrize(
    ("g_rel", "mu", "sigma"),
    [(1.0, 0.049, 0.008), (0.5, 0.049, 0.008), (0.1, 0.0601, 0.0229), (0.05, 0.0708, 0.0315),
     (0.01, 0.0958, 0.045)],
)  # fmt: skip
def test_pcm_drift_exponent_distribution(g_rel: float, mu: float, sigma: float) -> None:
    preset = load_preset("pcm")
    drift = preset.drift
    g = np.array([g_rel])
    assert float(drift.nu_mean(g, 25 * g)[0]) == pytest.approx(mu, abs=6e-5)  # type: ignore[union-attr]
    assert float(drift.nu_std(g, 25 * g)[0]) == pytest.approx(sigma, abs=6e-5)  # type: ignore[union-attr]
    _, cells = program("pcm", 25.0 * g_rel)
    assert cells.nu is not None
    mean, std = folded_normal(float(drift.nu_mean(g, g)[0]), float(drift.nu_std(g, g)[0]))  # type: ignore[union-attr]
    # nu = |N(mu, sigma)|: n = 200k, standard errors < 0.2 % of the std; tolerances 1 % / 1.5 %
    assert float(cells.nu.mean()) == pytest.approx(mean, rel=0.01)
    assert float(cells.nu.std(ddof=1)) == pytest.approx(std, rel=0.015)


@pytest.mark.parametrize(
    ("seconds", "factor_049", "factor_010"),
    [(HOUR, 0.775, 0.595), (DAY, 0.664, 0.433), (YEAR, 0.497, 0.240)],
)
def test_pcm_drift_factor_at_one_hour_day_and_year(
    seconds: float, factor_049: float, factor_010: float
) -> None:
    """device_models.md: (t / t0)^-nu with t = t_inference + 20 s is 0.775 / 0.664 / 0.497 for
    nu = 0.049 (every target above g/g_max = 0.2045) and 0.595 / 0.433 / 0.240 for nu = 0.1
    (targets below ~0.0076). The median device has the median nu = mu (|N| barely folds)."""
    for g_rel, expected in ((1.0, factor_049), (0.001, factor_010)):
        model, cells = program("pcm", 25.0 * g_rel)
        g = model.conductance_at(cells, seconds)
        positive = cells.g_prog > 0
        median = float(np.median(g[positive] / cells.g_prog[positive]))
        # published to 3 decimals; the median of 200k draws is within 0.001 of exp(-mu ln t/t0)
        assert median == pytest.approx(expected, abs=0.0025)


@pytest.mark.parametrize(
    ("seconds", "published"), [(1.0, 4.19), (HOUR, 4.76), (DAY, 5.09), (YEAR, 5.64)]
)
def test_pcm_read_noise_factor(seconds: float, published: float) -> None:
    """sigma_read = |g_drift| Q_s(|g_prog| / g_max) sqrt(ln((t + t0 + t_read) / (2 t_read))):
    the sqrt-log factor is 4.19 / 4.76 / 5.09 / 5.64 (device_models.md lists 4.19 for
    t_inference -> 0; it is the value at 1 s, 4.18 at 0)."""
    model, cells = program("pcm", 25.0, n=50_000)
    g = model.conductance_at(cells, seconds)
    sigma = model.read_sigma(cells, g, seconds)
    assert sigma is not None
    q = np.minimum(0.0088 / np.maximum((cells.g_prog / 25.0) ** 0.65, 1e-3), 0.2)
    factor = sigma / (np.abs(g) * q)
    assert float(factor.min()) == pytest.approx(float(factor.max()), rel=1e-12)
    assert float(factor[0]) == pytest.approx(published, abs=0.006)
    # and a read draws exactly that noise: n = 50k, standard error 0.3 %; tolerance 1.5 %
    rng = np.random.default_rng(1)
    reads = g + sigma * rng.standard_normal(g.shape)
    assert float(np.std((reads - g) / sigma, ddof=1)) == pytest.approx(1.0, rel=0.015)


@pytest.mark.parametrize(("g_rel", "published"), [(1.0, 0.0088), (0.5, 0.0138), (0.1, 0.0393),
                                                  (0.005, 0.2)])  # fmt: skip
def test_pcm_read_noise_q_factor(g_rel: float, published: float) -> None:
    q = load_preset("pcm").read_noise.q  # type: ignore[union-attr]
    assert float(q(np.array([g_rel]), np.array([25 * g_rel]))[0]) == pytest.approx(
        published, abs=6e-5
    )


def test_pcm_reproduces_the_aihwkit_run_of_device_models() -> None:
    """device_models.md 1.5 ran aihwkit 1.1.0 on 256 x 256 weights uniform in [-1, 1], g_max
    25 uS, devices with g_T > 0: nu mean 0.0521 std 0.0169; programming error std 0.888 uS;
    conductance error at 1 h / 1 d / 1 y mean -2.81 / -4.20 / -6.25 uS, std 1.91 / 2.61 /
    3.73 uS; sum G / sum G_T = 0.775 / 0.664 / 0.499. Those are single draws of ~32k devices
    (standard error of those stds about 0.4 %): tolerances 2-3 % or 0.05 uS."""
    rng = np.random.default_rng(0)
    g_target = 25.0 * np.abs(rng.uniform(-1, 1, N))
    model = CellModel(load_preset("pcm"))
    cells = model.program(g_target, rng)
    assert cells.nu is not None
    assert float(cells.nu.mean()) == pytest.approx(0.0521, abs=0.0008)
    assert float(cells.nu.std()) == pytest.approx(0.0169, abs=0.0008)
    assert float(np.std(cells.g_prog - g_target)) == pytest.approx(0.888, rel=0.02)
    published = {HOUR: (-2.81, 1.91, 0.775), DAY: (-4.20, 2.61, 0.664), YEAR: (-6.25, 3.73, 0.499)}
    for seconds, (mean, std, ratio) in published.items():
        g = model.conductance_at(cells, seconds)
        sigma = model.read_sigma(cells, g, seconds)
        assert sigma is not None
        read = model.read_clip(g + sigma * rng.standard_normal(N))  # aihwkit's g_final
        error = read - g_target
        assert float(error.mean()) == pytest.approx(mean, abs=0.05)
        assert float(error.std()) == pytest.approx(std, rel=0.03)
        assert float(read.sum() / g_target.sum()) == pytest.approx(ratio, abs=0.004)


# -- PCM HERMES: aihwkit HermesNoiseModel, one device per cell (device_models.md 1.3) ---------
def test_hermes_curves_are_aihwkits_branch_fits() -> None:
    preset = load_preset("pcm-hermes")
    model = CellModel(preset)

    def at(curve, g_rel: float) -> float:  # type: ignore[no-untyped-def]
        return float(curve(np.array([g_rel]), np.array([10.35 * g_rel]))[0])

    # values worked out by hand from the coefficients in hermes.py
    assert float(model.programming_sigma(np.array([10.35]))[0]) == pytest.approx(1.00756712)
    drift, noise = preset.drift, preset.read_noise
    assert at(drift.nu_mean, 0.05) == pytest.approx(-0.0387 * math.log(0.05) - 0.0182)  # type: ignore[union-attr]
    assert at(drift.nu_mean, 0.5) == pytest.approx(0.0564)  # type: ignore[union-attr]
    assert at(drift.nu_mean, 0.001) == pytest.approx(0.13)  # type: ignore[union-attr]
    assert at(drift.nu_std, 0.5) == pytest.approx(0.012075)  # type: ignore[union-attr]
    assert at(drift.nu_std, 0.1) == pytest.approx(-0.0120 * math.log(0.1) - 0.0023)  # type: ignore[union-attr]
    assert at(noise.q, 0.5) == pytest.approx(0.0217)  # type: ignore[union-attr]
    assert at(noise.q, 0.1) == pytest.approx(-0.0078 * math.log(0.1) + 0.0038)  # type: ignore[union-attr]
    assert at(noise.q, 0.001) == pytest.approx(0.04)  # type: ignore[union-attr]
    # t0 = 200 s: nu = 0.0564 at one day gives ((86400 + 200) / 200)^-0.0564
    _, cells = program("pcm-hermes", 0.5 * 10.35)
    g = CellModel(preset).conductance_at(cells, DAY)
    median = float(np.median(g / cells.g_prog))
    assert median == pytest.approx((86600 / 200) ** -0.0564, abs=0.002)


# -- RRAM -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("seconds", "published"), [(1.0, 1.10), (DAY, 2.65), (2 * DAY, 2.68)])
def test_rram_wan_spread_at_the_fitted_times(seconds: float, published: float) -> None:
    """aihwkit ReRamWan2022: sigma(g_T = g_max) = 1.10 / 2.65 / 2.68 uS at 1 s / 1 d / 2 d."""
    model, cells = program("rram-wan", 40.0)
    g = model.conductance_at(cells, seconds)
    # n = 200k, standard error of the std 0.16 %; published to 2 decimals: tolerance 1.5 %
    assert float(np.std(g - 40.0, ddof=1)) == pytest.approx(published, rel=0.015)


def test_rram_wan_relaxation_is_a_consistent_trajectory() -> None:
    model, cells = program("rram-wan", 20.0, n=20_000)
    hour, day, two_days = (model.conductance_at(cells, t) - 20.0 for t in (HOUR, DAY, 2 * DAY))
    # the same devices: strongly correlated deviations, growing spread
    assert np.corrcoef(day, two_days)[0, 1] > 0.95
    assert np.std(cells.g_prog - 20.0) < np.std(hour) < np.std(day) <= np.std(two_days) * 1.01


def test_rram_cmo_relaxation_and_read_noise() -> None:
    """aihwkit ReRamCMONoiseModel at g = 50 uS, 1 day: mean shift -1.01 uS, sigma_relax
    0.89 uS, sigma_read 0.23 uS (device_models.md 1.3)."""
    model, cells = program("rram-cmo", 50.0)
    g = model.conductance_at(cells, DAY)
    shift = g - cells.g_prog
    assert float(shift.mean()) == pytest.approx(-1.01, abs=0.01)  # standard error 0.002 uS
    assert float(shift.std(ddof=1)) == pytest.approx(0.89, rel=0.01)
    sigma = model.read_sigma(cells, g, DAY)
    assert sigma is not None
    assert float(np.median(sigma)) == pytest.approx(0.23, abs=0.005)
    assert model.read_sigma(cells, cells.g_prog, 0.0) is None  # aihwkit adds none at t = 0


@pytest.mark.parametrize(("g_us", "expected"), [(50.0, 4.327), (137.5, 3.530), (225.0, 2.733)])
def test_rram_milo_programming_noise(g_us: float, expected: float) -> None:
    """CrossSim RRAMMilo: sigma_G = -0.009107 G + 4.782321 uS over 50-225 uS."""
    _, cells = program("rram-milo", g_us)
    assert float(np.std(cells.g_prog - g_us, ddof=1)) == pytest.approx(expected, rel=0.01)


def test_statistics_api_shows_the_pcm_golden_numbers() -> None:
    stats = conductance_statistics(
        load_preset("pcm"), times=(0.0, HOUR, DAY, YEAR), targets_us=(25.0,), cells=50_000
    )
    level = stats.levels[0]
    assert level.programmed_std_us == pytest.approx(1.055, rel=0.015)
    assert [round(at.drift_factor, 3) for at in level.times] == pytest.approx(
        [1.0, 0.775, 0.664, 0.497], abs=0.0025
    )
    assert level.nu_mean == pytest.approx(0.049, abs=0.0005)
    assert "drift" in stats.table() and "25.000" in stats.table()
