"""Cell physics of a preset, in conductance (uS): programming, evolution in time, read noise.

The three time scales of DESIGN section 8, kept apart:
- `CellModel.program` samples, once, everything fixed at programming: programming noise,
  device and chip variation, stuck-at faults, and the per-device random parameters of later
  evolution (PCM drift exponents, the direction each RRAM cell relaxes in, flash charge-loss
  rates). Nothing is re-drawn later, so one chip evaluated at 1 h and then 1 day follows one
  consistent trajectory.
- `conductance_at(cells, t)` is deterministic given those draws: drift, relaxation, retention
  at t seconds since programming.
- `read_sigma(cells, g, t)` is the standard deviation of the noise every read adds (1/f and
  white read noise); the array device draws it afresh on each read.
Arrays of any shape; the array device (physical.py) and the statistics (statistics.py) share
this code, so `imcc devices --stats` shows exactly what reads see.

One deliberate difference from aihwkit: it draws the accumulated 1/f noise once per
`drift_analog_weights(t)` call and keeps that draw for every later MVM; here it is drawn on
every read (with the same sigma at time t), so one read has exactly aihwkit's distribution of
g(t) while repeated reads are independent. Reads add the noise to column currents (see
physical.py) rather than clipping each noisy cell at 0 as aihwkit does; that differs only for
cells within a few sigma of 0 uS, whose currents are negligible.
"""

from __future__ import annotations

import numpy as np

from imcc.runtime.devices.presets import (
    AbsoluteOneOverF,
    ConductanceProgramming,
    DevicePreset,
    LogRelaxation,
    NoDrift,
    NoReadNoise,
    PcmOneOverF,
    PowerLawDrift,
    RelaxationTable,
    Retention,
    ThresholdVoltageProgramming,
    WhiteReadNoise,
)


class Cells:
    """What programming left in a set of cells, plus the draws that fix their future."""

    def __init__(self, g_target: np.ndarray) -> None:
        self.g_target = g_target  # uS, the conductance each cell was programmed toward
        self.raw = g_target  # uS, target + programming noise, before gain factors and clipping
        self.factor: np.ndarray | float = 1.0  # device x chip gain factors
        self.g_prog = g_target  # uS, the programmed conductance (t = 0)
        self.nu: np.ndarray | None = None  # PCM drift exponents
        self.relax: np.ndarray | None = None  # N(0, 1) direction of RRAM relaxation
        self.loss: np.ndarray | None = None  # retention loss per decade of time
        self.stuck_off: np.ndarray | None = None
        self.stuck_on: np.ndarray | None = None


