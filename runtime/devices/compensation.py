"""Drift compensation: a runtime operation at the chosen time, with its own cost.

As aihwkit's GlobalDriftCompensation / PerColumnDriftCompensation (device_models.md 1.1), but
on the chip: right after programming, every programmed array is read once with a known input
(every row driven at full DAC scale), through the whole read path (device, IR drop, ADC); at
time t the same read is repeated, and the ratio reference / now becomes a gain on the array's
column readout: one gain per array (`global`, from the summed column currents, the readout the
aihwkit docs describe) or one per column (`column`; a column whose reference readout is below 1 %
of the ADC's full scale, too little current for a stable ratio, takes its array's global gain).
The gain multiplies the column readout of every later read (PhysicalDevice.set_gain). Exact
devices need none (their gain is exactly 1) but the reads are still made and paid for.

Cost model (reported under `drift_compensation` in the energy breakdown and counts, as a layer
'(drift compensation)', and added to the cycles in cycle mode): per programmed array, one read
priced exactly as a one-step unsigned MVM of the array's shape (its DAC steps, array read, ADC
conversions, shift-add, buffer words), plus the gain arithmetic on the SIMD unit: a sum over the
columns and one division (global) or one division per column (column). Arrays of one core
calibrate one after another; cores work in parallel, so the cycles are the slowest core's. The
reference read right after programming belongs to programming and is not counted (the report
leaves out the initial programming of the arrays as well). The gain then costs nothing per
inference: it is a setting of the readout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imcc.isa import spec
from imcc.isa.diagnostics import SimulationError
from imcc.isa.encoding import make
from imcc.isa.target import Target
from imcc.runtime.costs import Price, price
from imcc.runtime.devices import ArrayState, Device
from imcc.runtime.devices.physical import PhysicalArrayState
from imcc.runtime.periphery import Adc

COMPENSATIONS = ("global", "column")
MIN_COLUMN_READOUT = 0.01  # of the ADC full scale, for a per-column gain


def check_compensation(mode: str | None) -> str | None:
    if mode in (None, "none"):
        return None
    if mode not in COMPENSATIONS:
        raise SimulationError(f"unknown drift compensation {mode!r}; choose global, column or none")
    return mode


def calibrate(
    device: Device,
    arrays: list[ArrayState],
    adc_for: Callable[[int], Adc],
    dac_max: int,
    seconds: float,
    mode: str,
    rng: np.random.Generator,
) -> None:
    """Set every array's readout gain for time `seconds` (see the module docstring);
    `adc_for(image)` is the ADC an image's columns are converted with."""
    for state in arrays:
        device.set_gain(state, None)
        if device.exact:
            continue  # reads are exact at every time: the ratio is exactly 1
        adc = adc_for(state.image)
        full = np.full((state.rows, 1), float(dac_max))
        reference = getattr(state, "reference_readout", None)
        if reference is None:
            device.age(state, 0.0)
            reference = adc.convert(_calibration_read(device, state, full, rng, 0))[:, 0]
            state.reference_readout = reference  # type: ignore[attr-defined]
        device.age(state, seconds)
        now = adc.convert(_calibration_read(device, state, full, rng, 1))[:, 0]
        device.set_gain(state, gains(reference, now, mode, MIN_COLUMN_READOUT * adc.full_scale))


def _calibration_read(
    device: Device, state: ArrayState, x: np.ndarray, rng: np.random.Generator, which: int
) -> np.ndarray:
    """A calibration read (`which`: 0 the reference, 1 the read at the chosen time) with read
    noise from a stream of its own, derived from the array's read stream without drawing from
    it: a chip calibrated at t reads the same noise whether it was built at t or moved there
    by `set_time`, and calibrating never shifts the noise of the inference reads after it."""
    if not isinstance(state, PhysicalArrayState):
        return device.read(state, x, rng)
    stream = state.read_rng
    seeds = stream.bit_generator.seed_seq
    assert isinstance(seeds, np.random.SeedSequence)  # spawned from one at programming
    own = np.random.SeedSequence(seeds.entropy, spawn_key=(*seeds.spawn_key, 0xCA1, which))
    state.read_rng = np.random.default_rng(own)
    try:
        return device.read(state, x, rng)
    finally:
        state.read_rng = stream


def gains(
    reference: np.ndarray, now: np.ndarray, mode: str, floor: np.ndarray | float
) -> np.ndarray:
    total_now = float(now.sum())
    overall = float(reference.sum()) / total_now if total_now > 0 else 1.0
    if mode == "global":
        return np.full(reference.shape, overall)
    usable = (reference >= floor) & (now > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(usable, reference / np.where(usable, now, 1.0), overall)


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationCost:
    cycles: int  # the slowest core's calibration time
    energy_pj: float
    counts: tuple[tuple[str, int], ...]
    busy: tuple[tuple[str, int], ...]  # unit -> cycles, summed over cores


def calibration_cost(
    target: Target, arrays: list[tuple[int, int, int]], mode: str
) -> CalibrationCost:
    """Cost of calibrating arrays given as (core, rows, cols)."""
    read = make(spec.XBAR_MVM, 0, 0, 0, target.xbar.dac_bits, 0, 1)  # one unsigned DAC step
    per_core: dict[int, int] = defaultdict(int)
    busy: dict[str, int] = defaultdict(int)
    energy = 0.0
    counts: dict[str, int] = defaultdict(int)
    for core, rows, cols in arrays:
        arithmetic = (
            [make(spec.SIMD_DIV, 0, 0, 0, cols)]
            if mode == "column"
            else [make(spec.SIMD_RSUM, 0, 0, cols), make(spec.SIMD_DIV, 0, 0, 0, 1)]
        )
        prices: list[Price] = [price(target, read, rows, cols, core)]
        prices += [price(target, op, rows, cols, core) for op in arithmetic]
        for p in prices:
            per_core[core] += p.cycles
            busy[p.unit] += p.cycles
            energy += sum(pj for _, pj in p.energy)
            events = dict(p.counts)
            counts["drift_compensation_lane_ops"] += events.get("simd_lane_ops", 0)
        counts["drift_compensation_reads"] += 1
        counts["drift_compensation_dac_steps"] += rows
        counts["drift_compensation_adc_conversions"] += cols
    return CalibrationCost(
        cycles=max(per_core.values(), default=0),
        energy_pj=energy,
        counts=tuple(sorted(counts.items())),
        busy=tuple(sorted(busy.items())),
    )
