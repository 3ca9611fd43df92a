"""Statistics of programmed and drifted conductances of a preset, to set beside the papers.

`conductance_statistics(preset)` programs many cells at a few target conductances through the
same cell model the arrays use (cells.py) and reports, per target: the programming error, the
drift exponents (PCM), and at each time since programming the conductance one read sees (drift
or relaxation plus one draw of read noise, clipped as aihwkit clips), its error against the
target, and the median drift factor g(t) / g_prog. For the `pcm` preset these are the numbers
of aihwkit's PCMLikeNoiseModel (device_models.md 1.2); `imcc devices NAME --stats` prints them.
Chip-level variation is drawn per cell here, so spreads are over devices and chips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imcc.isa.diagnostics import SimulationError
from imcc.runtime.devices.cells import CellModel
from imcc.runtime.devices.presets import DevicePreset
from imcc.runtime.devices.units import format_time

DEFAULT_TIMES = (0.0, 3600.0, 86400.0, 365 * 86400.0)
DEFAULT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)  # of the window g_min .. g_max


@dataclass(frozen=True, slots=True, kw_only=True)
class AtTime:
    seconds: float
    mean_us: float  # of what a read sees
    std_us: float
    error_mean_us: float  # read - target
    error_std_us: float
    drift_factor: float  # median of g(t) / g_prog over cells with g_prog > 0
    read_sigma_us: float  # mean standard deviation of one read's noise


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelStatistics:
    target_us: float
    programmed_mean_us: float
    programmed_std_us: float  # of g_prog - target: the programming error
    nu_mean: float | None  # PCM drift exponents
    nu_std: float | None
    times: tuple[AtTime, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConductanceStatistics:
    device: str
    cells: int
    seed: int
    levels: tuple[LevelStatistics, ...]

    def table(self) -> str:
        lines = [
            f"{self.device}: conductance statistics over {self.cells:,} cells per target "
            f"(seed {self.seed}); a read = drift + one draw of read noise",
            f"  {'target':>8} {'prog mean':>9} {'prog std':>8} {'nu mean':>8} {'nu std':>7}"
            f"  {'time':>5} {'read mean':>9} {'read std':>8} {'err mean':>8} {'err std':>7}"
            f" {'drift':>6} {'rd sigma':>8}",
        ]
        for level in self.levels:
            nu = (
                f"{level.nu_mean:8.4f} {level.nu_std:7.4f}"
                if level.nu_mean is not None and level.nu_std is not None
                else f"{'-':>8} {'-':>7}"
            )
            head = (
                f"  {level.target_us:8.3f} {level.programmed_mean_us:9.3f} "
                f"{level.programmed_std_us:8.4f} {nu}"
            )
            for i, at in enumerate(level.times):
                prefix = head if i == 0 else " " * len(head)
                lines.append(
                    f"{prefix}  {format_time(at.seconds):>5} {at.mean_us:9.3f} {at.std_us:8.4f} "
                    f"{at.error_mean_us:8.3f} {at.error_std_us:7.4f} {at.drift_factor:6.3f} "
                    f"{at.read_sigma_us:8.4f}"
                )
        lines.append("  (uS; drift = median g(t) / g_prog; rd sigma = mean sigma of one read)")
        return "\n".join(lines)


def conductance_statistics(
    preset: DevicePreset,
    times: tuple[float, ...] = DEFAULT_TIMES,
    targets_us: tuple[float, ...] | None = None,
    cells: int = 100_000,
    seed: int = 0,
) -> ConductanceStatistics:
    if cells < 2:
        raise SimulationError(f"statistics need at least 2 cells, not {cells}")
    if seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, not {seed}")
    if preset.exact:
        raise SimulationError(f"device {preset.name!r} is digital and exact: nothing to measure")
    c = preset.cell
    if targets_us is None:
        fractions = (0.0, 1.0) if c.levels == 2 else DEFAULT_FRACTIONS
        grid = (c.g_max_us - c.g_min_us) / (c.levels - 1) if c.levels else 0.0
        targets_us = tuple(
            c.g_min_us
            + (round(f * (c.levels - 1)) * grid if grid else f * (c.g_max_us - c.g_min_us))
            for f in fractions
        )
    model = CellModel(preset)
    rng = np.random.default_rng(seed)
    chip = preset.variation.chip_sigma_rel
    levels = []
    for target in targets_us:
        g_target = np.full(cells, float(target))
        factor = np.maximum(1.0 + chip * rng.standard_normal(cells), 0.0) if chip else 1.0
        state = model.program(g_target, rng, factor)
        at_times = []
        for seconds in times:
            g = model.conductance_at(state, seconds)
            sigma = model.read_sigma(state, g, seconds)
            read = g if sigma is None else model.read_clip(g + sigma * rng.standard_normal(cells))
            positive = state.g_prog > 0
            factor_t = (
                float(np.median(g[positive] / state.g_prog[positive])) if positive.any() else 1.0
            )
            at_times.append(
                AtTime(
                    seconds=float(seconds),
                    mean_us=float(read.mean()),
                    std_us=float(read.std(ddof=1)),
                    error_mean_us=float((read - g_target).mean()),
                    error_std_us=float((read - g_target).std(ddof=1)),
                    drift_factor=factor_t,
                    read_sigma_us=0.0 if sigma is None else float(np.mean(sigma)),
                )
            )
        levels.append(
            LevelStatistics(
                target_us=float(target),
                programmed_mean_us=float(state.g_prog.mean()),
                programmed_std_us=float((state.g_prog - g_target).std(ddof=1)),
                nu_mean=None if state.nu is None else float(state.nu.mean()),
                nu_std=None if state.nu is None else float(state.nu.std(ddof=1)),
                times=tuple(at_times),
            )
        )
    return ConductanceStatistics(device=preset.name, cells=cells, seed=seed, levels=tuple(levels))
