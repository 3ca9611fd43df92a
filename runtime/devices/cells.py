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
this code, so `imcc devices --stats` shows exactly what reads see. What each physics kind does
(a programming, drift or read-noise kind) is a method of its class in presets.py, next to its
parameters; the cell model strings them together in time order.

One deliberate difference from aihwkit: it draws the accumulated 1/f noise once per
`drift_analog_weights(t)` call and keeps that draw for every later MVM; here it is drawn on
every read (with the same sigma at time t), so one read has exactly aihwkit's distribution of
g(t) while repeated reads are independent. Reads add the noise to column currents (see
physical.py) rather than clipping each noisy cell at 0 as aihwkit does; that differs only for
cells within a few sigma of 0 uS, whose currents are negligible.
"""

from __future__ import annotations

import numpy as np

from imcc.runtime.devices.presets import DevicePreset


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
        p = self.preset.programming
        if p is None:
            return np.zeros_like(g_target, dtype=np.float64)
        return p.sigma(self, g_target)

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
        self.preset.drift.sample(self, cells, rng)  # the drift kind's per-device draws
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
        if t <= 0:
            return cells.g_prog
        return self.faulted(cells, self.preset.drift.conductance_at(self, cells, t))

    # -- per read ---------------------------------------------------------------------------
    def read_sigma(self, cells: Cells, g: np.ndarray, t: float) -> np.ndarray | None:
        """Standard deviation (uS) of the noise one read adds to each cell, or None."""
        if self.preset.scales.read == 0:
            return None
        return self.preset.read_noise.sigma(self, cells, g, t)

    def read_clip(self, g: np.ndarray) -> np.ndarray:
        """aihwkit clips each read conductance as it clips programmed ones."""
        return self.clip(g)
