"""A crossbar array of physical cells behind the Device protocol: levels -> uS -> column currents.

Programming maps integer levels to target conductances, g_T = g_min + L (g_max - g_min) /
(2^cell_bits - 1) (snapped to the preset's grid of programmable levels), and programs them
through the preset's cell model (cells.py). Every array also has a reference column of cells
programmed to g_min: a read returns (I_col - I_ref) / (dg V), which removes the g_min offset the
way CrossSim's unit column (offset subtraction) does, so an ideal read of level L with input 1
gives exactly L and the ADC logic in periphery.py keeps working in level steps. The reference
cells are real devices: they get programming noise, drift and read noise too, and sit after the
last column (farthest from the row drivers) for IR drop.

At a time t since programming (`age`), the state becomes an effective weight matrix in level
steps (drift, IR drop, faults) plus per-cell read-noise variances; a read is then one matmul,
Gaussian read noise referred to the column outputs (for independent cell noise the column sum
is exactly Gaussian with variance sum_r sigma_rc^2 x_r^2), the reference column's noise shared
by every column, then the column ADC's gain and offset mismatch (sampled at programming) and
the drift-compensation gain (set by the simulator, compensation.py). Reads draw from a random
stream of their own per array, spawned at programming, so the functional and cycle engines
(which interleave cores differently) see the same noise.
"""

from __future__ import annotations

import numpy as np

from imcc.isa.diagnostics import SimulationError
from imcc.runtime.devices import ArrayState
from imcc.runtime.devices.cells import CellModel, Cells
from imcc.runtime.devices.circuit import IR_DROP_MODES, effective_conductance
from imcc.runtime.devices.presets import DevicePreset


class PhysicalArrayState(ArrayState):
    """An array of physical cells: its programmed cells and what they give at the current age."""

    def __init__(
        self,
        levels: np.ndarray,
        image: int,
        cells: Cells,
        ideal: np.ndarray,
        read_rng: np.random.Generator,
        adc_gain: np.ndarray,
        adc_offset: np.ndarray,
    ) -> None:
        super().__init__(levels, levels.astype(np.float64), image)
        self.cells = cells  # rows x (cols + 1): the last column is the reference column
        self.ideal = ideal  # uS, g_min + L dg: the conductance each level stands for
        self.read_rng = read_rng
        self.adc_gain = adc_gain  # per column, relative
        self.adc_offset = adc_offset  # per column, in level steps
        self.gain = np.ones(levels.shape[1])  # drift compensation, set by the simulator
        self.age_s = 0.0
        self.reference_readout: np.ndarray | None = None  # compensation's read at t = 0
        # derived by PhysicalDevice.age:
        self.variance: np.ndarray | None = None  # rows x cols read-noise variances, level^2
        self.reference_variance: np.ndarray | None = None  # rows
        self.scale = np.ones(levels.shape[1])
        self.offset = np.zeros(levels.shape[1])


