"""Device models behind one protocol, and their registry.

A device turns the integer cell levels of a crossbar image into a programmed array state
(sampled once, at programming time), evaluates that state at a time since programming (`age`),
and reads column currents from it for one input step. Currents are in units of one level step
(g_step x V_read), so the ideal device returns exact integers and the ADC (periphery.py) works
in level steps whatever the technology.

Devices: `ideal` (exact, the default for correctness), and one TOML preset per technology in
presets/ (PCM, RRAM, MRAM, FeFET, NOR flash, SRAM): `analog` presets are PhysicalDevice
(physical.py), `digital` ones (SRAM digital CIM) are exact like `ideal`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imcc.isa.diagnostics import SimulationError

if TYPE_CHECKING:
    from imcc.isa.target import XbarSpec
    from imcc.runtime.devices.presets import DevicePreset


class ArrayState:
    """What an array holds after programming; devices may subclass it."""

    def __init__(self, levels: np.ndarray, conductance: np.ndarray, image: int) -> None:
        self.levels = levels  # the integer levels asked for, (rows, cols)
        self.conductance = conductance  # what the device holds, in level steps, (rows, cols)
        self.image = image

    @property
    def rows(self) -> int:
        return int(self.levels.shape[0])

    @property
    def cols(self) -> int:
        return int(self.levels.shape[1])


class Device(Protocol):
    name: str
    exact: bool  # reads return sum_r x_r * level_rc exactly (enables the one-matmul fast path)

    def program(self, levels: np.ndarray, image: int, rng: np.random.Generator) -> ArrayState: ...

    def read(self, state: ArrayState, x: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def age(self, state: ArrayState, seconds: float) -> None: ...

    def set_gain(self, state: ArrayState, gain: np.ndarray | None) -> None: ...


class IdealDevice:
    """Exact: conductance equals the level; a read is an exact integer dot product."""

    name = "ideal"
    exact = True

    def program(self, levels: np.ndarray, image: int, rng: np.random.Generator) -> ArrayState:
        return ArrayState(levels, levels.astype(np.float64), image)

    def read(self, state: ArrayState, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # x: (rows, batch) -> (cols, batch); float64 is exact below 2^53
        currents: np.ndarray = state.conductance.T @ x
        return currents

    def age(self, state: ArrayState, seconds: float) -> None:
        """Exact cells do not change with time."""

    def set_gain(self, state: ArrayState, gain: np.ndarray | None) -> None:
        """Exact reads need no compensation: calibration finds a gain of exactly 1."""


class DigitalDevice(IdealDevice):
    """Digital CIM (SRAM): exact like `ideal`, named after its preset for reports."""

    def __init__(self, name: str) -> None:
        self.name = name


DEVICES: dict[str, Callable[..., Device]] = {"ideal": IdealDevice}


def device_names() -> list[str]:
    """`ideal` first, then the presets."""
    from imcc.runtime.devices.presets import preset_names

    return ["ideal", *sorted(set(DEVICES) - {"ideal"} | set(preset_names()))]


def make_device(
    spec: str | Path | DevicePreset,
    xbar: XbarSpec | None = None,
    *,
    seed: int = 0,
    ir_drop: str | None = None,
) -> Device:
    """The device `spec` names (a registered name, a preset, or a preset TOML path), built for
    the arrays of `xbar` (cell bits and ADC resolution); `ir_drop` is fast (default), exact
    or off for physical devices."""
    from imcc.runtime.devices.physical import PhysicalDevice
    from imcc.runtime.devices.presets import DevicePreset, load_preset
    from imcc.runtime.periphery import Adc, full_scale

    if isinstance(spec, str) and spec in DEVICES:
        return DEVICES[spec]()
    preset = spec if isinstance(spec, DevicePreset) else load_preset(spec)
    if preset.exact:
        return DigitalDevice(preset.name)
    if xbar is None:
        raise SimulationError(f"device {preset.name!r} needs the target's crossbar parameters")
    # ADC offsets are in LSBs of the target's nominal converter (full-scale range)
    nominal = Adc(xbar.adc_bits, np.array([full_scale(xbar.rows, xbar.cell_bits, xbar.dac_bits)]))
    return PhysicalDevice(
        preset,
        cell_bits=xbar.cell_bits,
        adc_lsb=float(nominal.lsb[0]),
        ir_drop=ir_drop or "fast",
        seed=seed,
    )