class CellModel:
    def __init__(self, preset: DevicePreset) -> None:
        self.preset = preset
        self.g_min = preset.cell.g_min_us
        self.g_max = preset.cell.g_max_us

    # -- programming (sampled once) ---------------------------------------------------------
    def programming_sigma(self, g_target: np.ndarray) -> np.ndarray:
        """Standard deviation of the programming error at each target, in uS."""
        p, scale = self.preset.programming, self.preset.scales.programming
        if isinstance(p, ConductanceProgramming):
            sigma = p.sigma_us(g_target / self.g_max, g_target)
            if p.reference_g_max_us:
                # aihwkit: a fit made at reference g_max scales with g_max / reference
                sigma = sigma * (self.g_max / p.reference_g_max_us)
            return np.asarray(sigma * scale, dtype=np.float64)
        if isinstance(p, ThresholdVoltageProgramming):
            # linear read regime: a V_T error moves g by dV_T / window of the conductance range
            per_volt = (self.g_max - self.g_min) / p.vt_window_v
            return np.full_like(g_target, p.vt_sigma_v * per_volt * scale, dtype=np.float64)
        return np.zeros_like(g_target, dtype=np.float64)

    def program(
        self, g_target: np.ndarray, rng: np.random.Generator, chip_factor: np.ndarray | float = 1.0
    ) -> Cells:
        cells = Cells(g_target)
        # g_prog = g_T + sigma(g_T) xi, as aihwkit's apply_programming_noise_to_conductance
        cells.raw = g_target + self.programming_sigma(g_target) * rng.standard_normal(
            g_target.shape
        )
        variation = self.preset.variation
        if variation.device_sigma_rel:
            device = 1.0 + variation.device_sigma_rel * rng.standard_normal(g_target.shape)
            cells.factor = np.maximum(device, 0.0) * chip_factor
        else:
            cells.factor = chip_factor
        cells.g_prog = self.clip(cells.raw * cells.factor)
        drift = self.preset.drift
        if isinstance(drift, PowerLawDrift):
            # aihwkit generate_drift_coefficients: nu = |mu(g_T) + sigma(g_T) xi| * drift_scale,
            # both fits in g_T / g_max clipped below at 1e-7
            g_rel = np.abs(g_target / self.g_max)
            mu = drift.nu_mean(g_rel, g_target)
            sd = drift.nu_std(g_rel, g_target)
            cells.nu = (
                np.abs(mu + sd * rng.standard_normal(g_target.shape)) * self.preset.scales.drift
            )
        elif isinstance(drift, RelaxationTable | LogRelaxation):
            cells.relax = rng.standard_normal(g_target.shape)
        elif isinstance(drift, Retention):
            rate = drift.loss_per_decade_mean + drift.loss_per_decade_std * rng.standard_normal(
                g_target.shape
            )
            cells.loss = np.abs(rate) * self.preset.scales.drift
        faults = self.preset.faults
        if faults.stuck_off or faults.stuck_on:
            u = rng.random(g_target.shape)
            cells.stuck_off = u < faults.stuck_off
            cells.stuck_on = (u >= faults.stuck_off) & (u < faults.stuck_off + faults.stuck_on)
            cells.g_prog = self.faulted(cells, cells.g_prog)
        return cells

    def clip(self, g: np.ndarray) -> np.ndarray:
        p = self.preset.programming
        clip = p.clip if p is not None else "none"
        if clip == "zero":  # aihwkit: "no negative conductances allowed"
            return np.asarray(np.maximum(g, 0.0))
        if clip == "window":
            return np.asarray(np.clip(g, self.g_min, self.g_max))
        return g

    def faulted(self, cells: Cells, g: np.ndarray) -> np.ndarray:
        if cells.stuck_off is None or cells.stuck_on is None:
            return g
        return np.where(cells.stuck_on, self.g_max, np.where(cells.stuck_off, self.g_min, g))

    # -- evolution with time since programming (deterministic) ------------------------------
    def conductance_at(self, cells: Cells, t: float) -> np.ndarray:
        """Conductance t seconds after programming, before read noise, in uS."""
        drift = self.preset.drift
        if t <= 0 or isinstance(drift, NoDrift):
            return cells.g_prog
        if isinstance(drift, PowerLawDrift):
            assert cells.nu is not None
            # aihwkit apply_drift_noise_to_conductance: t = t_inference + t0,
            # g_drift = g_prog (t / t0)^-nu
            g = cells.g_prog * ((t + drift.t0_s) / drift.t0_s) ** (-cells.nu)
        elif isinstance(drift, RelaxationTable):
            assert cells.relax is not None
            # The spread about the target grows from sigma_0 (programming, the first fit) to
            # sigma(t); the added part keeps each device's own direction: marginally
            # N(g_T, sigma(t)^2) at every tabulated t, as aihwkit's ReRamWan2022 draws afresh.
            # The drift scale multiplies that added spread, independently of programming noise.
            g_rel = cells.g_target / self.g_max
            first = drift.sigma_us[0](g_rel, cells.g_target)
            now = self._table_sigma(drift, g_rel, cells.g_target, t)
            extra = np.sqrt(np.maximum(now**2 - first**2, 0.0)) * self.preset.scales.drift
            g = self.clip((cells.raw + extra * cells.relax) * cells.factor)
        elif isinstance(drift, LogRelaxation):
            assert cells.relax is not None
            # aihwkit ReRamCMONoiseModel: mean shift and spread linear in ln t (t in s); the fit
            # starts at 1 s, so shorter times use 1 s.
            log_t = np.log(max(t, 1.0))
            scale = self.preset.scales.drift
            spread = drift.sigma_per_ln_s * log_t + drift.sigma_at_1s_us
            g = cells.g_prog + scale * (drift.mean_per_ln_s * log_t + spread * cells.relax)
            g = self.clip(g)
        else:
            assert isinstance(drift, Retention) and cells.loss is not None
            rest = self.g_min + drift.rest * (self.g_max - self.g_min)
            fraction = np.minimum(cells.loss * np.log10(1.0 + t / drift.tau_s), 1.0)
            g = cells.g_prog + (rest - cells.g_prog) * fraction
        return self.faulted(cells, g)

    def _table_sigma(
        self, drift: RelaxationTable, g_rel: np.ndarray, g_us: np.ndarray, t: float
    ) -> np.ndarray:
        """sigma(t): sigma^2 linear in ln t between tabulated times, held outside them."""
        times = drift.times_s
        if t <= times[0]:
            return drift.sigma_us[0](g_rel, g_us)
        if t >= times[-1]:
            return drift.sigma_us[-1](g_rel, g_us)
        k = int(np.searchsorted(times, t)) - 1
        w = (np.log(t) - np.log(times[k])) / (np.log(times[k + 1]) - np.log(times[k]))
        low = drift.sigma_us[k](g_rel, g_us) ** 2
        high = drift.sigma_us[k + 1](g_rel, g_us) ** 2
        return np.asarray(np.sqrt(np.maximum((1 - w) * low + w * high, 0.0)))

    # -- per read ---------------------------------------------------------------------------
    def read_sigma(self, cells: Cells, g: np.ndarray, t: float) -> np.ndarray | None:
        """Standard deviation (uS) of the noise one read adds to each cell, or None."""
        noise = self.preset.read_noise
        scale = self.preset.scales.read
        if isinstance(noise, NoReadNoise) or scale == 0:
            return None
        if isinstance(noise, PcmOneOverF):
            # aihwkit: Q_s from |g_prog| / g_max (not g_T: IBM/aihwkit#436), the 1/f noise
            # integrated from 1/t to 1/(2 t_read) with t = t_inference + t0
            q = noise.q(np.abs(cells.g_prog) / self.g_max, cells.g_prog)
            t_total = t + noise.t0_s
            factor = np.sqrt(np.log((t_total + noise.t_read_s) / (2 * noise.t_read_s)))
            return np.asarray(np.abs(g) * q * factor * scale)
        if isinstance(noise, AbsoluteOneOverF):
            # aihwkit ReRamCMONoiseModel: K log10(g_drift) sqrt(ln((t + t_read) / (2 t_read)));
            # none at t = 0, where the logarithm is negative
            log_term = np.log((t + noise.t_read_s) / (2 * noise.t_read_s))
            if log_term <= 0:
                return None
            amplitude = noise.amplitude_us(g / self.g_max, g)
            return np.asarray(np.maximum(amplitude, 0.0) * np.sqrt(log_term) * scale)
        assert isinstance(noise, WhiteReadNoise)
        return np.asarray(np.maximum(noise.sigma_us(g / self.g_max, g), 0.0) * scale)

    def read_clip(self, g: np.ndarray) -> np.ndarray:
        """aihwkit clips each read conductance as it clips programmed ones."""
        return self.clip(g)