class PhysicalDevice:
    """A device built from a preset for one target's arrays (cell bits, ADC resolution)."""

    exact = False

    def __init__(
        self,
        preset: DevicePreset,
        *,
        cell_bits: int,
        adc_lsb: float,
        ir_drop: str = "fast",
        seed: int = 0,
    ) -> None:
        if ir_drop not in IR_DROP_MODES:
            raise SimulationError(
                f"unknown IR-drop mode {ir_drop!r}; modes are {', '.join(IR_DROP_MODES)}"
            )
        top = (1 << cell_bits) - 1
        if preset.cell.levels and preset.cell.levels < top + 1:
            raise SimulationError(
                f"device {preset.name!r} stores {preset.cell.levels} levels per cell, but the "
                f"binary's arrays use {cell_bits}-bit cells ({top + 1} levels); compile with "
                f"--cell-bits {int(np.log2(preset.cell.levels))}"
            )
        self.preset = preset
        self.name = preset.name
        self.model = CellModel(preset)
        self.cell_bits = cell_bits
        self.top = top
        self.adc_lsb = adc_lsb
        self.ir_drop = ir_drop
        c = preset.cell
        self.step_us = (c.g_max_us - c.g_min_us) / top  # dg: one level step in uS
        # One process corner per chip (a Simulator is one chip): a gain on every cell.
        chip_rng = np.random.default_rng([seed, 0x5EED])
        self.chip_factor = max(
            0.0, 1.0 + preset.variation.chip_sigma_rel * float(chip_rng.standard_normal())
        )

    # -- programming ------------------------------------------------------------------------
    def targets(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(target, ideal) conductances in uS of integer levels."""
        c = self.preset.cell
        ideal = c.g_min_us + levels * self.step_us
        if c.levels and (c.levels - 1) % self.top:
            # the device's own grid does not hold the binary's levels: nearest grid level
            grid = (c.g_max_us - c.g_min_us) / (c.levels - 1)
            return c.g_min_us + np.rint((ideal - c.g_min_us) / grid) * grid, ideal
        return ideal, ideal

    def program(self, levels: np.ndarray, image: int, rng: np.random.Generator) -> ArrayState:
        rows, cols = levels.shape
        # the array's columns plus the reference column of g_min cells
        with_reference = np.concatenate([levels, np.zeros((rows, 1), levels.dtype)], axis=1)
        target, ideal = self.targets(with_reference)
        cells = self.model.program(target, rng, self.chip_factor)
        p = self.preset.periphery
        adc_gain = np.asarray(1.0 + p.adc_gain_sigma * rng.standard_normal(cols))
        adc_offset = np.asarray(p.adc_offset_lsb * self.adc_lsb * rng.standard_normal(cols))
        state = PhysicalArrayState(
            levels, image, cells, ideal, rng.spawn(1)[0], adc_gain, adc_offset
        )
        self.age(state, 0.0)
        return state

    # -- time -------------------------------------------------------------------------------
    def age(self, state: ArrayState, seconds: float) -> None:
        """Evaluate the array `seconds` after programming: weights and read-noise variances."""
        assert isinstance(state, PhysicalArrayState)
        cols = state.cols
        g = self.model.conductance_at(state.cells, seconds)
        # level steps: u = L + (g - g_ideal) / dg, exactly L when g is the target
        u = state.levels + (g[:, :cols] - state.ideal[:, :cols]) / self.step_us
        u_ref = (g[:, cols] - state.ideal[:, cols]) / self.step_us
        weights = u - u_ref[:, None]  # offset subtraction by the reference column
        wire = self.preset.periphery.wire_ohm
        if self.ir_drop != "off" and wire > 0:
            loss = g - effective_conductance(g, wire, self.ir_drop)
            weights = weights - (loss[:, :cols] - loss[:, cols : cols + 1]) / self.step_us
        state.conductance = weights
        sigma = self.model.read_sigma(state.cells, g, seconds)
        if sigma is None or not np.any(sigma):
            state.variance = state.reference_variance = None
        else:
            variance = (sigma / self.step_us) ** 2
            state.variance = np.ascontiguousarray(variance[:, :cols])
            state.reference_variance = np.ascontiguousarray(variance[:, cols])
        state.age_s = seconds
        self._refresh(state)

    def set_gain(self, state: ArrayState, gain: np.ndarray | None) -> None:
        """Per-column gain applied to the column readout (drift compensation); None = 1."""
        assert isinstance(state, PhysicalArrayState)
        state.gain = np.ones(state.cols) if gain is None else np.asarray(gain, dtype=np.float64)
        self._refresh(state)

    def _refresh(self, state: PhysicalArrayState) -> None:
        state.scale = state.adc_gain * state.gain
        state.offset = state.adc_offset * state.gain

    # -- reads ------------------------------------------------------------------------------
    def read(self, state: ArrayState, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Column currents in level steps for inputs x (rows, batch) in DAC steps."""
        assert isinstance(state, PhysicalArrayState)
        currents: np.ndarray = state.conductance.T @ x
        if state.variance is not None and state.reference_variance is not None:
            noise_rng = state.read_rng  # the array's own stream (see the module docstring)
            x2 = x * x
            spread = np.sqrt(state.variance.T @ x2)
            # float32 normals: half the time of float64 ones, ample for a noise sample
            currents += spread * noise_rng.standard_normal(spread.shape, dtype=np.float32)
            shared = np.sqrt(state.reference_variance @ x2)
            currents -= shared * noise_rng.standard_normal(shared.shape, dtype=np.float32)
        return currents * state.scale[:, None] + state.offset[:, None]
